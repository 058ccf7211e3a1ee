"""DuckDB on disk, spilling under a memory limit: how the driver joins what a large output holds.

Why DuckDB, on a database file in a temporary folder under a memory limit: an output of 100
million pages does not fit a small driver (held as arrays it took ~0.4 KiB a page), and the
questions the ledger asks of it (pipeline.ledger.index: the plan; stale_documents: document
rows; compact: doubled pages) are joins and aggregates over every committed page. DuckDB's
aggregates, joins and sorts spill to disk past the memory limit (`DUCKDB_CONFIG`), so the
driver's memory stays flat however much is committed and the time stays linear; no hand-written
external sort, and no cluster needed before the plan (Ray Data's join would need one). The rows
reach DuckDB as Arrow record batches read by pyarrow's dataset, the reader every other part of
the output uses: it reads s3:// as well as local folders, and reads odd part files with the page
schema. DuckDB's own S3 reader is an extension (httpfs) downloaded at run time, which a driver
without internet cannot get.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from typing import Iterator

import duckdb

# DuckDB's share of the driver's memory; past it, it spills to the temporary folder. 48 MB was
# the least with which the plan's old per-page aggregate ran over 1,000,000 documents; 64 MB kept.
# One thread: its rows come from one Python stream anyway, and each thread adds its own buffers.
DUCKDB_CONFIG = {"memory_limit": "64MB", "threads": 1, "preserve_insertion_order": False}
BATCH_ROWS = 16_384  # rows per Arrow batch into and out of DuckDB
SCAN_ROWS = 8_192    # rows per batch read from a part file: what the reading holds at once


class SpillDB:
    """A DuckDB database in a temporary folder of its own; the folder, the database and its
    spill files go on close. The Arrow streams it reads put what they raised in `failed`:
    inside `errors()`, DuckDB's report of such a failure is replaced by the storage's own error,
    as every other read gives it."""

    def __init__(self, name: str, failed: list[BaseException] | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix=f"pageray-{name}-")
        self.failed = failed if failed is not None else []
        self.db = duckdb.connect(f"{self._tmp.name}/{name}.duckdb",
                                 config={**DUCKDB_CONFIG, "temp_directory": f"{self._tmp.name}/spill"})
        self.db.execute("SET enable_progress_bar = false")  # its bar would land in `pageray plan`'s output

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except duckdb.Error:
            if self.failed:
                raise self.failed[0] from None
            raise

    def close(self) -> None:
        self.db.close()
        self._tmp.cleanup()

    def __enter__(self) -> "SpillDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
