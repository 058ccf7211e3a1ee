"""Committing pages to Parquet: the output folder is the record of what is done.

Each batch of finished pages is written as one zstd Parquet file whose name is derived from
the pages it holds, written to a temporary name and renamed into place. A Ray task retry that
writes the same block again therefore replaces the same file instead of adding a duplicate,
and a killed writer leaves at most a temporary file that readers never match.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import filesystem, is_remote, join

DATA_DIR = "data"
SUMMARY_COLUMNS = ("doc_id", "source_uri", "page_index", "status", "valid", "truncated", "output_tokens", "file")


def part_name(run_id: str, table: pa.Table) -> str:
    keys = sorted(zip(table.column("doc_id").to_pylist(), table.column("doc_sha256").to_pylist(),
                      table.column("page_index").to_pylist()), key=lambda k: (k[0], str(k[1]), k[2]))
    digest = hashlib.sha256(repr(keys).encode()).hexdigest()[:20]
    return f"part-{run_id}-{digest}.parquet"


def write_table_atomically(table: pa.Table, uri: str) -> None:
    fs, path = filesystem(uri)
    if is_remote(uri):
        pq.write_table(table, path, filesystem=fs, compression="zstd")  # object PUTs are atomic
        return
    parent, _, name = path.rpartition("/")
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp, filesystem=fs, compression="zstd")
    fs.move(tmp, path)


class CommitPages:
    """Write a batch of output rows; return a small summary per page for the driver's counts."""

    def __init__(self, out: str, run_id: str, schema: pa.Schema):
        self.data_uri = join(out, DATA_DIR)
        self.run_id = run_id
        self.schema = schema
        # The data folder is made with the first file, not here: a run killed while the model
        # loads then leaves nothing that a later run must make sense of.
        self._fs, self._path = filesystem(self.data_uri)
        self._made = False

    def __call__(self, batch: pa.Table | Mapping[str, Any]) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(dict(batch))
        table = table.select(self.schema.names).cast(self.schema)
        if table.num_rows == 0:
            return pa.table({c: pa.array([], pa.string()) for c in SUMMARY_COLUMNS})
        if not self._made:
            self._fs.create_dir(self._path, recursive=True)
            self._made = True
        name = part_name(self.run_id, table)
        write_table_atomically(table, join(self.data_uri, name))
        summary = table.select(list(SUMMARY_COLUMNS[:-1]))
        return summary.append_column("file", pa.array([name] * table.num_rows, pa.string()))
