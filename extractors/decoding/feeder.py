"""Several callers' batches in one engine: the async extractor actor's (`extractors.actor`) way to
keep its decode slots full while Ray Data hands it the next batch.

Why: a batch ends with a tail in which its last long answers decode alone; with one batch at a
time the slots stay idle then, and while Ray moves the finished block out and the next one in.
Here every concurrent call hands its jobs to one engine run: pages of a call that arrives while
the engine runs join the slots at the next step (`Engine(arrivals=...)`), and each call gets its
own results back as soon as its last item ends, so what a call returns (a block, committed whole)
is what it was given.

Why one thread: every model call (vision tower, prefill, decode step) runs on this feeder's one
worker thread, so there are never two forward passes at once, and the asyncio loop that holds the
calls stays free to take batches in and hand tables out.

A failure raises out of the engine run; its unfinished items (from any of the calls) are then
halved and run again without merging (`backoff`, the extractor's), so a page that cannot be read
still becomes a model_error row and the others their answers.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from pageray.extractors.decoding.engine import Engine, EngineItem, EngineStats


@dataclass
class _Call:
    items: list[EngineItem]
    done: Callable[[tuple], None]   # (results, stats) handed to the caller's loop
    results: list = field(default_factory=list)
    left: int = 0


class EngineFeeder:
    """`await feeder(items)` -> (per item a (RowResult, tokens) or the exception that failed it,
    the engine's EngineStats counted since the last call ended: the counters' sum over calls is
    the engine's work)."""

    def __init__(self, engine: Engine, backoff: Callable):
        self.engine, self.backoff = engine, backoff
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.lock = threading.Lock()
        self.pending: list[_Call] = []   # calls handed in, not yet taken by an engine run
        self.running = False
        self.stats = EngineStats(engine.slots)   # every run's, kept across calls
        self.counted = EngineStats(engine.slots)  # what earlier calls took of it
        self.owner: list[tuple[_Call, int]] = []  # the current run's items: whose, which

    async def __call__(self, items: list[EngineItem]):
        if not items:
            return [], EngineStats(self.engine.slots)
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(value):
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(value))

        call = _Call(items, done, [None] * len(items), len(items))
        with self.lock:
            self.pending.append(call)
            start, self.running = not self.running, True
        if start:
            self.thread.submit(self._drive)
        return await future

    def _take(self) -> list[EngineItem]:
        """The pending calls' items, now owned by the current run (the engine's `arrivals`)."""
        with self.lock:
            calls, self.pending = self.pending, []
        items = []
        for call in calls:
            self.owner += [(call, k) for k in range(len(call.items))]
            items += call.items
        return items

    def _drive(self) -> None:
        while True:
            with self.lock:
                if not self.pending:
                    self.running = False
                    return
            self.owner = []
            try:
                self.engine(self._take(), arrivals=self._take, stats=self.stats,
                            on_done=lambda i, result: self._deliver(*self.owner[i], result))
            except Exception as exc:  # noqa: BLE001 - the unfinished items are run again, halved
                left = [(call, k) for call, k in self.owner if call.results[k] is None]
                self._recover(left, exc)

    def _recover(self, entries: list[tuple[_Call, int]], exc: BaseException) -> None:
        def run(chunk):
            results, _ = self.engine([call.items[k] for call, k in chunk], stats=self.stats)
            for (call, k), result in zip(chunk, results):
                self._deliver(call, k, result)

        def failed(chunk, error):
            for call, k in chunk:
                self._deliver(call, k, error)

        if len(entries) <= 1:  # this one has failed already
            failed(entries, exc)
            return
        half = len(entries) // 2
        self.backoff(entries[:half], run, failed)
        self.backoff(entries[half:], run, failed)

    def _deliver(self, call: _Call, k: int, result) -> None:
        call.results[k] = result
        call.left -= 1
        if call.left == 0:
            stats, self.counted = self.stats.minus(self.counted), dataclasses.replace(self.stats)
            call.done((call.results, stats))
