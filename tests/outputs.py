"""Output folders made by hand, as earlier (or killed) runs would have left them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa

from pageray.pipeline.config import DEFAULT_MODEL
from pageray.pipeline.datamodel import output_schema, rows_to_table
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.storage import doc_id_for
from pageray.pipeline.ledger.folder import DATA_DIR, OutputFolder
from pageray.schemas import load_schema

SCHEMA = output_schema(pa.struct([pa.field("text", pa.string())]))
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SCOPE = Scope(load_schema("transcribe").id, DEFAULT_MODEL)
OTHER = Scope(load_schema("invoice").id, DEFAULT_MODEL)


def commit(out, run_id: str, path, pages, size: int, mtime_ns: int, minutes: int = 0, schema=None, scope=None,
           page_count: int | None = 2, status: str = "ok") -> None:
    """One part file of `run_id` with rows for `pages` of the document at `path`."""
    scope = scope or schema or SCOPE
    rows = [{"run_id": run_id, "schema_id": scope.schema_id, "model_id": scope.model_id,
             "doc_id": doc_id_for(str(path)), "source_uri": str(path), "doc_sha256": f"{size}",
             "doc_size": size, "doc_mtime_ns": mtime_ns, "page_index": p, "page_count": page_count, "status": status,
             "created_at": T0 + timedelta(minutes=minutes)} for p in pages]
    table = rows_to_table(rows, SCHEMA)
    OutputFolder(str(out)).write_part(run_id, table)


def document(folder, name: str, size: int):
    path = folder / name
    path.write_bytes(b"x" * size)
    return path, path.stat().st_mtime_ns


def rows(out):
    return duckdb.sql(f"select source_uri, page_index, doc_size, run_id from read_parquet('{out}/{DATA_DIR}/*.parquet') "
                      "order by all").fetchall()
