"""Dropping superseded rows, so readers see one current row per page.

When a file changed (or --force recomputed it), its old rows live in part files of earlier
runs. Once the new rows are committed, those part files are rewritten without the old rows
(atomically, like every write). A run killed before this step leaves both versions (or, for
--force, two rows of some pages) for a moment; the next run's plan sees them, even for
documents it skips, and finishes the job.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.ledger.index import Scope
from pipeline.ledger.records import OutputFolder
from pipeline.ledger.commit import DATA_DIR

KEY_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "run_id"]


def stale_mask(table: pa.Table, run_id: str, current: dict[str, tuple[int, int]], forced: set[str],
               scope: Scope) -> list[bool]:
    cols = table.select(KEY_COLUMNS).to_pydict()
    out = []
    for ours, doc, size, mtime, rid in zip(scope.mask(table), *(cols[c] for c in KEY_COLUMNS)):
        keep_version = current.get(doc)
        stale = keep_version is not None and (size or 0, mtime or 0) != keep_version
        out.append(ours and (stale or (doc in forced and rid != run_id)))
    return out


def _rewrite_without(folder: OutputFolder, path: str, table: pa.Table, stale: list[bool]) -> bool:
    """Rewrite one part file without the stale rows (atomically); False if none were stale."""
    remaining = table.filter(pc.invert(pa.array(stale, pa.bool_())))
    if remaining.num_rows == table.num_rows:
        return False
    if remaining.num_rows == 0:
        folder.fs.delete_file(path)
    else:
        parent, _, name = path.rpartition("/")
        tmp = f"{parent}/.{name}.compact.tmp"
        pq.write_table(remaining, tmp, filesystem=folder.fs, compression="zstd")
        folder.fs.move(tmp, path)
    return True


def _part_files(folder: OutputFolder) -> list[pafs.FileInfo]:
    data = f"{folder.path}/{DATA_DIR}"
    return [i for i in folder.fs.get_file_info(pafs.FileSelector(data, allow_not_found=True))
            if i.base_name.endswith(".parquet") and not i.base_name.startswith(".")]


def drop_duplicate_pages(folder: OutputFolder, docs: set[str], scope: Scope) -> int:
    """Keep one row per (document version, page) for `docs`: the newest (created_at, run_id,
    file). Returns how many part files were rewritten."""
    if not docs:
        return 0
    wanted = pa.array(sorted(docs), pa.string())
    keys = ["doc_id", "doc_size", "doc_mtime_ns", "page_index"]
    best: dict[tuple, tuple] = {}   # page key -> (created_at, run_id, file, row)
    files = []
    for info in _part_files(folder):
        table = pq.read_table(info.path, filesystem=folder.fs,
                              columns=[*keys, "created_at", "run_id", "schema_id", "model_id"])
        mask = [hit and ours for hit, ours in
                zip(pc.is_in(table.column("doc_id"), value_set=wanted).to_pylist(), scope.mask(table))]
        if not any(mask):
            continue
        files.append(info)
        cols = table.to_pydict()
        for row, hit in enumerate(mask):
            if hit:
                key = tuple(cols[k][row] for k in keys)
                rank = (cols["created_at"][row], cols["run_id"][row] or "", info.base_name, row)
                if key not in best or rank > best[key]:
                    best[key] = rank
    winners = {(rank[2], rank[3]) for rank in best.values()}
    rewritten = 0
    for info in files:
        table = pq.read_table(info.path, filesystem=folder.fs)
        doc_ids = table.column("doc_id").to_pylist()
        stale = [ours and doc in docs and (info.base_name, row) not in winners
                 for row, (doc, ours) in enumerate(zip(doc_ids, scope.mask(table)))]
        rewritten += _rewrite_without(folder, info.path, table, stale)
    return rewritten


def drop_superseded(folder: OutputFolder, run_id: str, current: dict[str, tuple[int, int]],
                    forced: set[str], scope: Scope) -> int:
    """Rewrite part files of earlier runs without superseded rows; return how many changed."""
    if not current and not forced:
        return 0
    rewritten = 0
    docs = pa.array(sorted(set(current) | forced), pa.string())
    own = re.compile(rf"part-{re.escape(run_id)}-[0-9a-f]{{20}}\.parquet")
    for info in _part_files(folder):
        if own.fullmatch(info.base_name):  # not a prefix test: run "nightly" vs "nightly-2"
            continue
        probe = pads.dataset(info.path, filesystem=folder.fs, format="parquet").to_table(
            columns=["doc_id"], filter=pc.field("doc_id").isin(docs))
        if probe.num_rows == 0:
            continue
        table = pq.read_table(info.path, filesystem=folder.fs)
        rewritten += _rewrite_without(folder, info.path, table, stale_mask(table, run_id, current, forced, scope))
    return rewritten


def _under(uri: str, roots: list[str]) -> bool:
    return any(uri == root or uri.startswith(root.rstrip("/") + "/") for root in roots)


def drop_unlisted(folder: OutputFolder, docs: set[str], roots: list[str], scope: Scope) -> int:
    """--prune: drop this scope's rows of `docs` whose source lies under one of `roots` (the
    inputs the run listed); rows of documents from other inputs stay. Returns files rewritten."""
    if not docs:
        return 0
    wanted = pa.array(sorted(docs), pa.string())
    rewritten = 0
    for info in _part_files(folder):
        probe = pads.dataset(info.path, filesystem=folder.fs, format="parquet").to_table(
            columns=["doc_id"], filter=pc.field("doc_id").isin(wanted))
        if probe.num_rows == 0:
            continue
        table = pq.read_table(info.path, filesystem=folder.fs)
        stale = [ours and doc in docs and _under(uri, roots) for ours, doc, uri in zip(
            scope.mask(table), table.column("doc_id").to_pylist(), table.column("source_uri").to_pylist())]
        rewritten += _rewrite_without(folder, info.path, table, stale)
    return rewritten

