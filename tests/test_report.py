"""The evaluate report: the plot (no text on text, legends off every line, both bests marked and
labelled, 150 dpi PNG and an SVG) and the tables' unit-named headers."""
from __future__ import annotations

import itertools
import struct

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lsdgraph._algorithms import metrics
from lsdgraph._jobs import report


def table(peak: float, width: float = 0.15, max_erl: float = 40_000.0, top: float = 0.9, step: float = 0.02,
          voi_peak: float | None = None) -> pd.DataFrame:
    """A per-threshold table shaped like a real sweep: ERL a hump at ``peak``, VOI split falling and
    merge rising around ``voi_peak`` (default ``peak``)."""
    t = np.round(np.arange(0, 1, step), 2)
    erl = max_erl * top * np.exp(-(((t - peak) / width) ** 2))
    vp = peak if voi_peak is None else voi_peak
    split = 3 * np.clip(vp - t, 0, None) + 0.05
    merge = 4 * np.clip(t - vp, 0, None) + 0.02
    return pd.DataFrame({
        "threshold": t, "name": [format(x, "g") for x in t], "erl": erl, "max_erl": max_erl,
        "erl_fraction": erl / max_erl, "voi_split": split, "voi_merge": merge, "voi_sum": split + merge,
        "n_splits": np.round(20 * np.clip(vp - t, 0, None)).astype(np.int64),
        "n_merges": np.round(30 * np.clip(t - vp, 0, None)).astype(np.int64),
    })


CASES = {
    # the best ERL close under the perfect-ERL line at the right edge, where loc="best" put the legend
    "one, best at the top right": {"edges_hist_quant_75": table(0.96, width=0.3, top=0.99)},
    "one, bests apart": {"edges_hist_quant_75": table(0.4, voi_peak=0.6)},
    "one, best at t = 0": {"edges_mean": table(0.0, top=1.0)},
    "three, long names, same best": {
        "edges_hist_quant_50_with_a_rather_long_name": table(0.5),
        "edges_hist_quant_75_with_a_rather_long_name": table(0.5, top=0.8),
        "edges_mean_with_a_rather_long_name": table(0.5, top=0.7),
    },
    "four, spread": {f"edges_{i}": table(0.2 + 0.2 * i, voi_peak=0.9 - 0.2 * i) for i in range(4)},
}
TITLE = "hemi_roi1: edges_hist_quant_75 vs hemi skeletons (1,234 skeletons, 5,678 µm) " * 3  # wraps


def drawn(fig):
    """Render ``fig`` with the Agg backend (as ``save_figure``'s PNG is); its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def visible_texts(fig) -> list:
    """Every text the figure draws: titles, axis and tick labels in view, legend entries."""
    texts = list(fig.texts)  # the suptitle is one of these
    for ax in fig.axes:
        texts += ax.texts  # annotations
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                  ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            # tick labels of ticks outside the view exist but are not drawn
            tol = 1e-9 * (hi - lo)
            texts += [lab for tick in axis.get_major_ticks() if lo - tol <= tick.get_loc() <= hi + tol
                      for lab in (tick.label1, tick.label2)]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def overlap(a, b, slack: float = 0.5) -> bool:
    """Whether two window boxes share more than ``slack`` pixels each way."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > slack) and (min(a.y1, b.y1) - max(a.y0, b.y0) > slack)


def line_pixels(line, per_segment: int = 25) -> np.ndarray:
    """Pixel positions along a drawn line: its vertices and points between them."""
    xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 2:
        return xy
    f = np.linspace(0, 1, per_segment)[None, :, None]
    return (xy[:-1, None, :] * (1 - f) + xy[1:, None, :] * f).reshape(-1, 2)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def fig(request):
    return report.figure(CASES[request.param], TITLE)


def test_no_text_overlaps_another_and_all_lie_in_the_figure(fig):
    r = drawn(fig)
    canvas = fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in visible_texts(fig)]
    assert len(boxes) > 20  # ticks, labels, legend entries, title
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        assert not overlap(a, b), f"{ta!r} overlaps {tb!r}"
    for text, b in boxes:
        assert canvas.x0 <= b.x0 and b.x1 <= canvas.x1 and canvas.y0 <= b.y0 and b.y1 <= canvas.y1, text
    # and no text lies on a curve (the old best-ERL note did)
    for ln in (ln for ax in fig.axes for ln in ax.get_lines()):
        px = line_pixels(ln)
        for text, b in boxes:
            on = (px[:, 0] > b.x0) & (px[:, 0] < b.x1) & (px[:, 1] > b.y0) & (px[:, 1] < b.y1)
            assert not on.any(), f"{text!r} lies on line {ln.get_label()!r}"


