"""Live progress of a run: pages and documents done out of the plan's estimate, pages/s over the
last minute, ETA and counts by status.

The driver feeds `Progress` each batch the pipeline returns; `ProgressReporter` shows it while the
run goes: a tqdm bar when the stream is a terminal, else one plain line every `PROGRESS_EVERY_S`
seconds, so `ray job logs` and cron mails show it. The reporter draws from a daemon thread: the
driver's batch loop only wakes when a batch arrives, and one batch can take minutes (an 8B model
loading, a long document). The heartbeat writes the same `snapshot()` into the run record, which
`pageray status` reads (pipeline.ledger.status).

Before the first page is committed (Ray starting, the model loading on each actor, the first
documents rendering: minutes on a cluster) the line says what the driver is waiting for, and for
how long, instead of "0 pages, ETA ?"; so it does after the last page (compacting, merging).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, deque
from typing import Callable, TextIO

from pageray.pipeline.datamodel import Status

PROGRESS_EVERY_S = 10.0  # the plain line's period; PAGERAY_PROGRESS_S overrides it (tests use 1 s)
PROGRESS_ENV = "PAGERAY_PROGRESS_S"
WINDOW_S = 60.0  # pages/s is measured over the last minute: recent speed, not the run's average
BAR_REFRESH_S = 1.0  # a terminal bar's clock and rate move even while no batch arrives


def progress_interval() -> float:
    """Seconds between plain progress lines: PAGERAY_PROGRESS_S, else PROGRESS_EVERY_S."""
    try:
        value = float(os.environ.get(PROGRESS_ENV, PROGRESS_EVERY_S))
    except ValueError:
        return PROGRESS_EVERY_S
    return value if value > 0 else PROGRESS_EVERY_S


class RateWindow:
    """Pages per second over the last `window_s` seconds, from the running total at each batch.
    The total is a step function of time, so the pages done at the window's start are those of
    the last sample at or before it; before a full window has passed, the span is the time since
    the start (a slow start, say a model loading, counts as slow)."""

    def __init__(self, start: float, window_s: float = WINDOW_S):
        self.start, self.window_s = start, window_s
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])

    def add(self, t: float, total: int) -> None:
        self._samples.append((t, total))
        self._prune(t)

    def _prune(self, now: float) -> None:
        # keep one sample at or before the window's start: it holds the total at that moment
        while len(self._samples) >= 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rate(self, now: float) -> float | None:
        self._prune(now)
        span = min(self.window_s, now - self.start)
        if span <= 0:
            return None
        return (self._samples[-1][1] - self._samples[0][1]) / span


def eta_seconds(remaining: float, rate: float | None) -> float | None:
    """Seconds left at `rate` pages/s; None while there is no rate to go by."""
    if remaining <= 0:
        return 0.0
    if not rate or rate <= 0:
        return None
    return remaining / rate


def budget_truncated(cols: dict[str, list]) -> int:
    """Rows of a batch whose output budget ran out. A generation_timeout row was closed early too
    (and is marked truncated) but by the clock, which its own status and --page-time-limit cover."""
    return sum(1 for t, s in zip(cols["truncated"], cols["status"]) if t and s != Status.GENERATION_TIMEOUT)


class Tally:
    """The run's one count of what came back: rows by status, pages, output tokens, budget-truncated
    rows and the documents with a failed row. The progress line and the run record both read it."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.pages = self.output_tokens = self.truncated = 0
        self.docs_failed: set[str] = set()

    def add(self, cols: dict[str, list]) -> None:
        """One batch's columns; output_tokens and truncated count where the batch has them."""
        statuses = cols["status"]
        self.pages += len(statuses)
        self.counts.update(statuses)
        self.output_tokens += sum(t or 0 for t in cols.get("output_tokens") or ())
        if "truncated" in cols:
            self.truncated += budget_truncated(cols)
        self.docs_failed.update(d for d, s in zip(cols["doc_id"], statuses) if s != Status.OK)


