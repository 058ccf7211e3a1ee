"""Document rows: one current row per document in OUT/documents/, made from its page rows.

Why from the page rows, after the run: pages stay the unit of work, of exactly-once and of
resume (a document row never needs a model call), and a document row is a pure function of its
current page rows (schemas.merge_rules), so it can always be made again.

Exactly once, self-healing: a document row records `pages_created_at`, the newest created_at of
the page rows it was made from. At the end of every document-scope run (after page compaction),
each document of the run's schema and model whose pages are newer than its row, that has no row
or more than one, is made again; rows of documents that no longer have pages are dropped. New
rows are written first (one whole file, atomically), then older rows of those documents are
removed from the other files, so a run killed at any point leaves at most an extra row that the
next run's check removes. A changed file, --force and a resumed run all give newer page rows,
hence a new document row.

Two methods (the page rows' `method` says which): "merge" merges the pages' extractions
(schemas.merge_rules); "multi_image" takes the answer the model gave for all the pages in one
prompt, which is on the first page's row (extractors.multi_image), the pages a value came from
being unknown. `grounding` says per value whether it was found: for merge, in the text of the page
it came from, as that page's own grounding found it; for multi_image, in the text of all its pages.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pageray.extractors.grounding import PageText, ground, grounded_at
from pageray.extractors.multi_image import METHOD as MULTI_IMAGE
from pageray.pipeline.datamodel import Status, document_schema, output_schema
from pageray.pipeline.ledger.folder import OutputFolder, part_name
from pageray.pipeline.ledger.index import BATCH_ROWS, DUCKDB_CONFIG, SCAN_ROWS, Scope
from pageray.schemas import ExtractionSchema, arrow_type
from pageray.schemas.merge_rules import PageValue, merge_pages

DOCS_PER_FILE = 20_000
_USABLE = (Status.OK.value, Status.GENERATION_TIMEOUT.value)
_PAGE_COLUMNS = ["doc_id", "source_uri", "doc_sha256", "doc_size", "doc_mtime_ns", "page_index", "page_count",
                 "schema_name", "schema_id", "model_id", "status", "error", "fields", "confidence",
                 "text_layer", "ungrounded_fields", "method", "created_at"]


# Which documents need a new row, asked of DuckDB on disk under the plan's memory limit
# (pipeline.ledger.index says why DuckDB, fed by pyarrow's reader): the newest page of every
# document and the rows already written are a join whose size grows with the output.
# A row written before `method` and `grounding` existed is made again, once (its stamp reads null).
_STALE = """
CREATE TABLE newest AS SELECT doc_id, max(created_at) AS stamp FROM page_stamps GROUP BY doc_id;
CREATE TABLE existing AS
  SELECT doc_id, count(*) AS n, min(CASE WHEN method IS NOT NULL THEN pages_created_at END) AS stamp
  FROM document_stamps GROUP BY doc_id;
CREATE TABLE stale AS
  SELECT doc_id FROM newest LEFT JOIN existing e USING (doc_id)
  WHERE e.n IS NULL OR e.n <> 1 OR e.stamp IS DISTINCT FROM newest.stamp;
