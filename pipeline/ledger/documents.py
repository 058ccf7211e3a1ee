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

from datetime import datetime, timezone
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pageray.extractors.grounding import ground, ground_in_text, ground_merged
from pageray.extractors.bundle import METHOD as MULTI_IMAGE
from pageray.pipeline.datamodel import DocumentStatus, Status, document_schema, output_schema
from pageray.pipeline.ledger.folder import OutputFolder, part_name
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.locate import drop_rows
from pageray.pipeline.ledger.stale_documents import StaleDocuments
from pageray.schemas import ExtractionSchema, arrow_type
from pageray.schemas.merge_rules import PageValue, merge_pages

DOCS_PER_FILE = 20_000
ROWS_AT_ONCE = 1_000  # page or document rows held as Python dicts at once
_USABLE = (Status.OK.value, Status.GENERATION_TIMEOUT.value)
_PAGE_COLUMNS = ["doc_id", "source_uri", "doc_sha256", "doc_size", "doc_mtime_ns", "page_index", "page_count",
                 "schema_name", "schema_id", "model_id", "status", "error", "fields", "confidence",
                 "text_layer", "ungrounded_fields", "method", "created_at"]


def sync_documents(folder: OutputFolder, schema: ExtractionSchema, scope: Scope, run_id: str) -> dict[str, int]:
    """Make the document rows that are missing or stale, drop those without pages (see above).
    Which ones, and where their rows lie, comes out of core (pipeline.ledger.stale_documents);
    the driver holds the pages of DOCS_PER_FILE documents at a time."""
    pages = folder.pages_dataset(output_schema(arrow_type(schema)))
    doc_schema = document_schema(arrow_type(schema))
    files = folder.document_files()
    docs = pads.dataset([i.path for i in files], schema=doc_schema, filesystem=folder.fs, format="parquet") \
        if files else None
    written: set[str] = set()
    with StaleDocuments(pages, docs, scope) as stale:
        for chunk, holding in stale.chunks(DOCS_PER_FILE):
            made = _rows(schema, run_id, _by_document(pages, holding, chunk, scope), doc_schema)
            name = part_name(run_id, made.append_column("page_index", pa.array([0] * made.num_rows, pa.int32())))
            folder.write_parquet(f"{folder.documents_path}/{name}", made)
            written.add(name)
        # new rows first, then the old rows of those documents (and of orphans) go
        for number, rows in stale.dropped():
            if docs.files[number].rpartition("/")[2] not in written:
                drop_rows(folder, docs.files[number], rows)
        return {"documents_written": stale.stale, "documents_dropped": stale.orphans}


def _rows(schema: ExtractionSchema, run_id: str, groups: Iterator[list[dict]], doc_schema: pa.Schema) -> pa.Table:
    """The document rows of `groups`, held as Arrow a ROWS_AT_ONCE at a time (dicts weigh more)."""
    batches, rows = [], []
    for group in groups:
        rows.append(document_row(schema, run_id, group))
        if len(rows) == ROWS_AT_ONCE:
            batches.append(pa.RecordBatch.from_pylist(rows, schema=doc_schema))
            rows = []
    batches.append(pa.RecordBatch.from_pylist(rows, schema=doc_schema))
    return pa.Table.from_batches(batches, schema=doc_schema)


def _by_document(pages: pads.Dataset, holding: list[int], docs: list[str], scope: Scope) -> Iterator[list[dict]]:
    """The current page rows of `docs`, read from the files numbered `holding`, grouped by
    document in doc_id order and sorted by page (stably: in the order the files hold them).
    The pages stay Arrow; a ROWS_AT_ONCE of them at a time become dicts."""
    table = pads.dataset([pages.files[i] for i in holding], schema=pages.schema, filesystem=pages.filesystem,
                         format="parquet") \
        .to_table(columns=_PAGE_COLUMNS, filter=scope.expression() & pc.field("doc_id").isin(docs))
    table = table.sort_by([("doc_id", "ascending"), ("page_index", "ascending")])
    group: list[dict] = []
    for batch in table.to_batches(max_chunksize=ROWS_AT_ONCE):
        for row in batch.to_pylist():
            if group and row["doc_id"] != group[0]["doc_id"]:
                yield group
                group = []
            group.append(row)
    if group:
        yield group


def document_row(schema: ExtractionSchema, run_id: str, pages: list[dict]) -> dict[str, Any]:
    """The one constructor of a document row, from the document's current page rows."""
    first = pages[0]
    usable = [p for p in pages if p["status"] in _USABLE]
    failed = [p for p in pages if p["status"] not in _USABLE]
    page_count = first["page_count"]
    complete = not failed and (page_count is None or len({p["page_index"] for p in pages}) >= page_count)
    status = DocumentStatus.of(complete, bool(usable), failed[0]["status"] if failed else None)
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
    confidences = [p["confidence"] for p in usable if p["confidence"] is not None]
    return {"fields": merged.fields, "field_pages": merged.field_pages, "conflicts": merged.conflicts,
            "confidence": sum(confidences) / len(confidences) if confidences else None,
            "grounding": ground_merged(schema.json_schema, merged,
                                       {p["page_index"]: p["ungrounded_fields"] for p in pages})}


def _multi_image(schema: ExtractionSchema, lead: dict, text: str | None) -> dict[str, Any]:
    fields = lead["fields"] if lead["status"] in _USABLE else None
    return {"fields": fields, "field_pages": None, "conflicts": [], "confidence": lead["confidence"],
            "grounding": ground_in_text(schema.json_schema, fields, text)}
