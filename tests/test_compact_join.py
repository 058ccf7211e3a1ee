"""Compaction of doubled pages finds the rows that go out of core (pipeline.ledger.compact, in
DuckDB on narrow keys): the rows it keeps must be exactly those of the plain rule (the newest row
of each page by created_at, run_id, file name, row), and the driver must not hold a Python
entry per doubled page, as it did (a killed --force run doubles every page of the output)."""
from __future__ import annotations

import random
import tracemalloc
from datetime import timedelta

import pyarrow.dataset as pads

from outputs import OTHER, SCHEMA, SCOPE, T0
from pageray.pipeline.datamodel import rows_to_table
from pageray.pipeline.ledger import spill
from pageray.pipeline.ledger.compact import drop_duplicate_pages
from pageray.pipeline.ledger.folder import OutputFolder

DOCS, PAGES = 1500, 4


def _fill(folder: OutputFolder, rng: random.Random) -> None:
    # run a committed every page; killed --force runs b and c committed most pages again, some at
    # the very same created_at (the run id, then the file name, then the row decides)
    for run, minutes, share, files in (("a", 0, 1.0, 2), ("b", 5, 0.9, 3), ("c", 5, 0.3, 1)):
        rows = [{"run_id": run, "schema_id": scope.schema_id, "model_id": scope.model_id, "doc_id": f"d{d:05d}",
                 "source_uri": f"/in/d{d:05d}.pdf", "doc_size": d % 3, "doc_mtime_ns": 1 if d % 7 else None,
                 "page_index": p, "page_count": PAGES, "status": "ok", "fields": {"text": "x" * rng.randrange(50)},
                 "created_at": T0 + timedelta(minutes=minutes + rng.choice([0, 0, 1]))}
                for d in range(DOCS) for p in range(PAGES) for scope in (SCOPE, OTHER) if rng.random() < share]
        rng.shuffle(rows)
        step = -(-len(rows) // files)
        for start in range(0, len(rows), step):
            folder.write_part(f"{run}{start}", rows_to_table(rows[start:start + step], SCHEMA))


def _all_rows(folder: OutputFolder) -> list[dict]:
    out = []
    for info in folder.part_files():
        table = pads.dataset(info.path, schema=SCHEMA).to_table()
        out += [{**r, "_file": info.base_name, "_row": i} for i, r in enumerate(table.to_pylist())]
    return out


def _expected(rows: list[dict], docs: set[str]) -> list[tuple]:
    best: dict[tuple, tuple] = {}
    for r in rows:
        if r["schema_id"] == SCOPE.schema_id and r["doc_id"] in docs:
            key = (r["doc_id"], r["doc_size"], r["doc_mtime_ns"], r["page_index"])
            rank = (r["created_at"], r["run_id"] or "", r["_file"], r["_row"])
            best[key] = max(best.get(key, rank), rank)
    winners = {(rank[2], rank[3]) for rank in best.values()}
    return sorted(_key(r) for r in rows if r["schema_id"] != SCOPE.schema_id or r["doc_id"] not in docs
                  or (r["_file"], r["_row"]) in winners)


def _key(r: dict) -> tuple:
    return (r["schema_id"], r["doc_id"], r["page_index"], r["run_id"], r["created_at"], str(r["fields"]))


def test_doubled_pages_keep_the_newest_row_of_each_found_out_of_core(tmp_path, monkeypatch):
    monkeypatch.setitem(spill.DUCKDB_CONFIG, "memory_limit", "8MB")
    rng = random.Random(24)
    folder = OutputFolder(str(tmp_path / "out"))
    _fill(folder, rng)
    docs = {f"d{d:05d}" for d in range(DOCS) if d % 10}  # the others keep their doubled pages
    expected = _expected(_all_rows(folder), docs)

    tracemalloc.start()
    try:
        rewritten = drop_duplicate_pages(folder, docs, SCOPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rewritten > 0
    assert sorted(_key(r) for r in _all_rows(folder)) == expected
    # ~10,000 doubled pages: an entry per page in the driver took several MiB of Python objects
    assert peak < 2 * 2**20, peak
