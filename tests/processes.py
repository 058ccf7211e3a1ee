"""The tests' one look at this machine's processes (/proc) and their one wait loop."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable


def _read(pid: str, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone, or not ours to read
        return None


def parent_of(pid: str) -> int | None:
    stat = _read(pid, "stat")
    if stat is None:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] == b"Z" else int(fields[1])


def processes(cmdline: Callable[[bytes], bool] = lambda c: True,
              environ: Callable[[list[bytes]], bool] | None = None) -> list[int]:
    """Pids of the other live processes whose NUL-separated command line (and environment, when
    `environ` is given) pass the tests."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        line = _read(pid, "cmdline")
        if line is None or not cmdline(line):
            continue
        if environ is not None:
            env = _read(pid, "environ")
            if env is None or not environ(env.split(b"\0")):
                continue
        found.append(int(pid))
    return found


def render_children() -> list[int]:
    """Pids of live render children: the children of this process's forkserver."""
    servers = {pid for pid in processes(lambda c: b"multiprocessing.forkserver" in c)
               if parent_of(str(pid)) == os.getpid()}
    return [pid for pid in processes() if parent_of(str(pid)) in servers]


def wait_until(condition: Callable[[], object], timeout_s: float, every_s: float = 0.05) -> bool:
    """True once `condition()` holds, False if it did not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)
    return True
