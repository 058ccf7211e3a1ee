"""One run per output folder at a time: a lease, taken before planning and renewed by the heartbeat.

The lease is a numbered file, `OUT/_lease/<generation>.json`; the newest generation is the
holder. Taking the lease creates the next generation with an atomic create-if-absent (O_EXCL
locally, a conditional PUT with If-None-Match on S3), so of two runs that race for a free or a
dead folder exactly one wins. The holder rewrites its file with every heartbeat; a lease whose
file has not been written for LEASE_TIMEOUT_S, or whose holder's process is gone from this
host, belongs to a driver that died, and the next run takes it over (the next generation) and
cleans up after it as any run does. A holder that finds a
newer generation than its own has lost the lease (it was frozen for longer than the timeout) and
stops before it commits more. Staleness is judged by the storage's modification time against
the local clock, so clocks must agree to well within the timeout.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Callable

import pyarrow.fs as pafs

from pageray.pipeline.errors import OutputBusy, StorageError
from pageray.pipeline.ledger.folder import LEASE_DIR, OutputFolder, utc_now

# A heartbeat rewrites the lease every pipeline.ledger.heartbeat.BEAT_S (10 s): 12 missed beats.
LEASE_TIMEOUT_S = 120.0
WAIT_POLL_S = 5.0


class Lease:
    """`Lease(folder, run_id).acquire(wait)` ... `renew()` each beat ... `release()`."""

    def __init__(self, folder: OutputFolder, run_id: str, timeout_s: float = LEASE_TIMEOUT_S):
        self.folder, self.run_id, self.timeout_s = folder, run_id, timeout_s
        self.token = uuid.uuid4().hex
        self.generation: int | None = None
        self._body = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                      "started_at": utc_now(), "token": self.token}

    @property
    def _dir(self) -> str:
        return f"{self.folder.path}/{LEASE_DIR}"

    @staticmethod
    def _name(generation: int) -> str:
        return f"{LEASE_DIR}/{generation:012d}.json"

    def _path(self, generation: int) -> str:
        return f"{self.folder.path}/{self._name(generation)}"

    def _generations(self) -> list[tuple[int, pafs.FileInfo]]:
        try:
            infos = self.folder.fs.get_file_info(pafs.FileSelector(self._dir, allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot read the lease of {self.folder.uri}: {exc}") from exc
        return [(int(i.base_name[:-5]), i) for i in infos
                if i.type == pafs.FileType.File and i.base_name.endswith(".json") and i.base_name[:-5].isdigit()]

    def _newest(self) -> tuple[int, pafs.FileInfo] | None:
        return max(self._generations(), key=lambda n: n[0], default=None)

    def _holder(self, info: pafs.FileInfo) -> dict:
        try:
            with self.folder.fs.open_input_stream(info.path) as f:
                return json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):  # vanished, or being written: a live holder all the same
            return {}

    def acquire(self, wait: bool = False, log: Callable[[str], None] = print) -> None:
        """Take the lease, or raise OutputBusy naming the live run (with `wait`, poll until it is free)."""
        waited = False
        while True:
            newest = self._newest()
            generation = 1
            if newest is not None:
                number, info = newest
                holder = self._holder(info)
                age = time.time() - (info.mtime.timestamp() if info.mtime else 0.0)
                if age <= self.timeout_s and not self._died_here(holder):
                    busy = (f"output folder {self.folder.uri} is in use by run {holder.get('run_id', '?')} on "
                            f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}), started "
                            f"{holder.get('started_at', '?')}, last seen {age:.0f} s ago (a lease not renewed for "
                            f"{self.timeout_s:.0f} s is taken over)")
                    if not wait:
                        raise OutputBusy(f"{busy}. Pass --wait to wait for it to finish.")
                    if not waited:
                        log(f"pageray: {busy}; waiting (--wait)")
                        waited = True
                    time.sleep(WAIT_POLL_S)
                    continue
                generation = number + 1  # its holder died: take it over
            if self.folder.create_exclusive(self._path(generation), json.dumps(self._content()).encode("utf-8")):
                self.generation = generation
                self._drop_older()
                return
            # another run created that generation first: look again

    @staticmethod
    def _died_here(holder: dict) -> bool:
        """A holder on this host whose process is gone died (a killed driver, resubmitted at once);
        on another host only the timeout can tell."""
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    def _content(self) -> dict:
        return {**self._body, "renewed_at": utc_now()}

    def _drop_older(self) -> None:
        for number, info in self._generations():
            if number < (self.generation or 0):
                try:
                    self.folder.delete(info.path)
                except OSError:
                    pass  # a racing cleaner took it

    def held(self) -> bool:
        newest = self._newest()
        return newest is not None and newest[0] == self.generation

    def renew(self) -> bool:
        """Rewrite the lease (its modification time is the proof of life); False if it was lost."""
        if self.generation is None or not self.held():
            return False
        try:
            self.folder.write_json(self._name(self.generation), self._content())
        except StorageError:
            return True  # a missed renewal is not a lost lease; the next beat tries again
        return True

    def release(self) -> None:
        if self.generation is None:
            return
        try:
            self.folder.delete(self._path(self.generation))
        except OSError:
            pass  # already taken over and cleaned up
        self.generation = None
