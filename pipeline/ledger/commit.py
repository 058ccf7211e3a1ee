"""The commit step: finished pages in, one Parquet part file per batch (pipeline.ledger.folder).

A part file is named after the pages it holds and written whole, so a Ray task retry that
writes the same block again replaces the same file instead of adding a duplicate, and a killed
writer leaves at most a temporary file that readers never match. Each file is fenced by the run's
lease (pipeline.ledger.lease.Fence, checked right before the file is put in place): a driver that
was paused past its lease timeout and taken over commits nothing more, even from blocks that were
already on their way here.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pyarrow as pa

from pageray.pipeline.datamodel import DECODE_COLUMNS
from pageray.pipeline.ledger.folder import OutputFolder

# page_count: the driver's progress counts a document done once all its pages came (pipeline.progress)
SUMMARY_COLUMNS = ("doc_id", "source_uri", "page_index", "page_count", "status", "valid", "truncated", "output_tokens",
                   "file")


class CommitPages:
    """Write a batch of output rows; return a small summary per page for the driver's counts."""

    def __init__(self, out: str, run_id: str, schema: pa.Schema, fence: Callable[[], None] | None = None):
        # nothing is created here: a run killed while the model loads leaves no data folder
        self.folder = OutputFolder(out, fence=fence)
        self.run_id = run_id
        self.schema = schema

    def __call__(self, batch: pa.Table | Mapping[str, Any]) -> pa.Table:
        given = batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(dict(batch))
        table = given.select(self.schema.names).cast(self.schema)  # the decode counters are not written
        if table.num_rows == 0:
            return pa.table({c: pa.array([], pa.string()) for c in SUMMARY_COLUMNS + DECODE_COLUMNS})
        name = self.folder.write_part(self.run_id, table)
        summary = table.select(list(SUMMARY_COLUMNS[:-1]))
        summary = summary.append_column("file", pa.array([name] * table.num_rows, pa.string()))
        for column in DECODE_COLUMNS:  # for the driver's record (pipeline.datamodel.DECODE_COLUMNS)
            summary = summary.append_column(column, given.column(column) if column in given.column_names
                                            else pa.array([0] * table.num_rows, pa.int64()))
        return summary
