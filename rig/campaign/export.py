"""Export a run's tables (cases, steps, measurements, exchanges, captures) to CSV or Parquet files."""
from __future__ import annotations

import csv
from pathlib import Path

from rig.campaign.store import Store

TABLES = ("cases", "steps", "measurements", "exchanges", "captures")


class ExportError(Exception):
    pass


def _cell(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def export(store: Store, run_id: int, out: Path, fmt: str = "csv") -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError("--format parquet needs pyarrow (pip install pyarrow)") from None
    for name in TABLES:
        cols, rows = store.table(run_id, name)
        if fmt == "csv":
            path = out / f"{name}.csv"
            with path.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(cols)
                w.writerows([[_cell(v) for v in r] for r in rows])
        elif fmt == "parquet":
            path = out / f"{name}.parquet"
            data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
            pq.write_table(pa.table(data) if rows else pa.table({c: pa.array([], pa.string()) for c in cols}), path)
        else:
            raise ExportError(f"format {fmt!r}: expected csv or parquet")
        files.append(path)
    return files
