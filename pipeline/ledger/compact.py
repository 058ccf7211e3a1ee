"""Dropping rows a newer row replaced, so readers see one current row per page.

When a file changed (or --force recomputed it), its old rows live in part files of earlier
runs. Once the new rows are committed, those part files are rewritten without the old rows
(atomically, like every write). A run killed before this step leaves both versions (or, for
--force, two rows of some pages) for a moment; the next run's plan sees them, in every
document of its schema and model, and finishes the job.

What the driver holds: the plan's sets and maps, an entry per document named (changed, forced,
pruned, doubled), never one per page; each part file is read and rewritten one at a time, and
the rows of doubled pages that go are found out of core (drop_duplicate_pages).
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pageray.pipeline.datamodel import output_schema
from pageray.pipeline.ledger.folder import OutputFolder, part_run_id
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.locate import drop_rows, located, rows_by_file
from pageray.pipeline.ledger.spill import BATCH_ROWS, SpillDB

KEY_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "run_id"]
# what is read of the pages to find doubled ones (located() adds `file` and `row`)
_DOUBLED_SCHEMA = pa.schema([output_schema(pa.null()).field(c).with_nullable(True) for c in
                             ["doc_id", "doc_size", "doc_mtime_ns", "page_index", "created_at", "run_id",
                              "schema_id", "model_id"]])
# The rows of a page that are not its newest; part files are numbered in name order, so the
# file's number ranks as its name did. One aggregate and one join, each of which can spill.
_LOSERS = """
CREATE TABLE page_rows AS SELECT * FROM page_stream SEMI JOIN doubled USING (doc_id);
CREATE TABLE best AS
  SELECT max({'created': created_at, 'run': coalesce(run_id, ''), 'file': file, 'row': row}) AS top
  FROM page_rows GROUP BY doc_id, doc_size, doc_mtime_ns, page_index;
CREATE TABLE losers AS
  SELECT file, row FROM page_rows ANTI JOIN (SELECT top.file AS file, top.row AS row FROM best) USING (file, row);
"""
# which rows of one part file go: (the file, its whole table, which rows are ours and of the docs)
StaleRows = Callable[[pafs.FileInfo, pa.Table, list[bool]], list[bool]]


def _files_holding(folder: OutputFolder, docs: set[str]):
    """Each part file holding a row of one of `docs` (read one file's doc_id column at a time)."""
    wanted = pa.array(sorted(docs), pa.string())
    for info in folder.part_files():
        table = pq.read_table(info.path, filesystem=folder.fs, columns=["doc_id"])
        if pc.any(pc.is_in(table.column("doc_id"), value_set=wanted)).as_py():
            yield info


def _rewrite(folder: OutputFolder, docs: set[str], scope: Scope, stale_rows: StaleRows,
             skip: Callable[[pafs.FileInfo], bool] = lambda info: False) -> int:
    """Rewrite every part file that holds rows of `docs` without the rows `stale_rows` picks
    (only ever rows of this scope); return how many files changed."""
    if not docs:
        return 0
    rewritten = 0
    for info in _files_holding(folder, docs):
        if skip(info):
            continue
        table = pq.read_table(info.path, filesystem=folder.fs)
        candidates = [ours and doc in docs for ours, doc in zip(scope.mask(table), table.column("doc_id").to_pylist())]
        stale = [c and s for c, s in zip(candidates, stale_rows(info, table, candidates))]
        remaining = table.filter(pc.invert(pa.array(stale, pa.bool_())))
        if remaining.num_rows == table.num_rows:
            continue
        if remaining.num_rows == 0:
            folder.delete(info.path)
        else:
            folder.write_parquet(info.path, remaining)
        rewritten += 1
    return rewritten


def drop_superseded(folder: OutputFolder, run_id: str, current: dict[str, tuple[int, int]],
                    forced: set[str], scope: Scope) -> int:
    """Drop rows of other versions than `current` (doc_id -> size, mtime), and for `forced`
    documents every row of another run; this run's own files are left as they are."""
    def stale(info, table, candidates):
        cols = table.select(KEY_COLUMNS).to_pydict()
        out = []
        for doc, size, mtime, rid in zip(*(cols[c] for c in KEY_COLUMNS)):
            keep_version = current.get(doc)
            out.append((keep_version is not None and (size or 0, mtime or 0) != keep_version)
                       or (doc in forced and rid != run_id))
        return out
    return _rewrite(folder, set(current) | forced, scope, stale, skip=lambda info: part_run_id(info.base_name) == run_id)


def drop_duplicate_pages(folder: OutputFolder, docs: set[str], scope: Scope) -> int:
    """Keep one row per (document version, page) for `docs`: the newest (created_at, run_id,
    file, row). Returns how many part files were rewritten. Which rows lose is found in DuckDB
    on disk (pipeline.ledger.index says why): after a killed --force run every page of the
    output may be doubled, and a driver that held them all would not compact a large output."""
    dataset = folder.pages_dataset(_DOUBLED_SCHEMA) if docs else None
    if dataset is None:
        return 0
    rewritten = 0
    with SpillDB("compact") as spill, spill.errors():
        spill.db.register("page_stream", located(dataset, _DOUBLED_SCHEMA.names[:-2], scope, spill.failed))
        spill.db.register("doubled", pa.table({"doc_id": pa.array(sorted(docs), pa.string())}))
        spill.db.execute(_LOSERS)
        with spill.db.sql("SELECT file, row FROM losers ORDER BY file, row").to_arrow_reader(BATCH_ROWS) as reader:
            for number, drop in rows_by_file(reader):
                rewritten += drop_rows(folder, dataset.files[number], drop)
    return rewritten


def _under(uri: str, roots: list[str]) -> bool:
    return any(uri == root or uri.startswith(root.rstrip("/") + "/") for root in roots)


def drop_unlisted(folder: OutputFolder, docs: set[str], roots: list[str], scope: Scope) -> int:
    """--prune: drop this scope's rows of `docs` whose source lies under one of `roots` (the
    inputs the run listed); rows of documents from other inputs stay. Returns files rewritten."""
    return _rewrite(folder, docs, scope,
                    lambda info, table, candidates: [_under(u, roots) for u in table.column("source_uri").to_pylist()])
