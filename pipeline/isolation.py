"""Rendering in a disposable child process: native crashes, hangs and memory blow-ups stay there.

PyMuPDF is C code fed untrusted bytes. Each document renders in a child forked from a clean
forkserver, with an address-space limit, streaming its pages back over a pipe. The parent
enforces a wall-clock timeout. A child killed by a signal is retried a bounded number of
times; after that the document ends with a `render_crash` row. Pages received before the
failure are kept, so nothing already rendered is lost.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Iterator

from pipeline.datamodel import Status
from pipeline.render import RenderLimits

# Test-only: a document whose name contains this string aborts the renderer (proves isolation).
CRASH_HOOK_ENV = "PAGERAY_TEST_CRASH_ON"
_DONE = "__done__"


def _child(conn, data: bytes, name: str, limits: RenderLimits, memory_mb: int) -> None:
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    hook = os.environ.get(CRASH_HOOK_ENV)
    if hook and hook in name:
        os.abort()
    from pipeline.render import iter_render

    try:
        for page in iter_render(data, name, limits):
            conn.send(page)
        conn.send(_DONE)
    except MemoryError:
        conn.send({"__memory__": True})
    conn.close()
    os._exit(0)  # skip interpreter teardown: nothing to flush, and it is the slow part


class IsolatedRenderer:
    """`renderer(data, name) -> iterator of page dicts`, each document in its own child process."""

    def __init__(self, limits: RenderLimits, timeout_s: float = 120.0, memory_mb: int = 4096, retries: int = 1):
        self.limits, self.timeout_s, self.memory_mb, self.retries = limits, timeout_s, memory_mb, retries
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["pipeline.render"])

    def __call__(self, data: bytes, name: str) -> Iterator[dict]:
        received: list[dict] = []
        failure: dict | None = None
        for _attempt in range(self.retries + 1):
            received, failure = self._attempt(data, name)
            if failure is None or failure["status"] != Status.RENDER_CRASH.value:
                break
        yield from received
        if failure is not None:
            failure["page_index"] = len(received)
            yield failure

    def _attempt(self, data: bytes, name: str) -> tuple[list[dict], dict | None]:
        started = time.monotonic()
        recv_conn, send_conn = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(send_conn, data, name, self.limits, self.memory_mb), daemon=True)
        proc.start()
        send_conn.close()
        pages: list[dict] = []
        try:
            while True:
                left = self.timeout_s - (time.monotonic() - started)
                if left <= 0 or not recv_conn.poll(left):
                    return pages, self._failure(Status.RENDER_TIMEOUT, f"render_timeout_s={self.timeout_s} "
                                                f"exceeded after {len(pages)} page(s)", started)
                try:
                    msg = recv_conn.recv()
                except (EOFError, OSError):
                    proc.join(5)
                    return pages, self._crashed(proc.exitcode, started)
                if msg == _DONE:
                    return pages, None
                if isinstance(msg, dict) and msg.get("__memory__"):
                    return pages, self._failure(Status.RENDER_MEMORY, f"render_memory_mb={self.memory_mb} "
                                                "exceeded; the renderer was stopped", started)
                pages.append(msg)
        finally:
            recv_conn.close()
            if proc.is_alive():
                proc.kill()
            proc.join(5)

    def _crashed(self, exitcode: int | None, started: float) -> dict:
        if exitcode is not None and exitcode < 0:
            sig = signal.Signals(-exitcode).name
            if -exitcode == signal.SIGKILL:  # the kernel's OOM killer or a cgroup limit
                return self._failure(Status.RENDER_MEMORY, f"renderer killed by {sig} (out of memory?); "
                                     f"render_memory_mb={self.memory_mb}", started)
            return self._failure(Status.RENDER_CRASH, f"renderer crashed with {sig} after "
                                 f"{self.retries + 1} attempt(s)", started)
        return self._failure(Status.RENDER_CRASH, f"renderer exited with code {exitcode}", started)

    @staticmethod
    def _failure(status: Status, error: str, started: float) -> dict:
        return {"page_index": 0, "page_count": None, "status": status.value, "error": error,
                "render_ms": (time.monotonic() - started) * 1000.0}
