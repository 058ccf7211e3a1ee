"""Dropping rows a newer row replaced, so readers see one current row per page.

When a file changed (or --force recomputed it), its old rows live in part files of earlier
runs. Once the new rows are committed, those part files are rewritten without the old rows
(atomically, like every write). A run killed before this step leaves both versions (or, for
--force, two rows of some pages) for a moment; the next run's plan sees them, in every
document of its schema and model, and finishes the job.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pageray.pipeline.ledger.folder import OutputFolder, part_run_id
from pageray.pipeline.ledger.index import Scope

KEY_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "run_id"]
# which rows of one part file go: (the file, its whole table, which rows are ours and of the docs)
StaleRows = Callable[[pafs.FileInfo, pa.Table, list[bool]], list[bool]]


def _files_holding(folder: OutputFolder, docs: set[str], columns: list[str]):
    """(file, the given columns, which rows are of `docs`) for each part file holding one of `docs`."""
    wanted = pa.array(sorted(docs), pa.string())
    for info in folder.part_files():
        table = pq.read_table(info.path, filesystem=folder.fs, columns=columns)
        hits = pc.is_in(table.column("doc_id"), value_set=wanted).to_pylist()
        if any(hits):
            yield info, table, hits


def _rewrite(folder: OutputFolder, docs: set[str], scope: Scope, stale_rows: StaleRows,
             skip: Callable[[pafs.FileInfo], bool] = lambda info: False) -> int:
    """Rewrite every part file that holds rows of `docs` without the rows `stale_rows` picks
    (only ever rows of this scope); return how many files changed."""
    if not docs:
        return 0
    rewritten = 0
    for info, _, _ in _files_holding(folder, docs, ["doc_id"]):
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
    file). Returns how many part files were rewritten."""
    keys = ["doc_id", "doc_size", "doc_mtime_ns", "page_index"]
    best: dict[tuple, tuple] = {}   # page key -> (created_at, run_id, file, row)
    columns = [*keys, "created_at", "run_id", "schema_id", "model_id"]
    for info, table, hits in _files_holding(folder, docs, columns) if docs else ():
        cols = table.to_pydict()
        for row, (hit, ours) in enumerate(zip(hits, scope.mask(table))):
            if hit and ours:
                key = tuple(cols[k][row] for k in keys)
                rank = (cols["created_at"][row], cols["run_id"][row] or "", info.base_name, row)
                if key not in best or rank > best[key]:
                    best[key] = rank
    winners = {(rank[2], rank[3]) for rank in best.values()}
    return _rewrite(folder, docs, scope,
                    lambda info, table, candidates: [(info.base_name, row) not in winners for row in range(table.num_rows)])


def _under(uri: str, roots: list[str]) -> bool:
    return any(uri == root or uri.startswith(root.rstrip("/") + "/") for root in roots)


def drop_unlisted(folder: OutputFolder, docs: set[str], roots: list[str], scope: Scope) -> int:
    """--prune: drop this scope's rows of `docs` whose source lies under one of `roots` (the
    inputs the run listed); rows of documents from other inputs stay. Returns files rewritten."""
    return _rewrite(folder, docs, scope,
                    lambda info, table, candidates: [_under(u, roots) for u in table.column("source_uri").to_pylist()])
