"""Document rows (pipeline.ledger.documents) on hand-made output folders: one current row per
document, rebuilt when a page row is newer, healed after a kill, dropped with their pages."""
from __future__ import annotations

from datetime import timedelta

import duckdb
from outputs import T0
from pageray.extractors.grounding import ground
from pageray.pipeline.datamodel import output_schema, rows_to_table
from pageray.pipeline.ledger.documents import sync_documents
from pageray.pipeline.ledger.folder import DOCUMENTS_DIR, OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.schemas import ExtractionSchema, arrow_type

SCHEMA = ExtractionSchema(name="memo", version="1", description="A memo.", json_schema={
    "type": "object", "properties": {
        "title": {"type": "string", "merge": "first"},
        "total": {"type": ["number", "null"], "merge": "last"},
        "items": {"type": "array", "items": {"type": "string"}}}})
SCOPE = Scope(SCHEMA.id, "m")


def pages(out, run_id, doc, values, minutes=0, statuses=None, page_count=None, method="page"):
    rows = []
    for index, fields in enumerate(values):
        status = (statuses or {}).get(index, "ok")
        text = "Total 12.50 EUR" if index else None
        rows.append({**ground(SCHEMA.json_schema, fields if status == "ok" else None, text), "method": method, "run_id": run_id, "doc_id": doc, "source_uri": f"/in/{doc}.pdf", "doc_size": 1,
                     "doc_mtime_ns": 1, "doc_sha256": "s", "page_index": index,
                     "page_count": page_count or len(values), "schema_id": SCHEMA.id, "model_id": "m",
                     "status": status, "error": None if status == "ok" else "boom",
                     "fields": fields if status == "ok" else None, "confidence": 0.5,
                     "text_layer": text,
                     "created_at": T0 + timedelta(minutes=minutes)})
    OutputFolder(str(out)).write_part(run_id, rows_to_table(rows, output_schema(arrow_type(SCHEMA))))


def documents(out):
    return duckdb.sql(f"select doc_id, status, complete, fields, failed_pages, conflicts, field_pages, "
                      f"grounded_fraction, ungrounded_fields, grounding, method "
                      f"from read_parquet('{out}/{DOCUMENTS_DIR}/*.parquet') order by doc_id").fetchall()


def test_one_row_per_document_rebuilt_when_a_page_is_newer_and_healed_after_a_kill(tmp_path):
    out = tmp_path / "out"
    pages(out, "r1", "a", [{"title": "Memo", "total": None, "items": ["x"]},
                           {"title": "Memo, cont.", "total": 12.5, "items": ["y", "z"]}])
    pages(out, "r1", "b", [{"title": "B", "total": 1.0, "items": []}, None], statuses={1: "render_error"})
    folder = OutputFolder(str(out))
    assert sync_documents(folder, SCHEMA, SCOPE, "r1") == {"documents_written": 2, "documents_dropped": 0}
    (a, b) = documents(out)
    assert a[1:4] == ("ok", True, {"title": "Memo", "total": 12.5, "items": ["x", "y", "z"]})
    assert [c["field"] for c in a[5]] == ["title"]  # two titles: the first kept, the conflict recorded
    assert {f["field"]: f["pages"] for f in a[6]} == {"title": [0], "total": [1], "items": [0, 1]}
    assert a[7] == 1 / 5 and a[8] == ["title", "items[0]", "items[1]", "items[2]"]  # only "12.50" is printed
    # per value, the page it was merged from and what that page's own grounding found: page 0 has no
    # text layer (null); "y" and "z" are items[0] and items[1] of page 1, whose text lacks them
    assert [(g["field"], g["found"], g["page"]) for g in a[9]] == [
        ("title", None, 0), ("total", True, 1), ("items[0]", None, 0), ("items[1]", False, 1), ("items[2]", False, 1)]
    assert a[10] == "merge"
    assert b[1:3] == ("partial", False) and b[4] == [1]
    assert sync_documents(folder, SCHEMA, SCOPE, "r2") == {"documents_written": 0, "documents_dropped": 0}

    pages(out, "r3", "a", [{"title": "Memo", "total": 20.0, "items": []},
                           {"title": "Memo", "total": None, "items": []}], minutes=5)  # a changed file's rows
    folder.delete(next(i.path for i in folder.part_files() if i.base_name.startswith("part-r1-")
                       and "a.pdf" in str(duckdb.sql(f"select source_uri from '{i.path}'").fetchall())))
    stale = {p.name for p in (out / DOCUMENTS_DIR).iterdir()}
    sync_documents(folder, SCHEMA, SCOPE, "r3")
    assert [d[3]["total"] for d in documents(out) if d[0] == "a"] == [20.0]
    # a run killed after writing its document file, before dropping the older rows: an extra row
    old = OutputFolder(str(out))
    old.write_parquet(f"{old.documents_path}/{sorted(stale)[0]}",
                      duckdb.sql(f"select * from read_parquet('{out}/{DOCUMENTS_DIR}/*.parquet')").fetch_arrow_table())
    assert [d[0] for d in documents(out)] == ["a", "a", "b"]
    sync_documents(folder, SCHEMA, SCOPE, "r4")
    assert [d[0] for d in documents(out)] == ["a", "b"]


