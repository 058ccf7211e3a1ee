"""Make OUT look as if an earlier run had committed PAGES `ok` pages (default 1) of every
document under IN, so `pageray plan IN --out OUT` has to join the listing against that many
committed pages; every document is then `skipped`. Used by plan_memory.sh; writes the files a
finished run leaves after its merge (pipeline.ledger.merge): about TARGET_ROWS rows each, in row
groups of ROW_GROUP_ROWS.

    python benchmarks/fill_output.py IN OUT [PAGES]
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from pageray.pipeline.config import DEFAULT_MODEL
from pageray.pipeline.datamodel import output_schema
from pageray.pipeline.ledger.folder import OutputFolder, part_name
from pageray.pipeline.ledger.merge import ROW_GROUP_ROWS, TARGET_ROWS
from pageray.pipeline.storage import doc_id_for
from pageray.schemas import arrow_type, load_schema



def write_part(out: str, docs: list[tuple[str, int, int]], schema: pa.Schema, ids: tuple, pages: int) -> None:
    n = len(docs) * pages
    uris, sizes, mtimes = (np.repeat(np.array(c, dtype=object), pages) for c in zip(*docs))
    columns = {"doc_id": [doc_id_for(u) for u in uris], "source_uri": list(uris), "doc_size": list(sizes),
               "doc_mtime_ns": list(mtimes), "page_index": np.tile(np.arange(pages), len(docs)),
               "page_count": [pages] * n,
               "status": ["ok"] * n, "schema_id": [ids[0]] * n, "model_id": [ids[1]] * n,
               "run_id": ["filled"] * n, "created_at": [datetime.now(timezone.utc)] * n}
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    folder = OutputFolder(out)
    folder.write_parquet(f"{folder.data_path}/{part_name('filled', table)}", table, row_group_size=ROW_GROUP_ROWS)


def main(inbox: str, out: str, pages: str = "1") -> None:
    pages = int(pages)
    transcribe = load_schema("transcribe")
    schema = output_schema(arrow_type(transcribe))
    ids = (transcribe.id, DEFAULT_MODEL)
    os.makedirs(f"{out}/data", exist_ok=True)
    docs = []
    for folder, _, names in sorted(os.walk(os.path.abspath(inbox))):
        for name in sorted(names):
            path = os.path.join(folder, name)
            st = os.stat(path)
            docs.append((path, st.st_size, st.st_mtime_ns))
            if len(docs) * pages >= TARGET_ROWS:
                write_part(out, docs, schema, ids, pages)
                docs = []
    if docs:
        write_part(out, docs, schema, ids, pages)


if __name__ == "__main__":
    main(*sys.argv[1:4])