CREATE TABLE orphans AS SELECT doc_id FROM existing ANTI JOIN newest USING (doc_id);
"""


def _stream(dataset: pads.Dataset | None, columns: list[str], scope: Scope,
            failed: list[BaseException]) -> pa.RecordBatchReader | None:
    """The scope's rows of `dataset` as batches, with `seq` (their order as read): one batch at a time
    in memory, as pipeline.ledger.index reads the pages; what reading raised goes to `failed` too."""
    if dataset is None:
        return None
    scanner = dataset.scanner(columns=columns, filter=pc.field("doc_id").is_valid() & scope.expression(),
                              batch_size=SCAN_ROWS, batch_readahead=1, fragment_readahead=1, use_threads=False,
                              memory_pool=pa.system_memory_pool())

    def batches():
        seq = 0
        try:
            for batch in scanner.to_batches():
                if batch.num_rows:
                    yield batch.append_column("seq", pa.array(range(seq, seq + batch.num_rows), pa.int64()))
                    seq += batch.num_rows
        except Exception as exc:
            failed.append(exc)
            raise
    return pa.RecordBatchReader.from_batches(scanner.projected_schema.append(pa.field("seq", pa.int64())), batches())


def _register(db: duckdb.DuckDBPyConnection, name: str, rows: pa.RecordBatchReader | None, empty: pa.Schema) -> None:
    db.register(name, rows if rows is not None else empty.append(pa.field("seq", pa.int64())).empty_table())


def sync_documents(folder: OutputFolder, schema: ExtractionSchema, scope: Scope, run_id: str) -> dict[str, int]:
    """Make the document rows that are missing or stale, drop those without pages (see above)."""
    page_schema = output_schema(arrow_type(schema))
    pages = folder.pages_dataset(page_schema)
    doc_schema = document_schema(arrow_type(schema))
    files = folder.document_files()
    docs = pads.dataset([i.path for i in files], schema=doc_schema, filesystem=folder.fs, format="parquet") \
        if files else None
    failed: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="pageray-documents-") as tmp:
        db = duckdb.connect(f"{tmp}/documents.duckdb", config={**DUCKDB_CONFIG, "temp_directory": f"{tmp}/spill"})
        try:
            db.execute("SET enable_progress_bar = false")
            _register(db, "page_stamps", _stream(pages, ["doc_id", "created_at"], scope, failed),
                      pa.schema([page_schema.field("doc_id"), page_schema.field("created_at")]))
            _register(db, "document_stamps", _stream(docs, ["doc_id", "pages_created_at", "method"], scope, failed),
                      pa.schema([doc_schema.field(c) for c in ("doc_id", "pages_created_at", "method")]))
            db.execute(_STALE)
            stale, orphans = db.execute(
                "SELECT (SELECT count(*) FROM stale), (SELECT count(*) FROM orphans)").fetchall()[0]
            written = _write_rows(db, folder, schema, scope, run_id, pages, doc_schema, failed) if stale else set()
            dropped = db.sql("SELECT doc_id FROM stale UNION ALL SELECT doc_id FROM orphans ORDER BY doc_id") \
                .to_arrow_table().column(0).combine_chunks().cast(pa.string())
        except duckdb.Error:
            if failed:
                raise failed[0] from None  # the storage's own error, as every other read gives it
            raise
        finally:
            db.close()
    _drop_rows(folder, dropped, written, scope)
    return {"documents_written": stale, "documents_dropped": orphans}


def _write_rows(db: duckdb.DuckDBPyConnection, folder: OutputFolder, schema: ExtractionSchema, scope: Scope,
                run_id: str, pages: pads.Dataset, doc_schema: pa.Schema, failed: list[BaseException]) -> set[str]:
    """One file of rows per DOCS_PER_FILE stale documents, in doc_id order: their pages gathered in
    one pass over the output and sorted by DuckDB (spilling), then read back a batch at a time."""
    rows = _stream(pages, _PAGE_COLUMNS, scope, failed)
    db.register("page_rows", rows)
    db.execute("CREATE TABLE stale_pages AS SELECT * FROM page_rows SEMI JOIN stale USING (doc_id)")
    db.unregister("page_rows")
    # back to the page schema's own types (DuckDB's may differ: time zones, string kinds)
    target = pa.schema([f for f in rows.schema if f.name != "seq"])
    written: set[str] = set()
    made: list[dict] = []
    group: list[dict] = []

    def flush() -> None:
        out = pa.Table.from_pylist(made, schema=doc_schema)
        name = part_name(run_id, out.append_column("page_index", pa.array([0] * out.num_rows, pa.int32())))
        folder.write_parquet(f"{folder.documents_path}/{name}", out)
        written.add(name)
        made.clear()
    query = f"SELECT {', '.join(target.names)} FROM stale_pages ORDER BY doc_id, page_index, seq"
    with db.sql(query).to_arrow_reader(BATCH_ROWS) as reader:
        for batch in reader:
            for row in pa.Table.from_batches([batch]).cast(target).to_pylist():
                if group and row["doc_id"] != group[0]["doc_id"]:
                    made.append(document_row(schema, run_id, group))
                    group = []
                    if len(made) == DOCS_PER_FILE:
                        flush()
                group.append(row)
    if group:
        made.append(document_row(schema, run_id, group))
    if made:
        flush()
    return written


def document_row(schema: ExtractionSchema, run_id: str, pages: list[dict]) -> dict[str, Any]:
    """The one constructor of a document row, from the document's current page rows."""
    first = pages[0]
    usable = [p for p in pages if p["status"] in _USABLE]
    failed = [p for p in pages if p["status"] not in _USABLE]
    page_count = first["page_count"]
    complete = not failed and (page_count is None or len({p["page_index"] for p in pages}) >= page_count)
    status = "ok" if complete else "partial" if usable else failed[0]["status"]
    error = None
    if failed:
        shown = "; ".join(f"page {p['page_index']}: {p['status']}" + (f" ({p['error'][:200]})" if p["error"] else "")
                          for p in failed[:5])
        error = f"{len(failed)} of {len(pages)} pages failed: {shown}" + ("; ..." if len(failed) > 5 else "")
    elif not complete:
        error = f"rows for {len(pages)} of {page_count} pages"
    text = "\n".join(p["text_layer"] for p in usable if p["text_layer"] and p["text_layer"].strip()) or None
    multi = all(p.get("method") == MULTI_IMAGE for p in pages)
    made = _multi_image(schema, pages[0], text) if multi else _merged(schema, pages, usable)
    return {
        **{k: first[k] for k in ("doc_id", "source_uri", "doc_sha256", "doc_size", "doc_mtime_ns", "page_count",
                                 "schema_name", "schema_id", "model_id")},
        "run_id": run_id, "status": status, "error": error, "complete": complete, "pages_ok": len(usable),
        "failed_pages": [p["page_index"] for p in failed], **made,
        "method": MULTI_IMAGE if multi else "merge",
        **ground(schema.json_schema, made["fields"], text),
        "pages_created_at": max(p["created_at"] for p in pages), "created_at": datetime.now(timezone.utc),
    }


