"""What the output already holds: the committed pages are the record of what is done.

Built from a projection of a few small columns of OUT/data/*.parquet (no separate state file
that could disagree with the data). For each document it knows the committed versions
(size + mtime as listed) and which pages of each are there.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.records import OutputFolder
from pipeline.writer import DATA_DIR

INDEX_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "page_index", "page_count"]


@dataclass(frozen=True)
class Scope:
    """The rows a run counts as its own: those of its schema and model. With --append a folder
    holds several; one schema's rows neither satisfy nor get compacted away by another's."""
    schema_id: str
    model_id: str

    def expression(self) -> pc.Expression:
        return (pc.field("schema_id") == self.schema_id) & (pc.field("model_id") == self.model_id)

    def mask(self, table) -> list[bool]:
        return [s == self.schema_id and m == self.model_id
                for s, m in zip(table.column("schema_id").to_pylist(), table.column("model_id").to_pylist())]


@dataclass(frozen=True, slots=True)
class DocVersion:
    committed: int               # distinct pages of this version in the output
    page_count: int | None
    # a page committed twice: a killed --force run, or a retried task that grouped pages
    # differently; compaction keeps the newest row of each page
    duplicated: bool = False
    pages: frozenset[int] = frozenset()  # which pages, kept only for incomplete versions (resume)

    def complete(self) -> bool:
        # a document-level error row has no page_count and stands for the whole document
        return self.committed >= (self.page_count or 1)


def _key(doc_id: str) -> int:
    # doc ids are hex digests: 64 bits of one make a numpy-searchable key (8 bytes per version
    # instead of a Python dict entry); a match is confirmed on the full id
    try:
        return int(doc_id[:16], 16) - (1 << 63)
    except ValueError:  # not one of ours; any stable 64 bits will do
        return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big", signed=True)


class OutputIndex:
    """Committed versions per document, held as Arrow and numpy columns rather than Python objects
    (about 70 bytes per document version), so an output of millions of documents fits a small driver."""

    def __init__(self, table: pa.Table | None = None, pages: dict[tuple, frozenset[int]] | None = None):
        table = table if table is not None and table.num_rows else None
        self._keys = np.zeros(0, np.int64)
        self._pages = pages or {}
        if table is None:
            return
        keys = np.fromiter((_key(d) for d in table.column("doc_id").to_pylist()), np.int64, table.num_rows)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        table = table.take(pa.array(order))
        self._doc_ids = table.column("doc_id").combine_chunks()
        # numeric columns as numpy: a lookup per listed document reads them without Arrow scalars
        self._size, self._mtime, self._committed, self._rows, self._page_count = (
            table.column(c).to_numpy() for c in ("doc_size", "doc_mtime_ns", "committed", "rows", "page_count"))

    def versions(self, doc_id: str) -> dict[tuple[int, int], DocVersion]:
        key = _key(doc_id)
        at = int(np.searchsorted(self._keys, key))
        found = {}
        while at < len(self._keys) and self._keys[at] == key:
            if self._doc_ids[at].as_py() == doc_id:
                version = (int(self._size[at]), int(self._mtime[at]))
                found[version] = DocVersion(
                    committed=int(self._committed[at]), page_count=int(self._page_count[at]) or None,
                    duplicated=bool(self._rows[at] > self._committed[at]),
                    pages=self._pages.get((doc_id, *version), frozenset()))
            at += 1
        return found


def _scan(folder: OutputFolder) -> pads.Dataset | None:
    try:
        return pads.dataset(f"{folder.path}/{DATA_DIR}", filesystem=folder.fs, format="parquet",
                            exclude_invalid_files=True, ignore_prefixes=[".", "_"])
    except (FileNotFoundError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower() or \
                "does not exist" in str(exc).lower():
            return None
        raise


def load_index(folder: OutputFolder, scope: Scope) -> OutputIndex:
    ds = _scan(folder)
    if ds is None:
        return OutputIndex()
    where = pc.field("doc_id").is_valid() & scope.expression()
    table = ds.to_table(columns=INDEX_COLUMNS, filter=where)
    if not table.num_rows:
        return OutputIndex()
    # Sorted, each document version is a run of rows: aggregated with numpy, which costs about
    # half the peak memory of Arrow's hash group-by with count_distinct.
    for name in ("doc_size", "doc_mtime_ns"):  # a missing size/mtime is version (0, 0), as listed
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).fill_null(0))
    table = table.take(pc.sort_indices(table, sort_keys=[(c, "ascending") for c in INDEX_COLUMNS[:4]]))
    doc = table.column("doc_id")
    size, mtime, page, count = (table.column(c).fill_null(f).to_numpy()
                                for c, f in (("doc_size", 0), ("doc_mtime_ns", 0), ("page_index", -1),
                                             ("page_count", 0)))
    n = table.num_rows
    same = np.zeros(n, bool)  # row i belongs to the same version as row i - 1
    same[1:] = pc.equal(doc.slice(1), doc.slice(0, n - 1)).to_numpy() & (size[1:] == size[:-1]) \
        & (mtime[1:] == mtime[:-1])
    repeat = np.zeros(n, np.int64)
    repeat[1:] = same[1:] & (page[1:] == page[:-1])
    starts = np.flatnonzero(~same)
    rows = np.diff(np.append(starts, n))
    committed = rows - np.add.reduceat(repeat, starts)
    page_count = np.maximum.reduceat(count, starts)
    grouped = pa.table({"doc_id": doc.take(pa.array(starts)), "doc_size": size[starts], "doc_mtime_ns": mtime[starts],
                        "committed": committed, "rows": rows, "page_count": page_count})
    pages = {}
    for group in np.flatnonzero(committed < np.maximum(page_count, 1)):  # what a resumed run must not redo
        first = starts[group]
        pages[(doc[first].as_py(), int(size[first]), int(mtime[first]))] = \
            frozenset(int(p) for p in page[first:first + rows[group]])
    return OutputIndex(grouped, pages)