class Progress:
    """What the driver knows of a run's progress. `add` is called from the batch loop, `snapshot`
    from the reporter's and the heartbeat's threads, hence the lock."""

    def __init__(self, documents: int, estimated_pages: int, clock: Callable[[], float] = time.monotonic,
                 tally: Tally | None = None):
        self.documents, self.estimated_pages, self.clock = documents, estimated_pages, clock
        self.tally = tally or Tally()
        self.documents_done = 0
        self._window = RateWindow(clock())
        self._open: dict[str, int] = {}  # doc_id -> pages still to come, for documents begun
        self._phase: str | None = None  # what the run waits for while no page comes (see the module doc)
        self._phase_at = clock()
        self._lock = threading.Lock()

    def phase(self, text: str | None) -> None:
        """Say what the run is doing until the next page arrives (None: extracting)."""
        with self._lock:
            self._phase, self._phase_at = text, self.clock()

    def add(self, cols: dict[str, list]) -> None:
        """One batch's columns (doc_id, status, page_count). A document is done when as many of its
        rows came as it has pages; a resumed document, of which only the missing pages are
        redone, is counted in pages but not as a document done (the plan's blocks do not carry
        what was already committed to the driver)."""
        with self._lock:
            self._phase = None  # pages are coming: the line's numbers say the rest
            self.tally.add(cols)
            for doc, pages in zip(cols["doc_id"], cols.get("page_count") or [None] * len(cols["doc_id"])):
                left = self._open.get(doc, pages or 1) - 1
                if left <= 0:
                    self._open.pop(doc, None)
                    self.documents_done += 1
                else:
                    self._open[doc] = left
            self._window.add(self.clock(), self.tally.pages)

    def snapshot(self) -> dict:
        """The numbers the bar, the plain line, the heartbeat and `pageray status` show."""
        with self._lock:
            now = self.clock()
            rate = self._window.rate(now)
            pages = self.tally.pages
            estimate = max(self.estimated_pages, pages)
            remaining = self.estimated_pages - pages
            if remaining <= 0 and self.documents_done < self.documents:
                # the estimate was low (files were guessed by size): go by pages per document so far
                per_doc = pages / max(1, self.documents_done)
                remaining = (self.documents - self.documents_done) * per_doc
            eta = eta_seconds(remaining, rate)
            return {"pages_done": pages, "pages_estimated": estimate, "documents_done": self.documents_done,
                    "documents": self.documents, "pages_per_s_1m": None if rate is None else round(rate, 3),
                    "eta_s": None if eta is None else round(eta, 1), "counts": dict(self.tally.counts),
                    "phase": self._phase, "phase_s": round(now - self._phase_at, 1)}


def duration(seconds: float | None) -> str:
    """45s, 3m05s, 2h04m; ? when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(snap: dict) -> str:
    """One line: "120/≈400 pages, 12/40 documents, 3.2 pages/s (last min), ETA 1m27s; ok 110, ...";
    while no page has come, what the run waits for: "loading the model on 2 actors (1m05s); 0/≈400
    pages, 0/40 documents"."""
    rate = snap.get("pages_per_s_1m")
    counts = ", ".join(f"{status} {n}" for status, n in sorted((snap.get("counts") or {}).items()))
    done = (f"{snap.get('pages_done', 0)}/≈{snap.get('pages_estimated', 0)} pages, "
            f"{snap.get('documents_done', 0)}/{snap.get('documents', 0)} documents")
    phase = f"{snap['phase']} ({duration(snap.get('phase_s'))}); " if snap.get("phase") else ""
    if phase and not snap.get("pages_done"):
        return phase + done  # no rate nor ETA to tell yet
    return (phase + done + f", {'?' if rate is None else f'{rate:.2f}'} pages/s (last min), "
            f"ETA {duration(snap.get('eta_s'))}" + (f"; {counts}" if counts else ""))


def plain_line(snap: dict) -> str:
    return f"pageray: {describe(snap)}"


class ProgressReporter:
    """`with ProgressReporter(progress):` shows `progress` on `stream` (stderr: stdout keeps the
    run's summary) until the block ends, and once more at the end."""

    def __init__(self, progress: Progress, stream: TextIO | None = None, every_s: float | None = None,
                 bar: bool | None = None):
        self.progress = progress
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.every_s = BAR_REFRESH_S if self.bar else (every_s or progress_interval())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pageray-progress", daemon=True)
        self._tqdm = None

    def _draw(self) -> None:
        snap = self.progress.snapshot()
        if self._tqdm is None:
            self.stream.write(plain_line(snap) + "\n")
            self.stream.flush()
            return
        self._tqdm.total = snap["pages_estimated"]
        self._tqdm.n = snap["pages_done"]
        line = describe(snap)  # the bar shows the pages: the rest of the line, or what the run waits for
        self._tqdm.set_postfix_str(line if snap.get("phase") else line.split(", ", 1)[1], refresh=False)
        self._tqdm.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._draw()

    def __enter__(self) -> "ProgressReporter":
        if self.bar:
            from tqdm import tqdm

            # our own numbers, drawn by tqdm: its rate and ETA are smoothed over the whole run
            self._tqdm = tqdm(total=self.progress.estimated_pages, unit="page", file=self.stream, dynamic_ncols=True,
                              bar_format="{l_bar}{bar}| {n}/{total} pages [{elapsed}] {postfix}", desc="pageray")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._draw()
        if self._tqdm is not None:
            self._tqdm.close()
