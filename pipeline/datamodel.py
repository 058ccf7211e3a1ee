"""The page row: the one output schema of pageray, and the statuses a row can carry.

Every other module imports the column names and the Arrow schema from here, so the
Parquet a user queries has exactly one definition.
"""
from __future__ import annotations

import enum
from typing import Any, Mapping, Sequence

import pyarrow as pa


class Status(str, enum.Enum):
    """Why a row looks the way it does. Only `ok` rows carry model output. Which statuses
    a later run redoes is decided in pipeline.ledger.retry."""

    OK = "ok"
    # the document's own fault: recorded as a row, never fatal
    RENDER_ERROR = "render_error"          # corrupt file, unreadable page
    ENCRYPTED = "encrypted"                # needs a password we do not have
    EMPTY_DOCUMENT = "empty_document"      # zero pages / zero frames
    RENDER_CRASH = "render_crash"          # renderer died in native code (segfault, abort)
    RENDER_TIMEOUT = "render_timeout"      # per-document render time limit
    RENDER_MEMORY = "render_memory"        # renderer exceeded its memory limit
    FILE_TOO_LARGE = "file_too_large"      # input file over max_file_bytes
    READ_ERROR = "read_error"              # the file could not be read (vanished, I/O, storage)
    PAGE_SKIPPED = "page_skipped"          # beyond max_pages_per_doc: recorded, not dropped
    PAGE_TOO_LARGE = "page_too_large"      # page over max_page_pixels even after down-scaling
    # the model's side, still a row
    MODEL_ERROR = "model_error"            # generation failed for this page (e.g. OOM at batch 1)
    GENERATION_TIMEOUT = "generation_timeout"
    INVALID_OUTPUT = "invalid_output"      # parsed but failed validation / coercion

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class DocumentStatus(str, enum.Enum):
    """A document row's status (pipeline.ledger.documents): ok when every page is, partial when
    some pages failed and some did not; when none did, the first failed page's own Status."""

    OK = Status.OK.value
    PARTIAL = "partial"

    @staticmethod
    def of(complete: bool, any_usable: bool, first_failed: str | None) -> str:
        if complete:
            return DocumentStatus.OK.value
        return DocumentStatus.PARTIAL.value if any_usable else str(first_failed)


# What `--retry` may name: statuses that are final by default (ok rows are redone with --force).
# Here, with the statuses, so that the config can check the flag; pipeline.ledger.retry applies it.
RETRYABLE_ON_REQUEST = frozenset({Status.RENDER_CRASH, Status.RENDER_TIMEOUT, Status.RENDER_MEMORY,
                                  Status.PAGE_TOO_LARGE, Status.RENDER_ERROR, Status.ENCRYPTED,
                                  Status.INVALID_OUTPUT, Status.GENERATION_TIMEOUT})


