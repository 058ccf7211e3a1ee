"""Merging small part files into few large ones, so a million pages are not 30,000 files.

The same for OUT/data/ (pages) and OUT/documents/ (document rows: each document-scope run adds a
file of the documents it made again); a file is only ever merged with files of its own folder.

Why: every Ray block commits its own part file (about 30 pages), and DuckDB, Spark and S3 pay
per file (a listing, a footer read, a GET, a request charge). After each run, and on demand
with `pageray compact OUT`, the small files are merged into files of about TARGET_BYTES or
TARGET_ROWS, in row groups of ROW_GROUP_ROWS.

Exactly once, resumable: one merge (a bin of small files with one Arrow schema) is journaled.
  1. OUT/_compact/<target>.json names the target file and its sources;
  2. the target is written whole (atomically, as every write: a rename locally, one PUT on S3);
  3. the sources are deleted, then the journal.
`recover` finishes what a killed merge left: a journal whose target exists has its remaining
sources deleted; one whose target does not exist is dropped (the sources were never touched).
Every run recovers before it plans, and merges only under the output's lease, so a merged page
is never counted twice by a plan, and two merges never race. The target is named after the
pages it holds (`part_name`), so a repeated merge of the same sources writes the same file.

What a reader can see: between steps 2 and 3 a reader listing data/*.parquet may see the merged
pages twice (in the target and in a source not yet deleted); README "Scheduled and interrupted
runs" says how to read around it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from pageray.pipeline.ledger.folder import COMPACT_DIR, DATA_DIR, DOCUMENTS_DIR, OutputFolder, part_name, utc_now

TARGET_BYTES = 128 * 2**20
TARGET_ROWS = 100_000
ROW_GROUP_ROWS = 10_000
_KEYS = ["doc_id", "doc_sha256", "page_index"]  # a document row's file has no page_index: 0 (documents.py)


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    size: int
    rows: int
    schema: str  # the Arrow schema, serialized: only files of one schema are merged together


def plan_bins(parts: Iterable[Part], target_bytes: int = TARGET_BYTES,
              target_rows: int = TARGET_ROWS) -> list[list[str]]:
    """Groups of at least two small files (each under half a target) to merge, in name order,
    each group within the target; files already half a target or more stay as they are."""
    by_schema: dict[str, list[Part]] = {}
    for part in sorted(parts, key=lambda p: p.name):
        if part.size * 2 < target_bytes and part.rows * 2 < target_rows:
            by_schema.setdefault(part.schema, []).append(part)
    bins: list[list[str]] = []
    for small in by_schema.values():
        current: list[Part] = []
        for part in small:
            if current and (sum(p.size for p in current) + part.size > target_bytes
                            or sum(p.rows for p in current) + part.rows > target_rows):
                bins.append([p.name for p in current])
                current = []
            current.append(part)
        bins.append([p.name for p in current])
    return [b for b in bins if len(b) >= 2]


def recover(folder: OutputFolder) -> int:
    """Finish or drop the merges a killed process left (see the module doc); return how many."""
    journals = folder.journals()
    for name in journals:
        journal = folder.read_json(f"{COMPACT_DIR}/{name}") or {}
        where = journal.get("folder", DATA_DIR)
        if journal.get("target") and folder.exists(_path(folder, where, journal["target"])):
            for source in journal.get("sources", []):
                if folder.exists(_path(folder, where, source)):
                    folder.delete(_path(folder, where, source))
        folder.delete(f"{folder.path}/{COMPACT_DIR}/{name}")
    return len(journals)


def merge_small_files(folder: OutputFolder, merge_id: str, target_bytes: int = TARGET_BYTES,
                      target_rows: int = TARGET_ROWS,
                      before_each: Callable[[], None] = lambda: None) -> dict[str, int]:
    """Merge the folder's small part files (call it holding the lease; `before_each` runs
    before each merge, to renew it or to stop when it was lost); return what it did."""
    recovered = recover(folder)
    merged = written = 0
    for where, files in ((DATA_DIR, folder.part_files()), (DOCUMENTS_DIR, folder.document_files())):
        parts = []
        for info in files:
            if info.size * 2 >= target_bytes:
                continue  # big already: no need to read its footer
            meta = pq.read_metadata(info.path, filesystem=folder.fs)
            parts.append(Part(info.base_name, info.size, meta.num_rows, meta.schema.to_arrow_schema().to_string()))
        for sources in plan_bins(parts, target_bytes, target_rows):
            before_each()
            _merge(folder, merge_id, where, sources)
            merged += len(sources)
            written += 1
    return {"merge_recovered": recovered, "merged_files": merged, "merged_into": written}


def _merge(folder: OutputFolder, merge_id: str, where: str, sources: list[str]) -> None:
    paths = [_path(folder, where, s) for s in sources]
    columns = _KEYS if where == DATA_DIR else _KEYS[:2]
    keys = _keys(pa.concat_tables(pq.read_table(p, filesystem=folder.fs, columns=columns) for p in paths))
    target = part_name(merge_id, keys)
    journal = f"{COMPACT_DIR}/{target}.json"
    folder.write_json(journal, {"target": target, "folder": where, "sources": sources, "merge_id": merge_id,
                                "started_at": utc_now()})
    schema = pq.read_schema(paths[0], filesystem=folder.fs)
    folder.write_parquet_stream(_path(folder, where, target), schema,
                                (pq.read_table(p, filesystem=folder.fs, schema=schema) for p in paths),
                                ROW_GROUP_ROWS)
    for path in paths:
        folder.delete(path)
    folder.delete(f"{folder.path}/{journal}")


def _keys(table: pa.Table) -> pa.Table:
    if "page_index" in table.column_names:
        return table
    return table.append_column("page_index", pa.array([0] * table.num_rows, pa.int32()))


def _path(folder: OutputFolder, where: str, name: str) -> str:
    return f"{folder.path}/{where}/{name}"


def compact(uri: str, *, wait: bool = False, target_bytes: int = TARGET_BYTES,
            target_rows: int = TARGET_ROWS, log: Callable[[str], None] = print,
            lease_timeout_s: float | None = None) -> dict[str, int]:
    """`pageray compact OUT`: take the output's lease (refused, or waited for, while a run holds
    it), finish interrupted merges, merge the small files (each write fenced by the lease), give
    the lease back."""
    from pageray.pipeline.config import new_run_id
    from pageray.pipeline.errors import StorageError
    from pageray.pipeline.ledger.lease import Lease

    folder = OutputFolder(uri)
    if folder.manifest() is None:
        raise StorageError(f"{uri} is not a pageray output folder (it has no _pageray.json); "
                           "give the folder a run wrote to")
    lease = Lease(folder, f"compact-{new_run_id()}", lease_timeout_s)
    lease.acquire(wait=wait, log=log)
    fenced = OutputFolder(uri, fence=lease.fence())

    def renew() -> None:
        if not lease.renew():
            raise StorageError(f"compaction of {uri} lost the output's lease; it stops here, and "
                               "the next run or `pageray compact` finishes what it began")
    try:
        return merge_small_files(fenced, lease.run_id, target_bytes, target_rows, before_each=renew)
    finally:
        lease.release()


def describe(report: dict[str, int]) -> str:
    return (f"merged {report['merged_files']} small part files into {report['merged_into']}"
            + (f"; finished {report['merge_recovered']} interrupted merges" if report["merge_recovered"] else ""))

