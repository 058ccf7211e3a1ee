"""Peak memory (max RSS) and wall time of compacting doubled pages (pipeline.ledger.compact's
drop_duplicate_pages) as after a killed --force run: WORK gets the part files of FILLED (an output
made by documents_memory.py) twice, the copies under another run's names, so every page has two
rows and every document is doubled; the copies' rows stay. Not a timed test.

    python benchmarks/compact_memory.py FILLED WORK
"""
from __future__ import annotations

import os
import resource
import shutil
import sys
import time

import pyarrow.compute as pc
import pyarrow.dataset as pads

from pageray.pipeline.config import DEFAULT_MODEL
from pageray.pipeline.ledger.compact import drop_duplicate_pages
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.schemas import load_schema


def main(filled: str, work: str) -> None:
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(f"{work}/data")
    for name in os.listdir(f"{filled}/data"):
        shutil.copyfile(f"{filled}/data/{name}", f"{work}/data/{name}")
        shutil.copyfile(f"{filled}/data/{name}", f"{work}/data/{name.replace('-filled-', '-forced-')}")
    folder = OutputFolder(work)
    # the plan's set of doubled documents (it holds one entry per document, not per page)
    docs = set(pc.unique(pads.dataset(f"{filled}/data").to_table(columns=["doc_id"]).column("doc_id")).to_pylist())
    transcribe = load_schema("transcribe")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    rewritten = drop_duplicate_pages(folder, docs, Scope(transcribe.id, DEFAULT_MODEL))
    print(f"{len(docs)} documents, {rewritten} files rewritten: {time.perf_counter() - started:.1f} s wall, "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB (before: {before} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
