"""The extraction step as Ray Data's actor: `ExtractFields` taking several batches at once.

Why: with one batch at a time an actor's decode slots empty at the end of each batch (its last
long answers decode alone) and stay empty while Ray hands the next block in. Ray Data runs an
async `__call__` on the actor's event loop, as many at once as the stage allows
(`settings.CONCURRENT_BATCHES`, its actors' `max_concurrency`, as Ray Data LLM's engine stage
does); here the concurrent calls share one engine (`extractors.decoding.feeder`), and each
returns its own batch's rows once they are all done, so a block is still committed whole
(exactly once, resume) as it came.

Every model call runs on one thread of the actor's, with either engine (the static path hands
its batches to its thread whole), so two batches never run forward passes at once.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import pyarrow as pa

from pageray.extractors.decoding.feeder import EngineFeeder
from pageray.extractors import extractor


class ExtractFields(extractor.ExtractFields):
    """The step's own name, not a new one: Ray names the stage, its progress bar and its actors'
    processes (`ray::MapWorker(MapBatches(ExtractFields))`) after the class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.feeder = EngineFeeder(self.engine, self._run_with_backoff) if self.engine else None
        self.static_thread = None if self.engine else ThreadPoolExecutor(max_workers=1)

    async def __call__(self, batch: Mapping[str, Any]) -> pa.Table:
        if not self.engine:
            return await asyncio.get_running_loop().run_in_executor(self.static_thread, self.static, batch)
        t0 = time.perf_counter()
        jobs, rows = self.jobs(batch)
        made = []
        for job in jobs:  # made here, on the loop: a page whose crops cannot be made fails alone
            try:
                made.append((job, job.item()))
            except Exception as exc:  # noqa: BLE001 - every failure of a page must become a row
                job.fail(exc)
        results, stats = await self.feeder([item for _, item in made])
        if made:
            self.count_decode(made[0][0].lead, stats.steps, stats.row_steps, stats.slot_steps)
        per_page_ms = (time.perf_counter() - t0) * 1000.0 / max(1, sum(job.pages for job, _ in made))
        for (job, _), result in zip(made, results):
            if isinstance(result, BaseException):
                job.fail(result)
            else:
                job.record(result[0], per_page_ms)
        return self.table(rows)
