"""What the output already holds: the committed pages are the record of what is done.

Built from a projection of a few small columns of OUT/data/*.parquet (no separate state file
that could disagree with the data). For each document it knows the committed versions
(size + mtime as listed), which pages of each are there, and which rows the next run redoes
(pipeline.ledger.retry).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pageray.pipeline.datamodel import output_schema
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.retry import RetryPolicy

INDEX_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "page_index", "page_count", "status", "created_at"]
# what the index reads of every part file (an empty part file, or one without some column,
# then reads as no rows or nulls instead of failing the whole plan)
READ_SCHEMA = pa.schema([output_schema(pa.null()).field(c).with_nullable(True)
                         for c in INDEX_COLUMNS + ["schema_id", "model_id"]])


@dataclass(frozen=True)
class Scope:
    """The rows a run counts as its own: those of its schema and model. With --append a folder
    holds several; one schema's rows neither satisfy nor get compacted away by another's."""
    schema_id: str
    model_id: str
    # other spellings of the same local model folder that earlier rows carry ("/models/x/")
    model_aliases: tuple[str, ...] = ()

    @classmethod
    def of(cls, schema_id: str, model: str, manifest: dict | None) -> "Scope":
        """The scope of a run with this (canonical) model in a folder made with `manifest`."""
        from pageray.pipeline.config import canonical_model

        made = (manifest or {}).get("model")
        same = made and made != model and canonical_model(made) == model
        return cls(schema_id, model, (made,) if same else ())

    def expression(self) -> pc.Expression:
        return (pc.field("schema_id") == self.schema_id) & pc.field("model_id").isin([self.model_id, *self.model_aliases])

    def mask(self, table) -> list[bool]:
        models = {self.model_id, *self.model_aliases}
        return [s == self.schema_id and m in models
                for s, m in zip(table.column("schema_id").to_pylist(), table.column("model_id").to_pylist())]


@dataclass(frozen=True, slots=True)
class DocVersion:
    committed: int               # distinct pages of this version with a final row (pipeline.ledger.retry)
    page_count: int | None
    # a page has more than one row: a killed --force run, a retried task that grouped pages
    # differently, or a redone page whose old row is still there; compaction keeps the newest
    duplicated: bool = False
    retried: bool = False        # some rows are not final: the next run redoes those pages
    pages: frozenset[int] = frozenset()  # pages with a final row, kept only for incomplete versions
    created_us: int = 0          # newest row of this version (which version of an unlisted document stays)

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
    (about 80 bytes per document version), so an output of millions of documents fits a small driver.
    `versions()` marks what the listing named; `unlisted_cleanup()` then covers the rest."""

    def __init__(self, table: pa.Table | None = None, pages: dict[tuple, frozenset[int]] | None = None):
        table = table if table is not None and table.num_rows else None
        self._keys = np.zeros(0, np.int64)
        self._pages = pages or {}
        self._listed = self._duplicated = np.zeros(0, bool)
        if table is None:
            return
        keys = np.fromiter((_key(d) for d in table.column("doc_id").to_pylist()), np.int64, table.num_rows)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._listed = np.zeros(len(keys), bool)
        table = table.take(pa.array(order))
        self._doc_ids = table.column("doc_id").combine_chunks()
        # numeric columns as numpy: a lookup per listed document reads them without Arrow scalars
        (self._size, self._mtime, self._committed, self._duplicated, self._retried, self._page_count,
         self._created) = (table.column(c).to_numpy() for c in (
            "doc_size", "doc_mtime_ns", "committed", "duplicated", "retried", "page_count", "created_us"))

    def _version(self, at: int, doc_id: str) -> tuple[tuple[int, int], DocVersion]:
        version = (int(self._size[at]), int(self._mtime[at]))
        return version, DocVersion(
            committed=int(self._committed[at]), page_count=int(self._page_count[at]) or None,
            duplicated=bool(self._duplicated[at]), retried=bool(self._retried[at]),
            pages=self._pages.get((doc_id, *version), frozenset()), created_us=int(self._created[at]))

    def versions(self, doc_id: str) -> dict[tuple[int, int], DocVersion]:
        key = _key(doc_id)
        at = int(np.searchsorted(self._keys, key))
        found = {}
        while at < len(self._keys) and self._keys[at] == key:
            if self._doc_ids[at].as_py() == doc_id:
                self._listed[at] = True
                version, found[version] = self._version(at, doc_id)
            at += 1
        return found

    def unlisted(self) -> set[str]:
        """Documents of the output that the listing (so far) did not name."""
        return {self._doc_ids[int(at)].as_py() for at in np.flatnonzero(~self._listed)}

    def unlisted_cleanup(self) -> tuple[dict[str, tuple[int, int]], set[str]]:
        """What a killed run left behind in documents this run's listing did not name: the
        version that stays of each document with several (the newest written), and the
        documents with a page committed twice."""
        n = len(self._keys)
        several = np.zeros(n, bool)
        if n > 1:
            same = (self._keys[1:] == self._keys[:-1]) & \
                pc.equal(self._doc_ids.slice(1), self._doc_ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
            several[1:] |= same
            several[:-1] |= same
        keep: dict[str, tuple[int, int]] = {}
        duplicated: set[str] = set()
        newest: dict[str, int] = {}
        for at in np.flatnonzero(~self._listed & (several | self._duplicated)):
            doc_id = self._doc_ids[int(at)].as_py()
            version, doc = self._version(int(at), doc_id)
            if doc.duplicated:
                duplicated.add(doc_id)
            if several[at] and doc.created_us >= newest.get(doc_id, -1):
                newest[doc_id], keep[doc_id] = doc.created_us, version
        return keep, duplicated


def load_index(folder: OutputFolder, scope: Scope, policy: RetryPolicy | None = None) -> OutputIndex:
    """The output's rows of `scope`, per document version; `policy` says which rows are final."""
    ds = folder.pages_dataset(READ_SCHEMA)
    if ds is None:
        return OutputIndex()
    table = ds.to_table(columns=INDEX_COLUMNS, filter=pc.field("doc_id").is_valid() & scope.expression())
    if not table.num_rows:
        return OutputIndex()
    settled = (policy or RetryPolicy()).settled(table)
    table = table.drop_columns(["status"])  # decided: not carried through the sort
    # Sorted, each document version is a run of rows: aggregated with numpy, which costs about
    # half the peak memory of Arrow's hash group-by with count_distinct.
    for name in ("doc_size", "doc_mtime_ns"):  # a missing size/mtime is version (0, 0), as listed
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).fill_null(0))
    order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in INDEX_COLUMNS[:4]])
    table, settled = table.take(order), settled[order.to_numpy()]
    doc = table.column("doc_id")
    size, mtime, page, count = (table.column(c).fill_null(f).to_numpy()
                                for c, f in (("doc_size", 0), ("doc_mtime_ns", 0), ("page_index", -1),
                                             ("page_count", 0)))
    created = pc.cast(table.column("created_at"), pa.int64()).fill_null(0).to_numpy()
    n = table.num_rows
    same = np.zeros(n, bool)  # row i belongs to the same version as row i - 1
    same[1:] = pc.equal(doc.slice(1), doc.slice(0, n - 1)).to_numpy() & (size[1:] == size[:-1]) \
        & (mtime[1:] == mtime[:-1])
    new_page = ~same
    new_page[1:] |= page[1:] != page[:-1]
    starts, page_starts = np.flatnonzero(~same), np.flatnonzero(new_page)
    rows = np.diff(np.append(starts, n))
    # a page is committed when any of its rows is final
    page_final = np.maximum.reduceat(settled.astype(np.int8), page_starts)
    version_of_page = np.searchsorted(starts, page_starts, side="right") - 1
    committed = np.bincount(version_of_page, weights=page_final, minlength=len(starts)).astype(np.int64)
    distinct = np.bincount(version_of_page, minlength=len(starts))
    retried = np.add.reduceat((~settled).astype(np.int64), starts) > 0
    page_count = np.maximum.reduceat(count, starts)
    grouped = pa.table({"doc_id": doc.take(pa.array(starts)), "doc_size": size[starts], "doc_mtime_ns": mtime[starts],
                        "committed": committed, "duplicated": rows > distinct, "retried": retried,
                        "page_count": page_count, "created_us": np.maximum.reduceat(created, starts)})
    pages = {}
    for group in np.flatnonzero((committed < np.maximum(page_count, 1)) | retried):  # what a resumed run keeps
        first, last = starts[group], starts[group] + rows[group]
        pages[(doc[first].as_py(), int(size[first]), int(mtime[first]))] = \
            frozenset(int(p) for p in page[first:last][settled[first:last]])
    return OutputIndex(grouped, pages)
