"""What the output already holds: the committed pages are the record of what is done.

Read from a projection of a few small columns of OUT/data/*.parquet (no separate state file
that could disagree with the data). For each document it knows the committed versions
(size + mtime as listed), which pages of each are there, and which rows the next run redoes
(pipeline.ledger.retry).

The index lives in DuckDB on disk, spilling under a memory limit (pipeline.ledger.spill says
why), so the driver's memory does not grow with what is committed; its queries, and why each is
shaped as it is, are in pipeline.ledger.index_queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pageray.pipeline.datamodel import output_schema
from pageray.pipeline.ledger import index_queries as queries
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.retry import RetryPolicy
from pageray.pipeline.ledger.spill import BATCH_ROWS, SCAN_ROWS, SpillDB
from pageray.pipeline.storage import DocRef

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
        from pageray.extractors.model.loading import canonical_model

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

    def complete(self) -> bool:
        # a document-level error row has no page_count and stands for the whole document
        return self.committed >= (self.page_count or 1)


@dataclass(frozen=True, slots=True)
class Match:
    """What the output holds of one listed document."""
    current: DocVersion | None = None  # the version the listing names (same size and mtime)
    others: bool = False               # other versions (a changed file's, or a killed run's, old rows)

    def __bool__(self) -> bool:
        return self.current is not None or self.others


NO_MATCH = Match()


def _with_version(match: Match, current: bool | None, committed: int | None, page_count: int, duplicated: bool,
                  retried: bool, pages: list[int] | None) -> Match:
    """`match` and one more row of the join: a version of the document, or None (no version)."""
    if committed is None:
        return match
    if not current:
        return Match(match.current, others=True)
    return Match(DocVersion(committed=committed, page_count=page_count or None, duplicated=duplicated,
                            retried=retried, pages=frozenset(pages or ())), match.others)


def _committed_rows(ds: pads.FileSystemDataset, scope: Scope, policy: RetryPolicy,
                    failed: list[BaseException]) -> pa.RecordBatchReader:
    """The scope's rows as a stream of batches, each with `settled` (is the row final); what
    reading them raised goes to `failed` too (DuckDB reports it as its own error)."""
    ours = pc.field("doc_id").is_valid() & scope.expression()
    schema = pa.schema([READ_SCHEMA.field(c) for c in INDEX_COLUMNS]).append(pa.field("settled", pa.bool_()))

    def batches():
        try:
            for _, one in OutputFolder.each_file(ds):
                scanner = one.scanner(columns=INDEX_COLUMNS, filter=ours, batch_size=SCAN_ROWS, batch_readahead=1,
                                      use_threads=False,
                                      # the system allocator gives freed batches back; the default
                                      # pool keeps them, tens of MiB at the driver's peak for nothing
                                      memory_pool=pa.system_memory_pool())
                for batch in scanner.to_batches():
                    if batch.num_rows:
                        yield batch.append_column("settled", pa.array(policy.settled(batch)))
        except Exception as exc:
            failed.append(exc)
            raise
    return pa.RecordBatchReader.from_batches(schema, batches())


class CommittedIndex:
    """The output's rows of a scope per document version, in DuckDB on disk. `match()` joins a
    listing against them; `unlisted()` and `unlisted_cleanup()` then cover the rest. Use as a
    context manager: the database and its spill files are deleted on exit."""

    def __init__(self, folder: OutputFolder, scope: Scope, policy: RetryPolicy | None = None):
        self._spill: SpillDB | None = None
        self._db = None
        failed: list[BaseException] = []
        policy = policy or RetryPolicy()
        ds = folder.pages_dataset(READ_SCHEMA)  # one listing of the part files for both reads
        if ds is None:
            return
        self._spill = SpillDB("plan", failed)
        self._db = self._spill.db
        try:
            with self._spill.errors():
                self._versions(lambda: _committed_rows(ds, scope, policy, failed))
                empty = not self._db.execute("SELECT count(*) FROM versions").fetchone()[0]
        except BaseException:
            self.close()
            raise
        if empty:
            self.close()  # nothing of this scope: the listing streams straight through

    def _versions(self, read: Callable[[], pa.RecordBatchReader]) -> None:
        """The table `versions`: whole versions from one read of the rows, the others' pages
        from a second read (only when there are others)."""
        db = self._db
        db.register("committed_rows", read())
        db.execute(queries.WHOLE)
        if db.execute("SELECT count(*) FROM others").fetchall()[0][0]:
            db.register("committed_rows", read())
            db.execute(queries.OTHERS)
        db.unregister("committed_rows")
        db.execute("DROP TABLE others")

    def match(self, listing: Iterable[DocRef]) -> Iterator[tuple[DocRef, Match]]:
        """Each listed document with what the output holds of it, in listing order. With
        anything committed, the whole listing goes into DuckDB before the first answer."""
        if self._db is None:
            yield from ((doc, NO_MATCH) for doc in listing)
            return
        db = self._db
        db.execute("CREATE TABLE listed (seq BIGINT, doc_id VARCHAR, uri VARCHAR, size BIGINT, mtime BIGINT)")
        chunk: list[DocRef] = []
        seq = 0
        for doc in listing:
            chunk.append(doc)
            if len(chunk) == BATCH_ROWS:
                self._insert_listed(seq, chunk)
                seq, chunk = seq + len(chunk), []
        self._insert_listed(seq, chunk)
        db.execute(queries.JOIN)
        # a relation's reader streams the result (an execute() result would be copied whole first)
        with db.sql("SELECT * FROM joined ORDER BY seq").to_arrow_reader(BATCH_ROWS) as reader:
            doc, seq, match = None, None, NO_MATCH
            for batch in reader:
                for row in zip(*batch.to_pydict().values()):
                    if row[0] != seq:
                        if doc is not None:
                            yield doc, match
                        seq, doc, match = row[0], DocRef(*row[1:4]), NO_MATCH
                    match = _with_version(match, *row[4:])
            if doc is not None:
                yield doc, match

    def _insert_listed(self, start: int, docs: list[DocRef]) -> None:
        if not docs:
            return
        chunk = pa.table({"seq": pa.array(range(start, start + len(docs)), pa.int64()),
                          "doc_id": [d.doc_id for d in docs], "uri": [d.uri for d in docs],
                          "size": pa.array([d.size for d in docs], pa.int64()),
                          "mtime": pa.array([d.mtime_ns for d in docs], pa.int64())})
        self._db.register("listed_chunk", chunk)
        self._db.execute("INSERT INTO listed SELECT * FROM listed_chunk")
        self._db.unregister("listed_chunk")

    def unlisted(self) -> set[str]:
        """Documents of the output that the listing did not name."""
        if self._db is None:
            return set()
        return {d for (d,) in self._db.execute(
            "SELECT DISTINCT doc_id FROM versions ANTI JOIN listed USING (doc_id)").fetchall()}

    def unlisted_cleanup(self) -> tuple[dict[str, tuple[int, int]], set[str]]:
        """What a killed run left behind in documents the listing did not name: the version that
        stays of each document with several, and the documents with a page committed twice."""
        keep: dict[str, tuple[int, int]] = {}
        duplicated: set[str] = set()
        if self._db is None:
            return keep, duplicated
        with self._db.sql(queries.UNLISTED_CLEANUP).to_arrow_reader(BATCH_ROWS) as reader:
            for batch in reader:
                for doc_id, several, doubled, size, mtime in zip(*batch.to_pydict().values()):
                    if doubled:
                        duplicated.add(doc_id)
                    if several:
                        keep[doc_id] = (size, mtime)
        return keep, duplicated

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = self._db = None

    def __enter__(self) -> "CommittedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
