"""Which documents need a new document row, where their pages lie, and which old rows go: out of core.

Why DuckDB on disk under the plan's memory limit (pipeline.ledger.spill says why DuckDB, fed by
pyarrow's reader): the newest page of every document against the rows already written is a join
whose size grows with the output. Only narrow keys enter DuckDB: a document id, a timestamp, and
where a row lies (its file's number in the listing, its row in that file). The wide columns
(fields, text layers, errors) never do: a page row can be any width, and DuckDB under a 64 MB
limit could not hold a join over them (it ran out of memory on 200,000 hostile page rows). The
pages of the stale documents are read by pyarrow, DOCS_PER_FILE documents at a time, from the
files DuckDB says hold them; documents are taken in the order of the first file holding them, so
each batch reads few files and the whole step reads the pages about once.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.dataset as pads

from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.locate import located, rows_by_file
from pageray.pipeline.ledger.spill import BATCH_ROWS, SpillDB

# A row written before `method` and `grounding` existed is made again, once (its stamp reads null).
# Each step is one aggregate or one join, so that each can spill on its own.
_STALE = """
CREATE TABLE doc_files AS SELECT doc_id, file, max(created_at) AS stamp FROM page_keys GROUP BY ALL;
CREATE TABLE newest AS SELECT doc_id, max(stamp) AS stamp, min(file) AS first_file FROM doc_files GROUP BY doc_id;
CREATE TABLE document_keys AS SELECT * FROM document_rows;
CREATE TABLE existing AS
  SELECT doc_id, count(*) AS n, min(CASE WHEN has_method THEN pages_created_at END) AS stamp
  FROM document_keys GROUP BY doc_id;
CREATE TABLE stale AS
  SELECT doc_id, first_file FROM newest LEFT JOIN existing e USING (doc_id)
  WHERE e.n IS NULL OR e.n <> 1 OR e.stamp IS DISTINCT FROM newest.stamp;
CREATE TABLE orphans AS SELECT doc_id FROM existing ANTI JOIN newest USING (doc_id);
"""
_CHUNKS = """
SELECT s.doc_id, f.file FROM stale s JOIN doc_files f USING (doc_id) ORDER BY s.first_file, s.doc_id
"""
_DROPPED = """
SELECT file, row FROM document_keys
SEMI JOIN (SELECT doc_id FROM stale UNION ALL SELECT doc_id FROM orphans) USING (doc_id) ORDER BY file, row
"""


class StaleDocuments:
    """The documents of a scope whose row is missing or stale, and the rows to drop (see above),
    in DuckDB on disk. Use as a context manager: the database and its spill files go on exit."""

    def __init__(self, pages: pads.Dataset | None, documents: pads.Dataset | None, scope: Scope):
        self._spill = SpillDB("documents")
        self._db = self._spill.db
        page_keys = located(pages, ["doc_id", "created_at"], scope, self._spill.failed)
        rows = located(documents, ["doc_id", "pages_created_at", "method"], scope, self._spill.failed)
        try:
            self._index(page_keys, rows)
        except BaseException:
            self.close()
            raise

    def _index(self, page_keys: pa.RecordBatchReader, rows: pa.RecordBatchReader) -> None:
        with self._spill.errors():
            self._db.register("page_keys", page_keys)
            self._db.register("document_stream", rows)
            # the method's text is not needed, only whether there is one
            self._db.execute("CREATE VIEW document_rows AS SELECT doc_id, pages_created_at, "
                             "method IS NOT NULL AS has_method, file, row FROM document_stream")
            self._db.execute(_STALE)
            self.stale, self.orphans = self._db.execute(
                "SELECT (SELECT count(*) FROM stale), (SELECT count(*) FROM orphans)").fetchall()[0]

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[int]]]:
        """The stale documents, `size` at a time, with the numbers of the page files holding them."""
        docs: list[str] = []
        files: set[int] = set()
        with self._spill.errors(), self._db.sql(_CHUNKS).to_arrow_reader(BATCH_ROWS) as reader:
            for batch in reader:
                for doc, file in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                    if not docs or docs[-1] != doc:
                        if len(docs) == size:
                            yield docs, sorted(files)
                            docs, files = [], set()
                        docs.append(doc)
                    files.add(file)
        if docs:
            yield docs, sorted(files)

    def dropped(self) -> Iterator[tuple[int, pa.Array]]:
        """(number of a document file, its rows to drop): rows of stale and orphaned documents."""
        with self._spill.errors(), self._db.sql(_DROPPED).to_arrow_reader(BATCH_ROWS) as reader:
            yield from rows_by_file(reader)

    def close(self) -> None:
        self._spill.close()

    def __enter__(self) -> "StaleDocuments":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
