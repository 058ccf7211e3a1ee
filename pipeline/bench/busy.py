"""GPU busy fraction: how much of a pass's wall time the GPU had work.

Two ways, `--busy`:
  nvml      NVML's utilization (the share of each sample period in which a kernel ran), sampled
            every 50 ms on a thread during the timed pass itself: no extra pass, no slowdown.
  profiler  torch.profiler on a separate pass over one batch: the union of every kernel and copy
            interval over wall time. Exact, but it costs a pass and the profiler slows launches.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


def union_seconds(spans) -> float:
    """Length of the union of (start, end) intervals: overlapping kernels count once."""
    busy, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy


def _kernel_spans(prof) -> list[tuple[float, float]]:
    """(start, end) in seconds of every GPU activity (kernels, copies) the profiler saw."""
    from torch.autograd import DeviceType

    spans = []
    try:
        for ev in prof.profiler.kineto_results.events():
            if ev.device_type() == DeviceType.CUDA:
                spans.append((ev.start_ns() / 1e9, (ev.start_ns() + ev.duration_ns()) / 1e9))
    except (AttributeError, RuntimeError):
        for ev in prof.events():
            if ev.device_type == DeviceType.CUDA:
                spans.append((ev.time_range.start / 1e6, ev.time_range.end / 1e6))
    return spans


def profiled_busy(fn: Callable[[], object]) -> float | None:
    """Union of GPU activity intervals / wall time of `fn`, under torch.profiler (CUDA only)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    busy = union_seconds(_kernel_spans(prof))
    return min(busy / wall, 1.0) if busy and wall > 0 else None


class UtilizationSampler:
    """`with UtilizationSampler() as s: ...` then `s.fraction` (None without CUDA or NVML)."""

    def __init__(self, period_s: float = 0.05):
        self.period_s, self.samples = period_s, []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def _read(self) -> float:
        import torch

        return torch.cuda.utilization() / 100.0

    def __enter__(self) -> "UtilizationSampler":
        try:
            self._read()
        except Exception as exc:  # noqa: BLE001 - no NVML: the pass still runs, without the figure
            self.error = f"{type(exc).__name__}: {exc}"
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append(self._read())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None