def _merged(schema: ExtractionSchema, pages: list[dict], usable: list[dict]) -> dict[str, Any]:
    merged = merge_pages(schema.json_schema, [
        PageValue(p["page_index"], p["fields"] if p["status"] in _USABLE else None, p["confidence"]) for p in pages])
    missing = {p["page_index"]: p["ungrounded_fields"] for p in pages}

    def where(path: str, kind: str, value: Any) -> tuple[bool | None, int | None]:
        # the page's own grounding of the value (null there: that page had no text layer)
        page, page_path = merged.origin(path) or (None, path)
        unfound = missing.get(page)
        return (None if unfound is None else page_path not in unfound), page
    confidences = [p["confidence"] for p in usable if p["confidence"] is not None]
    return {"fields": merged.fields, "field_pages": merged.field_pages, "conflicts": merged.conflicts,
            "confidence": sum(confidences) / len(confidences) if confidences else None,
            "grounding": grounded_at(schema.json_schema, merged.fields, where)}


def _multi_image(schema: ExtractionSchema, lead: dict, text: str | None) -> dict[str, Any]:
    fields = lead["fields"] if lead["status"] in _USABLE else None
    page_text = PageText(text) if text else None

    def where(path: str, kind: str, value: Any) -> tuple[bool | None, int | None]:
        return (None if page_text is None else page_text.has(kind, value)), None
    return {"fields": fields, "field_pages": None, "conflicts": [], "confidence": lead["confidence"],
            "grounding": grounded_at(schema.json_schema, fields, where)}


def _drop_rows(folder: OutputFolder, wanted: pa.Array, keep_files: set[str], scope: Scope) -> None:
    if not len(wanted):
        return
    for info in folder.document_files():
        if info.base_name in keep_files:
            continue
        table = pq.read_table(info.path, filesystem=folder.fs)
        drop = pc.and_(pc.is_in(table.column("doc_id"), value_set=wanted), pa.array(scope.mask(table)))
        if not pc.any(drop).as_py():
            continue
        remaining = table.filter(pc.invert(drop))
        if remaining.num_rows:
            folder.write_parquet(info.path, remaining)
        else:
            folder.delete(info.path)
