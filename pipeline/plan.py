"""Planning a run: which documents to process, streamed to Parquet shards.

The listing is consumed as a stream and written in shards, so the driver's memory does not
grow with the corpus. Ray Data reads the shards back; the driver never reads a document.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import RunConfig
from pipeline.records import RUNS_DIR, OutputFolder
from pipeline.storage import DocRef, is_remote, iter_documents, join

SHARD_DOCS = 50_000
PLAN_SCHEMA = pa.schema([("doc_id", pa.string()), ("source_uri", pa.string()),
                         ("size", pa.int64()), ("mtime_ns", pa.int64())])


@dataclass
class Plan:
    uri: str   # what Ray Data reads
    path: str  # the same folder inside the output filesystem
    documents: int = 0
    bytes: int = 0
    shards: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"uri": self.uri, "documents": self.documents, "bytes": self.bytes, "shards": self.shards,
                "skipped": dict(self.skipped)}


def _write_shard(folder: OutputFolder, plan: Plan, docs: list[DocRef]) -> None:
    table = pa.table({"doc_id": [d.doc_id for d in docs], "source_uri": [d.uri for d in docs],
                      "size": [d.size for d in docs], "mtime_ns": [d.mtime_ns for d in docs]}, schema=PLAN_SCHEMA)
    folder.fs.create_dir(plan.path, recursive=True)
    pq.write_table(table, f"{plan.path}/shard-{plan.shards:05d}.parquet", filesystem=folder.fs)
    plan.shards += 1


def write_plan(config: RunConfig, folder: OutputFolder) -> Plan:
    path = f"{folder.path}/{RUNS_DIR}/{config.run_id}/plan"
    plan = Plan(uri=join(config.out, RUNS_DIR, config.run_id, "plan") if is_remote(config.out) else path, path=path)
    buf: list[DocRef] = []
    for doc in iter_documents(config.inputs, follow_symlinks=config.follow_symlinks):
        buf.append(doc)
        plan.documents += 1
        plan.bytes += doc.size
        if len(buf) >= SHARD_DOCS:
            _write_shard(folder, plan, buf)
            buf = []
    if buf:
        _write_shard(folder, plan, buf)
    return plan
