"""Where a row of the output lies: its file's number and its row in that file, read with narrow keys.

Why: the out-of-core steps (pipeline.ledger.stale_documents, pipeline.ledger.compact) join and
sort only narrow keys in DuckDB, never a page row's wide columns (fields, text layers, errors:
any width), and then act on the rows by their place: read them back, or rewrite a file without
them. A file's number is its place in the dataset's file list, which is in name order.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.spill import SCAN_ROWS

# the keys read into DuckDB, in the page and document schemas' own types (pipeline.datamodel)
KEY_TYPES = {"doc_id": pa.string(), "created_at": pa.timestamp("us", tz="UTC"),
             "pages_created_at": pa.timestamp("us", tz="UTC"), "method": pa.string(), "doc_size": pa.int64(),
             "doc_mtime_ns": pa.int64(), "page_index": pa.int32(), "run_id": pa.string()}


def located(dataset: pads.Dataset | None, columns: list[str], scope: Scope,
            failed: list[BaseException]) -> pa.RecordBatchReader:
    """The scope's rows of `dataset` as batches of `columns`, with `file` (the file's place in
    dataset.files) and `row` (in that file); one batch at a time in memory. What reading
    raised goes to `failed` too (DuckDB reports it as its own error)."""
    names = list(dict.fromkeys(["doc_id", "schema_id", "model_id", *columns]))
    ours = pc.field("doc_id").is_valid() & scope.expression()
    schema = pa.schema([*((c, KEY_TYPES[c]) for c in columns), ("file", pa.int32()), ("row", pa.int64())])

    def batches():
        try:
            for number, one in OutputFolder.each_file(dataset) if dataset is not None else ():
                start = 0
                for batch in one.scanner(columns=names, batch_size=SCAN_ROWS, batch_readahead=1,
                                         use_threads=False, memory_pool=pa.system_memory_pool()).to_batches():
                    n = batch.num_rows
                    # the row's place in its file is counted before the scope's filter
                    batch = batch.append_column("file", pa.array([number] * n, pa.int32())) \
                        .append_column("row", pa.array(range(start, start + n), pa.int64())).filter(ours)
                    start += n
                    if batch.num_rows:
                        yield batch.select(schema.names).cast(schema)
        except Exception as exc:
            failed.append(exc)
            raise
    return pa.RecordBatchReader.from_batches(schema, batches())


def rows_by_file(reader: pa.RecordBatchReader) -> Iterator[tuple[int, pa.Array]]:
    """(file number, all its row numbers) from batches of (file, row) sorted by file."""
    file, rows = None, []
    for batch in reader:
        for number, row in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if number != file and rows:
                yield file, pa.array(rows, pa.int64())
                rows = []
            file = number
            rows.append(row)
    if rows:
        yield file, pa.array(rows, pa.int64())


def drop_rows(folder: OutputFolder, path: str, rows: pa.Array) -> bool:
    """Rewrite the file at `path` without its rows numbered `rows` (delete it when none remain);
    whether it changed."""
    table = pq.read_table(path, filesystem=folder.fs)
    remaining = table.filter(pc.invert(pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=rows)))
    if remaining.num_rows == table.num_rows:
        return False
    if remaining.num_rows:
        folder.write_parquet(path, remaining)
    else:
        folder.delete(path)
    return True
