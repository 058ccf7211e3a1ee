"""Rendering in a disposable child process: native crashes, hangs and memory blow-ups stay there.

PyMuPDF is C code fed untrusted bytes. Each document renders in a child forked from a clean
forkserver, streaming its pages back over a pipe as they are drawn; the parent passes each
page on at once, so neither side ever holds a whole document. The child runs under limits:

- memory: RLIMIT_AS, `render_memory_mb` on top of the address space the idle child already has
  (~380 MB of mapped libraries, most of it never resident). An allocation over it fails, and
  the page or document becomes a `render_memory` row instead of taking the node down.
- time: the parent waits at most `render_timeout_s` for the child's pages (`render_timeout`). Only
  time spent waiting counts: a slow consumer of the pages is not the document's fault.
  RLIMIT_CPU backs this up for a child whose parent stopped watching (died or busy): it
  cannot outlive its budget by more than a few CPU seconds.
- no core dumps: a crash-prone corpus must not fill the disk with 400 MB cores.

A child killed by a signal is retried a bounded number of times, resuming after the pages
already delivered; after that the page is a `render_crash` row and a new child goes on with
the next page. Pages received before any failure are kept, so nothing rendered is lost, and
every page ends as a row (see IsolatedRenderer.__call__). What runs inside the child is in
pipeline.render.child.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass, replace
from typing import Iterator

from pageray.pipeline.render import child as render_child
from pageray.pipeline.datamodel import Status, page_row
from pageray.pipeline.render.pages import RenderLimits, skipped_row
from pageray.pipeline.render.passwords import NO_PASSWORDS, Candidates

# Test-only: a document whose name contains this string aborts the renderer (proves isolation).
CRASH_HOOK_ENV = "PAGERAY_TEST_CRASH_ON"
# CPU seconds a child may use beyond render_timeout_s before the kernel stops it (SIGXCPU);
# the parent's wall-clock timeout normally fires first.
CPU_GRACE_S = 2
# A document whose pages keep crashing the renderer is poison: after this many, stop trying.
MAX_FAILED_PAGES = 3

_START_LOCK = threading.Lock()


def _start(proc: multiprocessing.process.BaseProcess) -> None:
    """Start `proc` without the child re-running this process's main script.

    multiprocessing re-imports the parent's __main__ in every child so that functions
    defined there can be unpickled. Our target lives in this module, and in a Ray worker
    the main script is Ray's default_worker.py, whose import (all of ray) cost ~0.3 s per
    document: ten times the render of a small page. CPython has no switch for this, so the
    main module is hidden for the moment the child's start-up data is pickled.
    """
    with _START_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            proc.start()
        finally:
            sys.modules["__main__"] = main


@dataclass
class _Progress:
    delivered: int = 0               # pages passed on to the caller, all attempts together
    page_count: int | None = None    # the document's page count, once a page has said it
    waited_s: float = 0.0            # time spent waiting on children: the document's timeout budget

    @property
    def complete(self) -> bool:
        return self.page_count is not None and self.delivered >= self.page_count


@dataclass(frozen=True)
class _Failure:
    """Why the page being rendered failed; `row` is the one place it becomes a page row."""
    status: Status
    error: str
    waited_s: float

    def row(self, page_index: int, page_count: int | None) -> dict:
        return page_row(page_index=page_index, page_count=page_count, status=self.status, error=self.error,
                        render_ms=self.waited_s * 1000.0)


class IsolatedRenderer:
    """`renderer(data, name) -> iterator of page dicts`, each document in its own child process.

    `children_started` and `peak_rss_bytes` (the largest peak RSS a child reported) are
    there for tests and benchmarks.
    """

    def __init__(self, limits: RenderLimits = RenderLimits()):
        self.limits = limits
        # A child needs the candidates of its own document only (passed per call), not the book
        self._child_limits = replace(limits, passwords=NO_PASSWORDS)
        self._cpu_s = math.ceil(limits.render_timeout_s) + CPU_GRACE_S
        # Read here and handed to each child: children inherit the forkserver's environment,
        # and the forkserver may have started before the variable was set.
        self._crash_on = os.environ.get(CRASH_HOOK_ENV) or None
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["pageray.pipeline.render.pages", "pageray.pipeline.render.child"])
        self.children_started = 0
        self.peak_rss_bytes = 0

    def __call__(self, data: bytes, name: str, passwords: Candidates = Candidates()) -> Iterator[dict]:
        """Every page of the document gets a row, even after a failure: a page that crashes
        (after its retries) or exhausts the memory limit is its own row and a new child goes on
        with the next page. When the document's time budget is spent, or MAX_FAILED_PAGES pages
        failed, the remaining pages are rows that say so. A document is then complete in the
        output, and a scheduled run does not render (and hang on) it again."""
        progress, failed = _Progress(), 0
        while not progress.complete:
            failure = yield from self._until_a_page_fails(data, name, passwords, progress)
            if failure is None:
                return
            yield failure.row(progress.delivered, progress.page_count)
            if progress.page_count is None:  # nothing was ever read: one row stands for the document
                return
            progress.delivered += 1
            failed += 1
            if not progress.complete and (failure.status is Status.RENDER_TIMEOUT or failed >= MAX_FAILED_PAGES):
                yield from self._not_rendered(progress, failure, failed)
                return

    def _until_a_page_fails(self, data: bytes, name: str, passwords: Candidates, progress: _Progress):
        """Yield pages from children until the document ends (return None) or a page fails for
        good (return its _Failure): a crash is retried `render_retries` times, counted per page."""
        attempt = 1
        while True:
            before = progress.delivered
            failure = yield from self._attempt(data, name, passwords, progress, attempt)
            if progress.complete:
                # the child crashed or hung after its last page (closing the document): a
                # failure row would claim a page that does not exist
                return None
            if failure is None:
                if progress.page_count is None:
                    return None  # the document's one error row (a finished child is otherwise complete)
                # a follow-on child that ended early: it could not reopen the document
                return _Failure(Status.RENDER_ERROR, f"the renderer stopped after page {progress.delivered} of "
                                f"{progress.page_count}", progress.waited_s)
            if progress.delivered > before:
                attempt = 1  # the retries are per failing page, not per document
            if failure.status is not Status.RENDER_CRASH or attempt > self.limits.render_retries:
                return failure
            attempt += 1

    def _not_rendered(self, progress: _Progress, failure: _Failure, failed: int) -> Iterator[dict]:
        count = progress.page_count or 0
        why = (f"the document's render_timeout_s={self.limits.render_timeout_s:g} was used up"
               if failure.status is Status.RENDER_TIMEOUT
               else f"{failed} pages of this document failed (max_failed_pages={MAX_FAILED_PAGES})")
        for index in range(progress.delivered, count):
            if index >= self.limits.max_pages_per_doc:
                yield skipped_row(index, count, self.limits)
            else:
                yield page_row(page_index=index, page_count=count, status=failure.status,
                               error=f"page {index + 1} of {count} not rendered: {why}", render_ms=0.0)

    def _attempt(self, data: bytes, name: str, passwords: Candidates, progress: _Progress, attempt: int):
        """Yield this child's pages; return None when it finished, else why it failed."""
        recv_conn, send_conn = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=render_child.main, daemon=True, args=(
            send_conn, data, name, self._child_limits, self._cpu_s, progress.delivered, self._crash_on, passwords))
        started = time.monotonic()
        try:
            _start(proc)
        except BaseException:
            recv_conn.close()
            raise
        finally:
            send_conn.close()  # the child has its own copy; ours would hide the child's death
        self.children_started += 1
        progress.waited_s += time.monotonic() - started
        try:
            while True:
                # Only time spent waiting on children counts against the document's timeout;
                # the caller may hold each page as long as it likes.
                started = time.monotonic()
                left = self.limits.render_timeout_s - progress.waited_s
                if left <= 0 or not recv_conn.poll(left):
                    progress.waited_s += time.monotonic() - started
                    return _Failure(Status.RENDER_TIMEOUT, f"render_timeout_s={self.limits.render_timeout_s} exceeded after "
                                         f"{progress.delivered} page(s)", progress.waited_s)
                try:
                    msg = recv_conn.recv()
                except (EOFError, OSError):
                    proc.join(5)
                    progress.waited_s += time.monotonic() - started
                    return self._crashed(proc.exitcode, progress, attempt, progress.waited_s)
                progress.waited_s += time.monotonic() - started
                waited = progress.waited_s
                if isinstance(msg, dict):
                    progress.delivered += 1
                    progress.page_count = msg["page_count"]
                    yield msg
                    continue
                kind, peak_rss, detail = msg
                self.peak_rss_bytes = max(self.peak_rss_bytes, peak_rss)
                if kind == "done":
                    return None
                if kind == "memory":
                    return _Failure(Status.RENDER_MEMORY, f"render_memory_mb={self.limits.render_memory_mb} exceeded; "
                                         "the renderer was stopped", waited)
                return _Failure(Status.RENDER_ERROR, f"renderer failed: {detail}", waited)
        finally:
            recv_conn.close()
            if proc.is_alive():
                proc.kill()
            proc.join(5)

    def _crashed(self, exitcode: int | None, progress: _Progress, attempt: int, waited: float) -> _Failure:
        if exitcode is not None and exitcode < 0:
            sig = signal.Signals(-exitcode)
            if sig == signal.SIGXCPU:  # its CPU budget ran out while nobody was waiting for it
                return _Failure(Status.RENDER_TIMEOUT, f"render_timeout_s={self.limits.render_timeout_s} exceeded: the "
                                     f"renderer ran out of CPU time after {progress.delivered} page(s)", waited)
            if sig == signal.SIGKILL:  # the kernel's OOM killer or a cgroup limit
                return _Failure(Status.RENDER_MEMORY, f"renderer killed by {sig.name} (out of memory?); "
                                     f"render_memory_mb={self.limits.render_memory_mb}", waited)
            return _Failure(Status.RENDER_CRASH, f"renderer crashed with {sig.name} after "
                                 f"{attempt} attempt(s)", waited)
        return _Failure(Status.RENDER_CRASH, f"renderer exited with code {exitcode} after "
                             f"{attempt} attempt(s)", waited)


