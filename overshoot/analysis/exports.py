"""A run store's tables in the formats others read: the run table as CSV and parquet (benchopt's format),
and the step and epoch logs of every usable run as one long parquet file each.

    from overshoot.analysis import exports, results
    exports.export_parquet(["runs"], "export")   # export/runs.parquet, steps.parquet, epochs.parquet
    results.curves("export")                      # the steps again, read from the parquet export

The store itself stays CSV (its writer appends to the logs a row at a time); an export is a read-only
snapshot of its usable runs, each log row beside its run's task, method, seed, protocol and path, exactly as
:func:`overshoot.analysis.results.curves` returns them from the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from overshoot.analysis.results import EPOCH_COLUMNS, RUN_META, Scan, curves, epoch_log, run_meta, scan
from overshoot.common.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

RUNS_FILE, STEPS_FILE, EPOCHS_FILE = "runs", "steps.parquet", "epochs.parquet"


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as one parquet file (pyarrow), written atomically; the index is not stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: frame.to_parquet(f, engine="pyarrow", index=False), "wb")
    return path


def _parquet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """The run table with every object column of mixed types as strings (parquet holds one type a
    column: a config key that is a number in one run and a list in another)."""
    import pandas as pd

    def missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    out = table.copy()
    for c in out.columns:
        if out[c].dtype == object or isinstance(out[c].dtype, pd.StringDtype):
            kinds = {type(v) for v in out[c] if not missing(v)}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
                out[c] = out[c].map(lambda v: None if missing(v) else str(v))
    return out


def write_run_table(table: pd.DataFrame, out: Path | str) -> list[Path]:
    """The run table (:func:`overshoot.analysis.results.load`) as ``runs.csv`` and ``runs.parquet`` in
    ``out``; a column mixing types is stored as text in the parquet file."""
    from overshoot.common.files import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{RUNS_FILE}.csv"
    atomic_write_text(csv, table.to_csv(index=False))
    return [csv, write_parquet(_parquet_safe(table), out / f"{RUNS_FILE}.parquet")]


def epochs_long(runs: Scan | Iterable[Path | str]) -> pd.DataFrame:
    """The epoch records of the usable runs in long form: one row per (run, epoch, split) with the run's
    task, method, optimizer, family, gamma, seed, protocol, config_hash, path and epochs.csv's columns."""
    import pandas as pd

    sc = runs if isinstance(runs, Scan) else scan(runs)
    frames = []
    for r in sc.records:
        e = epoch_log(r.path)
        meta = run_meta(r)
        frames.append(e.assign(**meta)[[*meta, *e.columns]])
    if not frames:
        return pd.DataFrame(columns=[*RUN_META, *EPOCH_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    for c in ("task", "method", "optimizer", "family", "protocol", "config_hash", "path"):
        out[c] = out[c].astype("category")
    return out


def export_parquet(runs: Scan | Iterable[Path | str], out: Path | str) -> list[Path]:
    """Write ``runs.csv``, ``runs.parquet`` (every run read, usable or not), ``steps.parquet`` (the
    usable runs' steps, :func:`overshoot.analysis.results.curves`) and ``epochs.parquet``
    (:func:`epochs_long`) to ``out``; the paths written."""
    sc = runs if isinstance(runs, Scan) else scan(runs)
    out = Path(out)
    written = write_run_table(sc.table, out)
    written.append(write_parquet(curves(sc), out / STEPS_FILE))
    written.append(write_parquet(epochs_long(sc), out / EPOCHS_FILE))
    return written
