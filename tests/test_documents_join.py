"""Document rows are made out of core (pipeline.ledger.stale_documents, in DuckDB); they must be
exactly what a plain in-memory reading of the page rows gives: the reference below (`expected`) is
the rule the step followed when it held every document's newest page in the driver, with no tricks.
And however wide the page rows, DuckDB's memory limit holds: only narrow keys go into it."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from outputs import T0
from pageray.extractors.grounding import ground
from pageray.pipeline.datamodel import document_schema, output_schema, rows_to_table
from pageray.pipeline.ledger import documents, spill
from pageray.pipeline.ledger.documents import document_row, sync_documents
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.schemas import arrow_type, load_schema

SCHEMA = load_schema("invoice")  # dates, nested structs and lists: what DuckDB must hand back unchanged
SCOPE = Scope(SCHEMA.id, "m", ("/models/m/",))
PAGES = output_schema(arrow_type(SCHEMA))
DOCS = document_schema(arrow_type(SCHEMA))
PER_FILE = 700


def _fields(rng: random.Random) -> dict | None:
    if rng.random() < 0.1:
        return None
    return {"invoice_number": rng.choice([None, f"INV-{rng.randrange(100)}"]),
            "invoice_date": rng.choice([None, date(2026, 1, rng.randint(1, 28))]),
            "vendor": rng.choice([None, {"name": rng.choice(["Acme", "Initech"]), "address": None, "tax_id": "DE1"}]),
            "currency": rng.choice(["EUR", "USD", None]),
            "line_items": [{"description": f"item {i}", "quantity": float(i), "unit_price": 1.5, "amount": 1.5 * i}
                           for i in range(rng.randint(0, 3))],
            "total": rng.choice([None, 12.5, 3.0])}


def _page(rng: random.Random, doc: int, page: int, count: int, method: str, minutes: int, model: str = "m",
          schema_id: str = SCHEMA.id) -> dict:
    status = rng.choice(["ok"] * 6 + ["generation_timeout", "model_error", "render_timeout"])
    fields = _fields(rng) if status in ("ok", "generation_timeout") else None
    text = rng.choice([None, "", "Invoice INV-7 total 12.5 EUR Acme"])
    return {**ground(SCHEMA.json_schema, fields, text), "run_id": "r0", "doc_id": f"d{doc:05d}",
            "source_uri": f"/in/d{doc:05d}.pdf", "doc_sha256": f"s{doc}", "doc_size": doc, "doc_mtime_ns": 1,
            "page_index": page, "page_count": count, "schema_name": SCHEMA.name, "schema_id": schema_id,
            "model_id": model, "status": status, "error": None if status == "ok" else "boom", "fields": fields,
            "confidence": rng.choice([None, 0.25, 0.9]), "text_layer": text, "method": method,
            "created_at": T0 + timedelta(minutes=minutes, microseconds=rng.randrange(3))}


def _fill(folder: OutputFolder, rng: random.Random, docs: range, minutes: int, run: str) -> None:
    rows = []
    for doc in docs:
        count = rng.randint(1, 5)
        method = "multi_image" if doc % 7 == 0 else "page"
        pages = [p for p in range(count) if rng.random() < 0.9] or [0]  # some documents incomplete
        model = "/models/m/" if doc % 11 == 0 else "m"
        rows += [_page(rng, doc, p, count, method, minutes, model) for p in pages]
        if doc % 5 == 0:  # another schema's rows of the same document: not this scope's
            rows.append(_page(rng, doc, 0, count, "page", minutes + 9, schema_id="other"))
    rng.shuffle(rows)
    for start in range(0, len(rows), 2500):
        folder.write_part(f"{run}x{start}", rows_to_table(rows[start:start + 2500], PAGES))


def _in_scope(table: pa.Table) -> list[dict]:
    return [r for r in table.to_pylist() if r["schema_id"] == SCOPE.schema_id
            and r["model_id"] in (SCOPE.model_id, *SCOPE.model_aliases)]


def expected(folder: OutputFolder, run_id: str) -> tuple[dict, dict[str, int], int]:
    """Every document's row, the counts and the number of new files as the in-memory step made them."""
    pages = _in_scope(pads.dataset([i.path for i in folder.part_files()], schema=PAGES,
                                   filesystem=folder.fs).to_table())
    existing = defaultdict(list)
    if folder.document_files():
        for r in _in_scope(pads.dataset([i.path for i in folder.document_files()], schema=DOCS,
                                        filesystem=folder.fs).to_table()):
            existing[r["doc_id"]].append(r["pages_created_at"] if r["method"] is not None else None)
    groups = defaultdict(list)
    for row in pages:
        groups[row["doc_id"]].append(row)
    newest = {d: max(r["created_at"] for r in rows) for d, rows in groups.items()}
    stale = sorted(d for d, stamp in newest.items() if existing.get(d) != [stamp])
    made = {d: _comparable(document_row(SCHEMA, run_id, sorted(rows, key=lambda r: r["page_index"])))
            for d, rows in groups.items()}
    counts = {"documents_written": len(stale), "documents_dropped": len(set(existing) - set(newest))}
    return made, counts, -(-len(stale) // PER_FILE)


def _comparable(row: dict) -> dict:
    # the run that wrote a row and when it did are not the rows' content
    return {k: v for k, v in row.items() if k not in ("run_id", "created_at")}


def written(folder: OutputFolder) -> dict:
    rows = _in_scope(pads.dataset([i.path for i in folder.document_files()], schema=DOCS,
                                  filesystem=folder.fs).to_table())
    assert len({r["doc_id"] for r in rows}) == len(rows), "one row per document"
    return {r["doc_id"]: _comparable(r) for r in rows}


def test_document_rows_are_those_of_a_plain_reading_of_the_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "DOCS_PER_FILE", PER_FILE)  # several files from a small output
    rng = random.Random(24)
    folder = OutputFolder(str(tmp_path / "out"))
    _fill(folder, rng, range(3000), 0, "a")

    made, counts, files = expected(folder, "r1")
    assert sync_documents(folder, SCHEMA, SCOPE, "r1") == counts
    assert len(folder.document_files()) == files
    assert written(folder) == made

    # a later run: newer pages of some documents, rows of documents that have no pages (orphans),
    # a row written twice, and a row from before `method` existed
    _fill(folder, rng, range(0, 3000, 13), 5, "b")
    first = folder.document_files()[0]
    table = pq.read_table(first.path)
    orphans = table.slice(0, 40).set_column(table.schema.get_field_index("doc_id"), "doc_id",
                                            pa.array([f"gone{i}" for i in range(40)])).cast(table.schema)
    twice = table.slice(40, 30)
    old = table.slice(70, 5).set_column(table.schema.get_field_index("method"), "method",
                                        pa.nulls(5, pa.string())).cast(table.schema)
    extra = pa.concat_tables([orphans, twice])
    folder.write_parquet(f"{folder.documents_path}/part-k-{'0' * 20}.parquet", extra)
    folder.write_parquet(first.path, pa.concat_tables([table.slice(0, 70), old, table.slice(75)]))

    made, counts, files = expected(folder, "r2")
    assert counts["documents_dropped"] == 40 and counts["documents_written"] > 30 + 5
    before = {i.base_name for i in folder.document_files()}
    assert sync_documents(folder, SCHEMA, SCOPE, "r2") == counts
    assert len({i.base_name for i in folder.document_files()} - before) == files
    assert written(folder) == made
    assert sync_documents(folder, SCHEMA, SCOPE, "r3") == {"documents_written": 0, "documents_dropped": 0}