def test_documents_without_pages_lose_their_row(tmp_path):
    out = tmp_path / "out"
    pages(out, "r1", "a", [{"title": "A", "total": 1.0, "items": []}])
    folder = OutputFolder(str(out))
    sync_documents(folder, SCHEMA, SCOPE, "r1")
    for info in folder.part_files():
        folder.delete(info.path)
    assert sync_documents(folder, SCHEMA, SCOPE, "r2") == {"documents_written": 0, "documents_dropped": 1}
    assert not list((out / DOCUMENTS_DIR).iterdir())


def test_a_multi_image_document_row_takes_the_answer_on_its_first_page(tmp_path):
    out = tmp_path / "out"
    answer = {"title": "Memo", "total": 12.5, "items": ["x"]}
    pages(out, "r1", "m", [answer, None, None], method="multi_image")  # the answer rides on page 0
    sync_documents(OutputFolder(str(out)), SCHEMA, SCOPE, "r1")
    [m] = documents(out)
    assert m[1:4] == ("ok", True, answer) and m[10] == "multi_image"
    assert m[6] is None and m[5] == []  # which page a value came from is unknown; nothing to conflict
    # found against the text of all its pages, no page named
    assert [(g["field"], g["found"], g["page"]) for g in m[9]] == [
        ("title", False, None), ("total", True, None), ("items[0]", False, None)]


def test_small_document_files_are_merged_like_page_files(tmp_path):
    """Each document-scope run writes a file of the documents it made again: six runs, six small
    files; merging (the end of a run, or `pageray compact`) leaves one, with the same rows, which
    the next sync keeps as they are."""
    from pageray.pipeline.ledger.merge import compact

    out = tmp_path / "out"
    folder = OutputFolder(str(out))
    folder.write_manifest({"schema_id": SCHEMA.id, "model": "m"})
    for run in range(6):
        pages(out, f"r{run}", f"d{run}", [{"title": f"T{run}", "total": float(run), "items": []}], minutes=run)
        sync_documents(folder, SCHEMA, SCOPE, f"r{run}")
    assert len(list((out / DOCUMENTS_DIR).iterdir())) == 6
    before = documents(out)
    report = compact(str(out), log=lambda _: None)
    assert report["merged_files"] == 6 + 6 and report["merged_into"] == 2  # six page files and six document files
    assert len(list((out / DOCUMENTS_DIR).iterdir())) == 1 and documents(out) == before
    assert sync_documents(folder, SCHEMA, SCOPE, "r7") == {"documents_written": 0, "documents_dropped": 0}
    assert documents(out) == before
