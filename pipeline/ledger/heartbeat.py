"""The run record's heartbeat, so `pageray status` can tell a live run from a dead one.

A driver can go minutes without a finished batch (loading an 8B model, a slow first page), so
the record is not rewritten per batch but by a daemon thread every few seconds, whatever the
pipeline is doing, and at once when the run's state changes. Each beat also writes the run's live
progress (`progress`: pages done out of the estimate, pages/s over the last minute, eta_s; see
pipeline.progress), which `pageray status` shows.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from pageray.pipeline.errors import LeaseLost
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunRecord
from pageray.pipeline.progress import progress_interval

BEAT_S = 10.0  # pipeline.ledger.status.STALE_AFTER_S allows many missed beats


class Heartbeat:
    """`with Heartbeat(folder, record) as beat:` ... `beat.update(pages=n)`; the RunRecord is
    shared, and written by the thread while the block runs."""

    def __init__(self, folder: OutputFolder, record: RunRecord, every_s: float | None = None, lease=None):
        # as often as the driver's progress line, when that is set shorter (PAGERAY_PROGRESS_S), so
        # `pageray status` is as current as the log
        every_s = every_s or min(BEAT_S, progress_interval())
        if lease is not None:  # a few beats per lease timeout, so a live holder is never taken over
            every_s = min(every_s, lease.timeout_s / 4)
        self.folder, self.record, self.every_s, self.lease = folder, record, every_s, lease
        self.beats = 0
        self.lost = False  # another run took the lease over: this one must stop
        self._live: Callable[[], dict] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pageray-heartbeat", daemon=True)

    def update(self, **values: Any) -> None:
        """Change the record; a change of state is written at once, not at the next beat."""
        with self._lock:
            self.record.update(**values)
            if "state" in values:
                self.folder.write_run(self.record)

    def track(self, live: Callable[[], dict]) -> None:
        """Write `live()` (pipeline.progress.Progress.snapshot) as the record's `progress` at each beat."""
        self._live = live

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            # written under the lock: a beat's older snapshot must not land after a state change
            with self._lock:
                try:
                    if self._live is not None:
                        self.record.progress = self._live()
                    self.folder.write_run(self.record)
                    self.beats += 1
                    if self.lease is not None and not self.lease.renew():
                        self.lost = True
                except Exception:  # noqa: BLE001 - a missed beat must not end the run; the final write reports
                    pass

    def check_lease(self) -> None:
        """Raise if the lease was lost: doing more would duplicate or undo the new holder's work."""
        if self.lost:
            raise LeaseLost(f"run {self.record.run_id} lost its lease on {self.folder.uri} (no heartbeat "
                               "for longer than its lease timeout, so another run took the folder over); it "
                               "stops here, and the pages it committed stay")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
