"""What runs inside the disposable render child (see pipeline.render.isolation): set the limits, render,
stream each page back over the pipe, report how it ended.
"""
from __future__ import annotations

import os
import re

from pageray.pipeline.datamodel import Status
from pageray.pipeline.render.pages import RenderLimits
from pageray.pipeline.render.passwords import Candidates

MIB = 1024 * 1024
CPU_KILL_AFTER_S = 5  # CPU seconds after SIGXCPU before the kernel sends SIGKILL

# How MuPDF (fz_malloc / fz_calloc / fz_realloc) and Python report an allocation that
# RLIMIT_AS refused. pipeline.render.pages records either as a render_error row; inside a
# memory-limited child the cause is known, and the row says so.
_ALLOCATION_FAILED = re.compile(r"\bMemoryError\b|\b(?:m|c|re)alloc \([^)]*\) failed")


def _address_space_bytes() -> int:
    """This process's mapped address space (VmSize); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _set_limit(kind: int, soft: int, hard: int) -> None:
    import resource

    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:  # never ask for more than we are allowed
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _label_memory_failure(page: dict, memory_mb: int) -> dict:
    if page["status"] == Status.RENDER_ERROR.value and _ALLOCATION_FAILED.search(page["error"] or ""):
        page["status"] = Status.RENDER_MEMORY.value
        page["error"] = f"render_memory_mb={memory_mb} exceeded: {page['error']}"
    return page


def main(conn, data: bytes, name: str, limits: RenderLimits, cpu_s: int, skip: int, crash_on: str | None,
         passwords: Candidates = Candidates()) -> None:
    memory_mb = limits.render_memory_mb
    import resource

    import pymupdf

    from pageray.pipeline.render.pages import iter_render

    # MuPDF prints each error to stdout besides raising it; the row's error column already
    # carries the message, and the chatter would interleave with the run's own output.
    pymupdf.TOOLS.mupdf_display_errors(False)
    limit = _address_space_bytes() + memory_mb * MIB
    _set_limit(resource.RLIMIT_AS, limit, limit)
    _set_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + CPU_KILL_AFTER_S)
    _set_limit(resource.RLIMIT_CORE, 0, 0)
    if crash_on and crash_on in name:
        os.abort()
    try:
        for page in iter_render(data, name, limits, start=skip, passwords=passwords):
            if page["page_index"] >= skip:  # a retry resumes after the pages already delivered
                conn.send(_label_memory_failure(page, memory_mb))
        conn.send(("done", _peak_rss_bytes(), None))
    except MemoryError:
        conn.send(("memory", _peak_rss_bytes(), None))
    except Exception as exc:  # noqa: BLE001 - reported as the document's row, not a traceback on stderr
        conn.send(("error", _peak_rss_bytes(), f"{type(exc).__name__}: {exc}"))
    conn.close()
    os._exit(0)  # skip interpreter teardown: nothing to flush, and it is the slow part
