"""Export a run's tables (cases, steps, measurements, exchanges, captures) to CSV or Parquet files."""
from __future__ import annotations

import csv
from pathlib import Path

from rig.campaign.store import Store
from rig.errors import RigError

TABLES = ("cases", "steps", "measurements", "exchanges", "captures")


class ExportError(RigError):
    pass


def _cell(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def export(store: Store, run_id: int, out: Path, fmt: str = "csv") -> list[Path]:
    """Write the files into the directory `out` (made if missing, in an existing directory); a
    failed export removes what it wrote, so it leaves no empty or partial folder behind."""
    out = Path(out)
    if fmt not in ("csv", "parquet"):
        raise ExportError(f"format {fmt!r}: expected csv or parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ExportError("--format parquet needs pyarrow (pip install pyarrow)") from None
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: no directory {str(out.parent)!r} to make it in (--out names a folder to "
                          "write, in an existing one)")
    made = not out.exists()
    files: list[Path] = []
    try:
        if made:
            out.mkdir()
        _write(store, run_id, out, fmt, files)
    except BaseException as e:
        for f in files:
            f.unlink(missing_ok=True)
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if isinstance(e, OSError):
            raise ExportError(f"{out}: cannot write the export: {e.strerror or e}") from None
        raise
    return files


def _write(store: Store, run_id: int, out: Path, fmt: str, files: list[Path]) -> None:
    for name in TABLES:
        cols, rows = store.table(run_id, name)
        path = out / f"{name}.{fmt}"
        files.append(path)          # before writing: a file cut short is removed too
        if fmt == "csv":
            with path.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(cols)
                w.writerows([[_cell(v) for v in r] for r in rows])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
            pq.write_table(pa.table(data) if rows else pa.table({c: pa.array([], pa.string()) for c in cols}), path)
