"""Reading one version of a local-store collection through Arrow's dataset scanner: the filter
is pushed down (row-group statistics skip what it cannot match), results come back as numpy
columns (a null float is NaN), and every Arrow or I/O failure becomes one line naming the file."""
from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from lsdgraph._core.errors import LsdgraphError

_ARROW_ERRORS = (pa.ArrowException, OSError)


def part_files(version: Path) -> list[Path]:
    return sorted(version.glob("part-*.parquet"))


def _culprit(version: Path, columns: Sequence[str] | None) -> Path | None:
    """The first part file that does not read (its footer, then its data); only on the error path."""
    files = part_files(version)
    for f in files:
        try:
            pq.ParquetFile(f).metadata  # noqa: B018  (reading the footer is the check)
        except _ARROW_ERRORS:
            return f
    for f in files:
        try:
            pq.read_table(f, columns=list(columns) if columns else None)
        except _ARROW_ERRORS:
            return f
    return None


@contextlib.contextmanager
def arrow_errors(version: Path, what: str, columns: Sequence[str] | None = None) -> Iterator[None]:
    """Arrow/I/O errors → one-line :class:`LsdgraphError`: a bad filter says so, a damaged file is named."""
    try:
        yield
    except LsdgraphError:
        raise
    except _ARROW_ERRORS as e:
        forget(version)  # a file may have been repaired (or damaged) since: reopen next time
        msg = " ".join(str(e).split())
        if "No match for FieldRef" in msg:
            raise LsdgraphError(f"{what}: the filter names a column the collection does not have ({msg})") from None
        if "not in range" in msg and "Integer value" in msg:
            raise LsdgraphError(f"{what}: the filter compares a uint64 column with an int64 value ({msg}); "
                                "write the value as pyarrow.scalar(v, pyarrow.uint64())") from None
        bad = _culprit(version, columns)
        if bad is None:
            raise LsdgraphError(f"{what}: reading {version} failed ({msg}); check the filter, "
                                "or re-ingest the collection if the files are damaged") from None
        raise LsdgraphError(f"{what}: {bad} is not a readable Parquet file ({msg}); "
                            "re-ingest the collection (or drop it)") from None


_datasets: OrderedDict[str, ds.Dataset] = OrderedDict()
_datasets_lock = threading.Lock()
_CACHED = 32


def open_dataset(version: Path, what: str) -> ds.Dataset:
    """The dataset of a version folder. A version never changes once published (a new one gets a
    new folder), so its dataset — with the footers Arrow parsed on the first read — is kept for
    the next reads (the last 32 versions opened): a small ROI read then costs its row groups only."""
    key = str(version)
    with _datasets_lock:
        if key in _datasets:
            _datasets.move_to_end(key)
            return _datasets[key]
    files = part_files(version)
    listed = _listed_parts(version)
    if listed is not None and [f.name for f in files] != listed:
        missing = sorted(set(listed) - {f.name for f in files})
        odd = sorted({f.name for f in files} - set(listed))
        raise LsdgraphError(f"{what}: {version} " + (f"lacks the part file {missing[0]} it was published with"
                            if missing else f"holds a part file it was not published with ({odd[0]})")
                            + "; re-ingest the collection (or drop it)")
    if not files:
        raise LsdgraphError(f"{what}: {version} holds no part-*.parquet files; re-ingest the collection")
    with arrow_errors(version, what):
        dataset = ds.dataset([str(f) for f in files], format="parquet")
    with _datasets_lock:
        _datasets[key] = dataset
        while len(_datasets) > _CACHED:
            _datasets.popitem(last=False)
    return dataset


def _listed_parts(version: Path) -> list[str] | None:
    """The part files a version was published with (None: published before lists were kept)."""
    try:
        return sorted(json.loads((version / ".parts").read_text())["parts"])
    except (OSError, ValueError, KeyError):
        return None


def forget(version: Path) -> None:
    """Drop a version's cached dataset (its folder is being deleted, or a file failed to read)."""
    with _datasets_lock:
        _datasets.pop(str(version), None)


def _check_columns(dataset: ds.Dataset, columns: Sequence[str] | None, what: str) -> list[str]:
    if columns is None:
        return list(dataset.schema.names)
    cols = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in cols if c not in dataset.schema.names]
    if missing:
        raise LsdgraphError(f"{what} has no column {', '.join(map(repr, missing))}; "
                            f"its columns are {', '.join(dataset.schema.names)}")
    return cols