def test_wide_page_rows_stay_outside_duckdb_under_its_memory_limit(tmp_path, monkeypatch):
    """The hostile corpus' shape (documents of thousands of pages, rows with long texts and errors),
    cheaply: 6,000 page rows of ~3 KB each are more than DuckDB may hold at a smaller limit than
    the driver's. Wide columns in a DuckDB join or sort ran out of its memory; narrow keys do not."""
    monkeypatch.setitem(spill.DUCKDB_CONFIG, "memory_limit", "8MB")
    folder = OutputFolder(str(tmp_path / "out"))
    wide = "".join(random.Random(7).choice("abcdefghij ") for _ in range(1000))
    pages_per_doc = 2000
    for start in range(0, 6000, 2000):
        rows = [{"run_id": "r0", "doc_id": f"d{i // pages_per_doc}", "source_uri": f"/in/{i // pages_per_doc}.pdf",
                 "page_index": i % pages_per_doc, "page_count": pages_per_doc, "schema_name": SCHEMA.name,
                 "schema_id": SCHEMA.id, "model_id": "m", "status": "page_skipped", "error": wide,
                 "text_layer": wide, "raw_text": wide, "created_at": T0 + timedelta(seconds=i)}
                for i in range(start, start + 2000)]
        folder.write_part(f"w{start}", rows_to_table(rows, PAGES))

    assert sync_documents(folder, SCHEMA, SCOPE, "r1") == {"documents_written": 3, "documents_dropped": 0}
    rows = written(folder)
    assert sorted(rows) == ["d0", "d1", "d2"]
    assert all(r["status"] == "page_skipped" and len(r["failed_pages"]) == pages_per_doc for r in rows.values())
