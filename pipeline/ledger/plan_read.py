"""A run's plan read back as Ray Data blocks of a few documents each, with no listing task.

Why not `ray.data.read_parquet` on the plan folder: it lists the folder in a task that needs a
whole CPU, and when a node dies while that task runs, its retry waits for a CPU that the actors
Ray restarts on the nodes left may all hold: the run never ends. Its blocks are also whole files,
which would need splitting into small blocks. The driver knows every row group it wrote
(DOCS_PER_BLOCK documents each), so it hands Ray Data their names as items (objects the driver
owns, which no node's death can lose) and a cheap task reads each block's row groups.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pageray.pipeline.ledger.folder import OutputFolder

# The columns of one block's item (plan_blocks), what read_plan_blocks reads
BLOCK_COLUMNS = ("shard", "start", "stop")
# More blocks than this cost the driver more in object references than they give in balance: past
# it, a block takes several consecutive row groups.
MAX_BLOCKS = 100_000
# Block items per read task. Each read task needs a worker process, and a task reserves only 0.1
# CPU, so one task per block had Ray start ~20 workers at once for a 32-block plan: on 2 cores the
# first page came 14 s later (31 s against 17 s for 2,048 one-inch pages).
ITEMS_PER_READ_TASK = 64
MIN_READ_TASKS = 4


def read_tasks(blocks: int) -> int:
    """How many tasks read a plan of `blocks` blocks: a few, then one per ITEMS_PER_READ_TASK."""
    return min(blocks, max(MIN_READ_TASKS, -(-blocks // ITEMS_PER_READ_TASK)))


def plan_blocks(folder: OutputFolder, run_id: str, shard_docs: list[int], docs_per_block: int) -> list[dict]:
    """One item per block: the shard (a path inside the output's filesystem) and its row groups
    [start, stop)."""
    groups = [(number, -(-docs // docs_per_block)) for number, docs in enumerate(shard_docs)]
    per_block = max(1, -(-sum(n for _, n in groups) // MAX_BLOCKS))
    return [{"shard": folder.shard_path(run_id, number), "start": start, "stop": min(start + per_block, n)}
            for number, n in groups for start in range(0, n, per_block)]


def read_plan_blocks(batch: pa.Table, out: str) -> pa.Table:
    """Ray Data map_batches function: the plan rows of the blocks named in `batch`."""
    fs = OutputFolder(out).fs
    groups: dict[str, list[int]] = {}  # each shard opened once (a request each on object storage)
    for shard, start, stop in zip(*(batch.column(name).to_pylist() for name in BLOCK_COLUMNS)):
        groups.setdefault(shard, []).extend(range(start, stop))
    tables = []
    for shard, row_groups in groups.items():
        with fs.open_input_file(shard) as handle:
            tables.append(pq.ParquetFile(handle).read_row_groups(row_groups))
    return pa.concat_tables(tables)