def to_numpy(table: pa.Table, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Arrow columns → numpy (uint64 stays uint64; a null float is NaN; strings are objects)."""
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in columns}


def scan(version: Path, what: str, columns: Sequence[str] | None, filter: pc.Expression | None,
         batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of at least ``batch_rows`` rows (the last one excepted), in file order; the dataset
    and the columns are checked now, the files are read as the batches are taken."""
    if batch_rows < 1:
        raise LsdgraphError(f"{what}: batch_rows must be positive, got {batch_rows}")
    dataset = open_dataset(version, what)
    cols = _check_columns(dataset, columns, what)
    with arrow_errors(version, what, cols):
        scanner = dataset.scanner(columns=cols, filter=filter, batch_size=min(batch_rows, 1 << 20))
    return _batches(scanner, version, what, cols, batch_rows)


def _batches(scanner: ds.Scanner, version: Path, what: str, cols: list[str],
             batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    with arrow_errors(version, what, cols):
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            rows += batch.num_rows
            if rows >= batch_rows:
                yield to_numpy(pa.Table.from_batches(pending, schema=scanner.projected_schema), cols)
                pending, rows = [], 0
        if pending:
            yield to_numpy(pa.Table.from_batches(pending, schema=scanner.projected_schema), cols)


def read(version: Path, what: str, columns: Sequence[str] | None,
         filter: pc.Expression | None) -> dict[str, np.ndarray]:
    dataset = open_dataset(version, what)
    cols = _check_columns(dataset, columns, what)
    with arrow_errors(version, what, cols):
        return to_numpy(dataset.to_table(columns=cols, filter=filter), cols)


def count(version: Path, what: str, filter: pc.Expression | None) -> int:
    dataset = open_dataset(version, what)
    with arrow_errors(version, what):
        return int(dataset.count_rows(filter=filter))


def schema(version: Path, what: str) -> pa.Schema:
    return open_dataset(version, what).schema


def column_range(version: Path, what: str, column: str) -> tuple[float, float] | None:
    """(min, max) of a numeric column from the row groups' statistics (ints stay ints); ``None``
    when it holds no value. A row group without statistics (a file lsdgraph did not write) is read."""
    dataset = open_dataset(version, what)
    _check_columns(dataset, [column], what)
    kind = dataset.schema.field(column).type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise LsdgraphError(f"{what}: column_range needs a numeric column; {column!r} is {kind}")
    lows, highs = [], []
    for f in part_files(version):
        with arrow_errors(version, what, [column]):
            pf = pq.ParquetFile(f)
            md = pf.metadata
            index = pf.schema_arrow.get_field_index(column)
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                if rg.num_rows == 0:
                    continue
                st = rg.column(index).statistics
                if st is not None and st.has_min_max:
                    lows.append(st.min)
                    highs.append(st.max)
                elif st is None or st.null_count != rg.num_rows:
                    mm = pc.min_max(pf.read_row_group(i, columns=[column]).column(0))
                    if mm["min"].is_valid:
                        lows.append(mm["min"].as_py())
                        highs.append(mm["max"].as_py())
    if not lows:
        return None
    cast = float if pa.types.is_floating(kind) else int
    return cast(min(lows)), cast(max(highs))


def explain(version: Path, what: str, filter: pc.Expression | None) -> dict:
    """What a read with ``filter`` would open: row groups (and their rows) in all, and those whose
    statistics the filter cannot rule out — the ones Arrow reads."""
    dataset = open_dataset(version, what)
    files = rgs = rows = kept_rgs = kept_rows = 0
    with arrow_errors(version, what):
        for frag in dataset.get_fragments():
            frag.ensure_complete_metadata()
            files += 1
            rgs += frag.num_row_groups
            rows += sum(rg.num_rows for rg in frag.row_groups)
            sub = frag if filter is None else frag.subset(filter)
            kept_rgs += sub.num_row_groups
            kept_rows += sum(rg.num_rows for rg in sub.row_groups)
    return {"version": str(version), "files": files, "row_groups": rgs, "row_groups_kept": kept_rgs,
            "rows": rows, "rows_in_kept": kept_rows, "fraction_kept": kept_rgs / rgs if rgs else 0.0}
