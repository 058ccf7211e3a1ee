"""Peak memory (max RSS) and wall time of the document-rows step (pipeline.ledger.documents) on an
output that holds PAGES `ok` pages of each of DOCS documents (default 250,000 x 4 = 1,000,000
pages; filled once, by fill_output.write_part, with no input folder: the first call only fills),
and no document rows yet: every document gets its row, the worst case. Not a timed test.

    python benchmarks/documents_memory.py OUT [DOCS] [PAGES]
"""
from __future__ import annotations

import os
import resource
import sys
import time

from fill_output import ROWS_PER_FILE, write_part
from pageray.pipeline.config import DEFAULT_MODEL
from pageray.pipeline.datamodel import output_schema
from pageray.pipeline.ledger.documents import sync_documents
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.schemas import arrow_type, load_schema


def fill(out: str, docs: int, pages: int) -> None:
    schema = output_schema(arrow_type(load_schema("transcribe")))
    ids = (load_schema("transcribe").id, DEFAULT_MODEL)
    per = ROWS_PER_FILE // pages
    for start in range(0, docs, per):
        write_part(out, [(f"/in/doc{i:09d}.pdf", 1, 1) for i in range(start, min(docs, start + per))],
                   schema, ids, pages)
    open(f"{out}/.filled", "w").close()


def main(out: str, docs: str = "250000", pages: str = "4") -> None:
    if not os.path.exists(f"{out}/.filled"):
        fill(out, int(docs), int(pages))
        print(f"filled {out}; run again to measure (a process's max RSS would include the filling)")
        return
    folder = OutputFolder(out)
    for info in folder.document_files():  # every run measures the worst case: all rows to make
        folder.delete(info.path)
    transcribe = load_schema("transcribe")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    counts = sync_documents(folder, transcribe, Scope(transcribe.id, DEFAULT_MODEL), "bench")
    print(f"{counts}: {time.perf_counter() - started:.1f} s wall, max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB (after imports: {before} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
