"""The one place that decides which rows are final and which the next run redoes.

A row is *settled* when a later run over the same bytes would only write it again: the page is
done. Other rows stand for their page until it is redone; the next run renders and extracts
those pages again, and compaction drops the old row once the new one is committed.

Final (settled) whatever the next run's flags:
  ok, invalid_output, generation_timeout   the model's answer for the page
  render_error, encrypted, empty_document  the bytes themselves are bad; a changed file is redone anyway
  render_crash, render_timeout, render_memory, page_too_large
      deterministic for the same bytes and limits almost always, and a scheduled run must not pay a
      poison document's timeout again every night; name them with `--retry STATUS` (after raising
      --render-timeout, say) to redo them once
Retried by every later run:
  read_error    the file could not be read when its turn came (vanished, I/O or storage error)
  model_error   generation failed (out of memory at batch size 1, a worker lost)
Retried when the limit that made them is raised:
  page_skipped    when the page is within the run's --max-pages-per-doc
  file_too_large  when the file is within the run's --max-file-bytes
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pageray.pipeline.datamodel import Status

ALWAYS_RETRIED = frozenset({Status.READ_ERROR, Status.MODEL_ERROR})


@dataclass(frozen=True)
class RetryPolicy:
    """The run's limits (None: a row made under any limit stays) and the statuses named with --retry."""
    max_pages_per_doc: int | None = None
    max_file_bytes: int | None = None
    also_retry: frozenset[str] = frozenset()

    @classmethod
    def of(cls, config) -> "RetryPolicy":
        """The policy of a run of `config` (a pipeline.config.RunConfig)."""
        return cls(max_pages_per_doc=config.max_pages_per_doc, max_file_bytes=config.max_file_bytes,
                   also_retry=frozenset(config.retry))

    def settled(self, table: pa.Table) -> np.ndarray:
        """Per row of `table` (columns status, page_index, doc_size): True where the row is final."""
        status = table.column("status")
        retried = {s.value for s in ALWAYS_RETRIED} | set(self.also_retry)
        redo = pc.is_in(status, value_set=pa.array(sorted(retried), pa.string()))
        if self.max_pages_per_doc is not None:
            redo = pc.or_kleene(redo, pc.and_(pc.equal(status, Status.PAGE_SKIPPED.value),
                                              pc.less(table.column("page_index"), self.max_pages_per_doc)))
        if self.max_file_bytes is not None:
            redo = pc.or_kleene(redo, pc.and_(pc.equal(status, Status.FILE_TOO_LARGE.value),
                                              pc.less_equal(table.column("doc_size"), self.max_file_bytes)))
        return ~redo.fill_null(False).to_numpy(zero_copy_only=False)
