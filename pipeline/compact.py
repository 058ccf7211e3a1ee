"""Dropping superseded rows, so readers see one current row per page.

When a file changed (or --force recomputed it), its old rows live in part files of earlier
runs. Once the new rows are committed, those part files are rewritten without the old rows
(atomically, like every write). A run killed before this step leaves both versions for a
moment; the next run's plan sees the extra version and finishes the job.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.records import OutputFolder
from pipeline.writer import DATA_DIR

KEY_COLUMNS = ["doc_id", "doc_size", "doc_mtime_ns", "run_id"]


def stale_mask(table: pa.Table, run_id: str, current: dict[str, tuple[int, int]], forced: set[str]) -> list[bool]:
    cols = table.select(KEY_COLUMNS).to_pydict()
    out = []
    for doc, size, mtime, rid in zip(*(cols[c] for c in KEY_COLUMNS)):
        keep_version = current.get(doc)
        stale = keep_version is not None and (size or 0, mtime or 0) != keep_version
        out.append(stale or (doc in forced and rid != run_id))
    return out


def drop_superseded(folder: OutputFolder, run_id: str, current: dict[str, tuple[int, int]],
                    forced: set[str]) -> int:
    """Rewrite part files of earlier runs without superseded rows; return how many changed."""
    if not current and not forced:
        return 0
    data = f"{folder.path}/{DATA_DIR}"
    infos = folder.fs.get_file_info(pafs.FileSelector(data, allow_not_found=True))
    rewritten = 0
    docs = pa.array(sorted(set(current) | forced), pa.string())
    for info in infos:
        name = info.base_name
        if not name.endswith(".parquet") or name.startswith(("part-" + run_id + "-", ".")):
            continue
        probe = pads.dataset(info.path, filesystem=folder.fs, format="parquet").to_table(
            columns=["doc_id"], filter=pc.field("doc_id").isin(docs))
        if probe.num_rows == 0:
            continue
        table = pq.read_table(info.path, filesystem=folder.fs)
        keep = pc.invert(pa.array(stale_mask(table, run_id, current, forced)))
        remaining = table.filter(keep)
        if remaining.num_rows == table.num_rows:
            continue
        if remaining.num_rows == 0:
            folder.fs.delete_file(info.path)
        else:
            tmp = f"{data}/.{name}.compact.tmp"
            pq.write_table(remaining, tmp, filesystem=folder.fs, compression="zstd")
            folder.fs.move(tmp, info.path)
        rewritten += 1
    return rewritten