def test_legends_cross_no_line_and_cover_no_text(fig):
    r = drawn(fig)
    legends = [ax.get_legend() for ax in fig.axes]
    assert all(leg is not None for leg in legends)
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    assert len(lines) >= 6
    for leg in legends:
        box = leg.get_window_extent(r)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        for ln in lines:
            px = line_pixels(ln)
            pad = ln.get_markersize() / 2 * r.points_to_pixels(1) if ln.get_marker() not in (None, "None", "") else 0
            inside = ((px[:, 0] >= box.x0 - pad) & (px[:, 0] <= box.x1 + pad)
                      & (px[:, 1] >= box.y0 - pad) & (px[:, 1] <= box.y1 + pad))
            assert not inside.any(), f"legend crosses line {ln.get_label()!r}"
        own = set(map(id, leg.get_texts()))
        for t in visible_texts(fig):
            if id(t) not in own:
                assert not overlap(t.get_window_extent(r), box), f"legend covers {t.get_text()!r}"
        for other in legends:
            if other is not leg:
                assert not overlap(other.get_window_extent(r), box)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_both_bests_are_marked_and_labelled(case):
    tables = CASES[case]
    fig = report.figure(tables, "t")
    erl_ax, voi_ax = fig.axes
    for edges, t in tables.items():
        b, v = metrics.best_threshold(t, by="erl"), metrics.best_threshold(t, by="voi_sum")
        stars = [ln for ln in erl_ax.get_lines() if ln.get_marker() == "*"
                 and np.allclose(ln.get_xydata(), [[b["threshold"], b["erl"] / 1000]])]
        diamonds = [ln for ln in voi_ax.get_lines() if ln.get_marker() == "D"
                    and np.allclose(ln.get_xydata(), [[v["threshold"], v["voi_sum"]]])]
        assert stars and diamonds, edges
        erl_labels = [x.get_text() for x in erl_ax.get_legend().get_texts()]
        voi_labels = [x.get_text() for x in voi_ax.get_legend().get_texts()]
        who = "" if len(tables) == 1 else f"{edges}: "
        assert any(x.startswith(f"{who}best ERL at t = {b['name']}\n") for x in erl_labels), erl_labels
        assert any(x.startswith(f"{who}best VOI at t = {v['name']}\n") for x in voi_labels), voi_labels
        if len(tables) > 1:
            assert edges in erl_labels
    assert any(x.get_text().startswith("perfect segmentation") for x in erl_ax.get_legend().get_texts())


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_png_is_150_dpi_and_an_svg_is_written(tmp_path):
    fig = report.figure(CASES["one, bests apart"], TITLE)
    paths = report.save_figure(fig, tmp_path / "evaluation_x")
    assert report.DPI >= 150
    w, h = png_size(paths["png"])
    assert (w, h) == (round(report.FIGSIZE[0] * report.DPI), round(report.FIGSIZE[1] * report.DPI))
    assert w >= 1500 and h >= 1000  # the old plot was 770 × 715
    svg = paths["svg"].read_text()
    assert paths["svg"].name == "evaluation_x.svg" and "<svg" in svg[:1000] and "best ERL at t" in svg


def test_files_carry_units_in_every_header(tmp_path):
    t = table(0.5)
    report.write_table(t, tmp_path / "a.csv", tmp_path / "a.json")
    header = (tmp_path / "a.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == ["threshold", "name", "erl_nm", "max_erl_nm", "erl_fraction", "voi_split_bits",
                          "voi_merge_bits", "voi_sum_bits"]
    assert list(pd.read_json(tmp_path / "a.json").columns) == header
    back = pd.read_csv(tmp_path / "a.csv")
    assert back["erl_nm"].tolist() == pytest.approx(t["erl"].tolist())
    # a table read back from the file ranks as the in-memory one
    assert metrics.best_threshold(back, by="erl_nm")["threshold"] == metrics.best_threshold(t)["threshold"]
    assert report.with_units(metrics.best_threshold(t))["erl_nm"] == t["erl"].max()
    assert list(report.with_units(pd.DataFrame(columns=["cable_length", "erl_contribution"])).columns) == [
        "cable_length_nm", "erl_contribution_nm"]


def test_bests_lists_both_per_collection():
    tables = {"a": table(0.3, voi_peak=0.5), "b": table(0.7)}
    b = report.bests(tables)
    assert list(b[["edges", "best"]].itertuples(index=False, name=None)) == [
        ("a", "erl"), ("a", "voi_sum"), ("b", "erl"), ("b", "voi_sum")]
    assert list(b["threshold"]) == pytest.approx([0.3, 0.5, 0.7, 0.7])
    lines = report.best_lines(b.iloc[0], b.iloc[1])
    assert lines[0].startswith("  best ERL:  t = 0.3: ") and lines[1].startswith("  best VOI:  t = 0.5: ")
