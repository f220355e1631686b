"""The evaluate job's report: the plot (ERL and VOI against the threshold, one curve per edges
collection, both bests marked), the tables as files with units in their headers, and the summary
lines. Tables in memory keep :mod:`lsdgraph._algorithms.metrics`' column names (``erl`` in nm, VOI
in bits); only what is written to disk is renamed, by :data:`UNITS`."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lsdgraph._algorithms import metrics

# column → name in the CSV/JSON files: the unit says what the number is without the docs
UNITS = {
    "erl": "erl_nm", "max_erl": "max_erl_nm", "voi_split": "voi_split_bits", "voi_merge": "voi_merge_bits",
    "voi_sum": "voi_sum_bits", "cable_length": "cable_length_nm", "erl_contribution": "erl_contribution_nm",
}

DPI = 150
FIGSIZE = (10.0, 7.0)  # inches: 1500 × 1050 px at DPI


def with_units(table: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """``table`` with the unit-named columns (or index, for a row) of the written files."""
    if isinstance(table, pd.Series):
        return table.rename(index=UNITS)
    return table.rename(columns=UNITS)


def write_table(table: pd.DataFrame, csv: Path, json: Path | None = None) -> None:
    """Write ``table`` as CSV (and JSON records) with units in the column names."""
    named = with_units(table)
    named.to_csv(csv, index=False)
    if json is not None:
        json.write_text(named.to_json(orient="records", indent=1))


def bests(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per edges collection its best-ERL and its best-VOI row: columns ``edges, best`` (``erl`` or
    ``voi_sum``, what the row is best by), then the score columns."""
    rows = []
    for edges, table in tables.items():
        for by in ("erl", "voi_sum"):
            rows.append(pd.concat([pd.Series({"edges": edges, "best": by}), metrics.best_threshold(table, by=by)]))
    return pd.DataFrame(rows).reset_index(drop=True)


def best_lines(best_erl: pd.Series, best_voi: pd.Series, indent: str = "  ") -> list[str]:
    """The two summary lines for one edges collection."""
    b, v = best_erl, best_voi
    return [
        f"{indent}best ERL:  t = {b['name']}: {b['erl'] / 1000:,.2f} µm = {b['erl_fraction']:.1%} of a perfect "
        f"segmentation ({b['max_erl'] / 1000:,.2f} µm); VOI split {b['voi_split']:.3f}, merge "
        f"{b['voi_merge']:.3f} bits; {b['n_splits']} splits, {b['n_merges']} merges",
        f"{indent}best VOI:  t = {v['name']}: VOI sum {v['voi_sum']:.3f} bits "
        f"(split {v['voi_split']:.3f}, merge {v['voi_merge']:.3f}); ERL {v['erl'] / 1000:,.2f} µm",
    ]


def figure(tables: Mapping[str, pd.DataFrame], title: str):
    """ERL (top) and VOI (bottom) against the threshold, one colour per edges collection, the best
    ERL (★) and best VOI (◆) of each marked and labelled in the legends, which sit right of the
    axes so no text lies on a curve. Returns a matplotlib ``Figure`` (no pyplot: no global backend
    is touched)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    single = len(tables) == 1
    first = next(iter(tables.values()))
    ax1.axhline(first["max_erl"].iloc[0] / 1000, color="grey", ls=":",
                label=f"perfect segmentation: {first['max_erl'].iloc[0] / 1000:,.3g} µm")
    style_handles = []
    for i, (edges, table) in enumerate(tables.items()):
        t = table["threshold"].to_numpy(float)
        colour = f"C{i}"
        b = metrics.best_threshold(table, by="erl")
        v = metrics.best_threshold(table, by="voi_sum")
        ax1.plot(t, table["erl"] / 1000, "o-", ms=3, color=colour, label="ERL" if single else edges)
        # the sum is wide and pale underneath: where split or merge is 0 it equals the other, which
        # stays visible on top of it
        if single:
            ax2.plot(t, table["voi_sum"], "-", lw=3, color="k", alpha=0.4, label="VOI sum")
            ax2.plot(t, table["voi_split"], "--", lw=1.5, color="C1", label="VOI split")
            ax2.plot(t, table["voi_merge"], ":", lw=1.5, color="C2", label="VOI merge")
        else:
            ax2.plot(t, table["voi_sum"], "-", lw=3, color=colour, alpha=0.4)
            ax2.plot(t, table["voi_split"], "--", lw=1.2, color=colour)
            ax2.plot(t, table["voi_merge"], ":", lw=1.2, color=colour)
        erl_colour, voi_colour = ("C3", "C4") if single else (colour, colour)
        who = "" if single else f"{edges}: "
        ax1.plot([b["threshold"]], [b["erl"] / 1000], "*", ms=14, mec="white", mew=0.8, color=erl_colour,
                 zorder=5, label=f"{who}best ERL at t = {b['name']}\n{b['erl'] / 1000:,.3g} µm "
                                 f"({b['erl_fraction']:.0%} of perfect)")
        ax2.plot([v["threshold"]], [v["voi_sum"]], "D", ms=8, mec="white", mew=0.8, color=voi_colour,
                 zorder=5, label=f"{who}best VOI at t = {v['name']}\nVOI sum {v['voi_sum']:.3g} bits")
        if single:  # one pair of guides reads well; one per collection would crowd the axes
            for ax in (ax1, ax2):
                ax.axvline(b["threshold"], color=erl_colour, ls="--", lw=1)
                ax.axvline(v["threshold"], color=voi_colour, ls=":", lw=1)
    if not single:  # which line style is which VOI: colour already says which collection
        style_handles = [Line2D([], [], color="k", lw=3, alpha=0.4, label="VOI sum"),
                         Line2D([], [], color="k", ls="--", lw=1.2, label="VOI split"),
                         Line2D([], [], color="k", ls=":", lw=1.2, label="VOI merge")]
    ax1.set_ylabel("ERL (µm)")
    ax2.set_ylabel("VOI (bits)")
    ax2.set_xlabel("merge threshold")
    for ax, extra in ((ax1, []), (ax2, style_handles)):
        handles, _ = ax.get_legend_handles_labels()
        # outside the axes: the legend never covers a curve or the perfect-ERL line
        ax.legend(handles=extra + handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    return fig


def save_figure(fig, stem: Path) -> dict[str, Path]:
    """Write ``fig`` as ``stem.png`` (at :data:`DPI`) and ``stem.svg``; their paths by suffix."""
    paths = {k: stem.parent / f"{stem.name}.{k}" for k in ("png", "svg")}
    fig.savefig(paths["png"], dpi=DPI)
    fig.savefig(paths["svg"])
    return paths