def _base_fields() -> list[pa.Field]:
    return [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("doc_sha256", pa.string()),
        # size and mtime as listed: with doc_sha256 they tell a changed file from a known one
        pa.field("doc_size", pa.int64()),
        pa.field("doc_mtime_ns", pa.int64()),
        pa.field("page_index", pa.int32(), nullable=False),
        pa.field("page_count", pa.int32()),
        pa.field("schema_name", pa.string()),
        pa.field("schema_id", pa.string()),
        pa.field("schema_version", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]


def _tail_fields() -> list[pa.Field]:
    return [
        pa.field("raw_text", pa.string()),
        pa.field("valid", pa.bool_()),
        pa.field("truncated", pa.bool_()),
        pa.field("confidence", pa.float64()),
        # how the model read the page: "page" (alone), "multi_image" (with its document's pages in
        # one prompt: the answer is on the first page's row, extractors.multi_image); null: not read
        pa.field("method", pa.string()),
        # share of the row's strings, numbers and dates found in the page's text layer, and the
        # paths of those not found; null without a text layer (extractors.grounding)
        pa.field("grounded_fraction", pa.float64()),
        pa.field("ungrounded_fields", pa.list_(pa.string())),
        pa.field("input_tokens", pa.int32()),
        pa.field("output_tokens", pa.int32()),
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("text_layer", pa.string()),
        pa.field("text_layer_chars", pa.int32()),
        pa.field("render_ms", pa.float64()),
        pa.field("extract_ms", pa.float64()),
        pa.field("worker", pa.string()),  # Ray node id and pid of the extractor that made the row
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]


def output_schema(fields_type: pa.DataType) -> pa.Schema:
    """The Parquet schema of one run: fixed columns plus the schema-specific `fields` struct."""
    return pa.schema(_base_fields() + [pa.field("fields", fields_type)] + _tail_fields())


_PAGE_ONLY = ("page_index", "schema_version")


def document_schema(fields_type: pa.DataType) -> pa.Schema:
    """The Parquet schema of document rows (OUT/documents/, pipeline.ledger.documents): one row
    per document, its `fields` merged from its pages' (schemas.merge_rules)."""
    pages = pa.list_(pa.int32())
    # a page row's identity and status columns, less the page's own; a document's status is ok when
    # every page is ok, partial when some failed (failed_pages), else its pages' status
    identity = [f for f in _base_fields() if f.name not in _PAGE_ONLY]
    return pa.schema(identity + [
        pa.field("complete", pa.bool_()),
        pa.field("pages_ok", pa.int32()),
        pa.field("failed_pages", pages),
        pa.field("fields", fields_type),
        pa.field("field_pages", pa.list_(pa.struct([("field", pa.string()), ("pages", pages)]))),
        pa.field("conflicts", pa.list_(pa.struct([("field", pa.string()), ("values", pa.list_(pa.string())),
                                                  ("pages", pages)]))),
        pa.field("confidence", pa.float64()),
        # "merge" (merged from its pages' rows) or "multi_image" (one prompt with all its pages)
        pa.field("method", pa.string()),
        pa.field("grounded_fraction", pa.float64()),
        pa.field("ungrounded_fields", pa.list_(pa.string())),
        # per checked value (field path): found in the text layer of the page it was merged from
        # (`page`; null for multi_image) or, for multi_image, of all pages; `found` null where
        # that text was missing (a scan). schemas.merge_rules.Merged.origin, extractors.grounding
        pa.field("grounding", pa.list_(pa.struct([("field", pa.string()), ("found", pa.bool_()),
                                                  ("page", pa.int32())]))),
        # the newest created_at of the page rows it was made from: a newer page row makes it stale
        pa.field("pages_created_at", pa.timestamp("us", tz="UTC")),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ])


# Columns the render step produces for each page. The pixels travel to the extractor and are never
# written: `image` (raw RGB, as rendered) or, once prepared for the model, `pixels` (the page's
# uint8 crops, packed) with their `crop_shapes` (extractors.pixels).
PIXEL_COLUMNS: tuple[str, ...] = ("image", "pixels")
PAGE_COLUMNS: tuple[str, ...] = (
    "run_id", "doc_id", "source_uri", "doc_sha256", "doc_size", "doc_mtime_ns", "page_index", "page_count",
    "status", "error", "image", "pixels", "crop_shapes", "image_width", "image_height",
    "text_layer", "text_layer_chars", "render_ms",
)
_ROW_COLUMNS = frozenset(PAGE_COLUMNS) | frozenset(output_schema(pa.null()).names)

# The extractor's decode counters for the run record (where GPU time goes): per model batch, its
# decode steps, its live rows summed over those steps and its slots (batch rows) summed over them,
# so that occupancy = row_steps / slot_steps. They are counts of a batch, not facts of a page, so
# they are not page columns (the committed Parquet schema stays as it is): the extractor adds them
# to its output table, carried on each batch's first row (0 on the others, so the driver's sum is
# exact however Ray Data regroups rows), CommitPages leaves them out of the file and hands them to
# the driver in its summary, and the driver sums them (pipeline.driver.decode_counts).
DECODE_COLUMNS: tuple[str, ...] = ("decode_steps", "decode_row_steps", "decode_slot_steps")


def with_decode_counts(table: pa.Table, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """`table` (built from `rows`) with the DECODE_COLUMNS the rows carry (0 where none)."""
    for name in DECODE_COLUMNS:
        table = table.append_column(name, pa.array([int(r.get(name) or 0) for r in rows], pa.int64()))
    return table


def page_row(**columns: Any) -> dict[str, Any]:
    """The one constructor of a page row: a keyword per column (a Status for `status`). A name
    that is not a column is refused, so a misspelled key cannot silently become a null."""
    unknown = columns.keys() - _ROW_COLUMNS
    if unknown:
        raise TypeError(f"page_row() got unknown column(s) {sorted(unknown)}")
    if isinstance(columns.get("status"), Status):
        columns["status"] = columns["status"].value
    return columns


def document_row(status: Status, error: str, render_ms: float = 0.0, page_count: int | None = None) -> dict[str, Any]:
    """The row that stands for a whole document that yielded no page (page 0, page_count unknown)."""
    return page_row(page_index=0, page_count=page_count, status=status, error=error, render_ms=render_ms)


def rows_to_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = PAGE_COLUMNS) -> dict[str, list]:
    """Row dicts as a column batch (what a Ray Data step returns); a missing key is a null."""
    return {c: [r.get(c) for r in rows] for c in columns}


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly `schema`; missing keys become nulls, extra keys are dropped."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def batch_to_rows(batch: Mapping[str, Any] | pa.Table) -> list[dict[str, Any]]:
    """A column batch (dict of lists / numpy arrays, or a pyarrow Table) as a list of row dicts.
    From a Table, page pixels come as zero-copy pyarrow Buffers, not as copied bytes."""
    if isinstance(batch, pa.Table):
        binary = [c for c in PIXEL_COLUMNS if c in batch.column_names]
        rows = batch.drop_columns(binary).to_pylist()
        for name in binary:
            for row, value in zip(rows, batch.column(name)):
                row[name] = value.as_buffer() if value.is_valid else None
        return rows
    names = list(batch.keys())
    if not names:
        return []
    cols = [batch[n] for n in names]
    cols = [c.tolist() if hasattr(c, "tolist") else list(c) for c in cols]
    return [dict(zip(names, values)) for values in zip(*cols)]
