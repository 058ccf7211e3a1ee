"""Resident memory of a run's Ray actor processes, sampled from a thread while the run goes on
(tests/test_soak.py), and the numbers a soak test judges a curve by.

Ray names an actor's process after its class (`ray::MapWorker(MapBatches(ExtractFields))`), so
the actors are found in /proc by command line, and only among this process's descendants: other
test sessions on the machine run Ray workers of the same names.

What is sampled per process is its private resident memory (RssAnon: the heap, torch's CPU
allocator, numpy arrays). Total RSS is recorded too, but not judged: it also counts the pages of
Ray's shared object store (RssShmem) that the worker has read, and those belong to the store
(bounded by its capacity; Ray's memory guide: worker heap = RSS - SHR), not to the actor.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from processes import parent_of


@dataclass(frozen=True)
class Sample:
    t: float          # seconds since sampling began
    pages: int        # pages committed by then
    role: str         # the actor class
    pid: int
    private_mib: float  # RssAnon
    rss_mib: float      # VmRSS: private + shared memory (RssShmem) + mapped files (RssFile)
    shared_mib: float   # RssShmem: for a Ray worker, the object store pages it has read
    cpu_s: float        # CPU time the process has used


def memory_mib(pid: int) -> tuple[float, float, float, float] | None:
    """(RssAnon, VmRSS, RssShmem) of `pid` in MiB and its CPU seconds, or None if it is gone."""
    try:
        text = open(f"/proc/{pid}/status").read()
        stat = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        return None
    ticks = stat[stat.rindex(b")") + 2:].split()
    cpu_s = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")
    kb = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "VmRSS", "RssShmem"):
            kb[key] = int(value.split()[0])
    if len(kb) < 3:  # a zombie has no memory lines
        return None
    return kb["RssAnon"] / 1024, kb["VmRSS"] / 1024, kb["RssShmem"] / 1024, cpu_s


def _descends_from(pid: int, ancestor: int, depth: int = 6) -> bool:
    for _ in range(depth):
        parent = parent_of(str(pid))
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def actor_pids(roles: Iterable[str]) -> dict[int, str]:
    """{pid: role} of the live Ray actor processes of this process's local Ray whose class is one of `roles`."""
    tags = {f"({r})".encode(): r for r in roles}  # ray::MapWorker(MapBatches(ExtractFields))...
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            line = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        role = next((r for tag, r in tags.items() if tag in line), None) if line.startswith(b"ray::") else None
        if role is not None and _descends_from(int(entry), me):
            found[int(entry)] = role
    return found


class RssSampler:
    """`with RssSampler(roles, pages) as sampler:` samples every actor of `roles` every `every_s`
    seconds; `pages()` says how many pages are done at the time."""

    def __init__(self, roles: Sequence[str], pages: Callable[[], int], every_s: float = 1.0, driver: bool = False):
        """`driver`: sample this process too, as role "driver"."""
        self.roles, self.pages, self.every_s, self.driver = list(roles), pages, every_s, driver
        self.samples: list[Sample] = []
        self.error: BaseException | None = None  # what stopped the sampling thread, if anything did
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        try:
            while True:
                done = self.pages()
                t = time.monotonic() - self._t0
                pids = actor_pids(self.roles)
                if self.driver:
                    pids[os.getpid()] = "driver"
                for pid, role in pids.items():
                    mem = memory_mib(pid)
                    if mem is not None:
                        self.samples.append(Sample(t, done, role, pid, *mem))
                if self._stop.wait(self.every_s):
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.error = exc

    def __enter__(self) -> "RssSampler":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def series(self) -> dict[tuple[str, int], list[Sample]]:
        out: dict[tuple[str, int], list[Sample]] = {}
        for s in self.samples:
            out.setdefault((s.role, s.pid), []).append(s)
        return out


@dataclass(frozen=True)
class Levels:
    """A process's private memory just after warm-up and at the end, each as a low level (the
    10th percentile: what it keeps between batches) and a high one (the 90th: the most it takes
    during them). Percentiles rather than min and max, so that one odd sample decides nothing."""
    early: tuple[float, float]  # (low, high) MiB in the quarter of its CPU time after warm-up
    late: tuple[float, float]   # the same in its last quarter
    samples: tuple[int, int]

    @property
    def rise_mib(self) -> float:
        """How far the low level rose: whatever a process keeps per page, batch or call stays
        between batches, so a leak lifts the low level. The high level is printed, not judged:
        an extractor with two calls in flight swings by two blocks (116 MiB seen) and is at its
        peak in a few samples of each window, so the 90th percentile of one window can land on
        the peak and of the other below it."""
        return self.late[0] - self.early[0]


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def window_levels(series: Sequence[Sample], warm_up: float = 0.25, min_samples: int = 5) -> Levels | None:
    """`Levels` of one process's samples. Its run is cut by the CPU time it used, not by wall time
    or pages: that is what the process has done, whatever else the machine runs, and a render
    actor finishes long before the last page is committed. After the first `warm_up` of it, the
    next quarter is compared with the last quarter. None if either window has under `min_samples`
    samples (a process too short-lived to judge)."""
    total = series[-1].cpu_s - series[0].cpu_s
    if total <= 0:
        return None
    spent = [(s.cpu_s - series[0].cpu_s) / total for s in series]
    early = [s.private_mib for s, f in zip(series, spent) if warm_up <= f < warm_up + 0.25]
    late = [s.private_mib for s, f in zip(series, spent) if f >= 0.75]
    if len(early) < min_samples or len(late) < min_samples:
        return None
    return Levels((_quantile(early, 0.1), _quantile(early, 0.9)), (_quantile(late, 0.1), _quantile(late, 0.9)),
                  (len(early), len(late)))


def write_csv(sampler: RssSampler, path) -> None:
    """Every sample, for a closer look than the printed curve."""
    import csv

    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t_s", "pages", "role", "pid", "private_mib", "rss_mib", "shared_mib", "cpu_s"])
        for s in sampler.samples:
            out.writerow([f"{s.t:.2f}", s.pages, s.role, s.pid, f"{s.private_mib:.1f}", f"{s.rss_mib:.1f}",
                          f"{s.shared_mib:.1f}", s.cpu_s])


def curve_table(sampler: RssSampler, every_pages: int = 128) -> str:
    """The curve as text, a line per ~`every_pages` pages (and the last): seconds, pages done,
    and private / total MiB of each process."""
    series = sampler.series()
    keys = sorted(series, key=lambda k: (k[0] != "driver", k))
    names = [f"{role}:{pid}" for role, pid in keys]
    width = max([15, *(len(n) for n in names)])
    lines = ["   t_s  pages  " + "  ".join(n.rjust(width) for n in names)]
    by_t: dict[float, dict[tuple[str, int], Sample]] = {}
    for s in sampler.samples:
        by_t.setdefault(s.t, {})[(s.role, s.pid)] = s
    mark = 0
    times = sorted(by_t)
    for t in times:
        row = by_t[t]
        pages = next(iter(row.values())).pages
        if pages < mark and t != times[-1]:
            continue
        mark = (pages // every_pages + 1) * every_pages
        cells = [f"{row[k].private_mib:.0f}/{row[k].rss_mib:.0f}" if k in row else "-" for k in keys]
        lines.append(f"{t:6.0f} {pages:6d}  " + "  ".join(c.rjust(width) for c in cells))
    return "\n".join(lines)
