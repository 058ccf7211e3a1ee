"""One run per output folder at a time: a lease, taken before planning and renewed by the heartbeat.

The lease is a numbered file, `OUT/_lease/<generation>.json`; the newest generation is the
holder. Taking the lease creates the next generation with an atomic create-if-absent (O_EXCL
locally, a conditional PUT with If-None-Match on S3), so of two runs that race for a free or a
dead folder exactly one wins. A released lease leaves `<generation>.released` behind, so the
numbers only ever grow: a holder that was paused can never find "its" number taken by a later
run and mistake that run's lease for its own. Each holder also writes a random token, and
`held`, `renew`, `release` and the fence compare it, not only the number.

The holder rewrites its file with every heartbeat; a lease whose file has not been written for
its holder's timeout (`--lease-timeout`, written in the file), or whose holder's process is gone
from this host, belongs to a driver that died or is frozen, and the next run takes it over (the
next generation) and cleans up after it as any run does. Staleness is judged by the storage's
modification time against the local clock, so clocks must agree to well within the timeout.

A frozen holder (a paused process, a partitioned node) may wake up after it was taken over: its
writes are fenced. `Lease.fence()` is a small picklable check, shipped to the Ray workers that
commit pages, which every write of page or document files runs right before the file is put in
place (pipeline.ledger.folder): once a newer generation exists, it raises LeaseLost and nothing
more of the stale run lands.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Callable

import pyarrow.fs as pafs

from pageray.pipeline.errors import LeaseLost, OutputBusy, StorageError
from pageray.pipeline.ledger.folder import LEASE_DIR, OutputFolder, utc_now

WAIT_POLL_S = 5.0
HELD, RELEASED = ".json", ".released"


def _name(generation: int, suffix: str = HELD) -> str:
    return f"{LEASE_DIR}/{generation:012d}{suffix}"


def _generations(folder: OutputFolder) -> list[tuple[int, pafs.FileInfo]]:
    """(number, file) of every lease and released lease in the folder."""
    try:
        infos = folder.fs.get_file_info(pafs.FileSelector(f"{folder.path}/{LEASE_DIR}", allow_not_found=True))
    except OSError as exc:
        raise StorageError(f"cannot read the lease of {folder.uri}: {exc}") from exc
    found = []
    for info in infos:
        stem, dot, suffix = info.base_name.partition(".")
        if info.type == pafs.FileType.File and stem.isdigit() and dot + suffix in (HELD, RELEASED):
            found.append((int(stem), info))
    return found


def _newest(folder: OutputFolder) -> tuple[int, pafs.FileInfo | None] | None:
    """The newest generation and its holder's file (None once it was released); None if there is none."""
    generations = _generations(folder)
    if not generations:
        return None
    top = max(number for number, _ in generations)
    files = [info for number, info in generations if number == top]
    if any(info.base_name.endswith(RELEASED) for info in files):
        return top, None
    return top, files[0]


def _holder(folder: OutputFolder, info: pafs.FileInfo) -> dict:
    """What a lease file says; {} when it vanished or is unreadable (a live holder all the same)."""
    try:
        with folder.fs.open_input_stream(info.path) as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}
    except OSError as exc:
        raise StorageError(f"cannot read the lease of {folder.uri}: {exc}") from exc


def _holds(folder: OutputFolder, generation: int | None, token: str) -> bool:
    """Whether the newest lease is this generation with this token."""
    newest = _newest(folder) if generation is not None else None
    if newest is None or newest[0] != generation or newest[1] is None:
        return False
    return _holder(folder, newest[1]).get("token") == token


class Fence:
    """A holder's lease as a check that a Ray worker can run: `fence()` raises LeaseLost once a
    newer run took the folder over. Picklable (a URI, a number, a token)."""

    def __init__(self, uri: str, run_id: str, generation: int, token: str):
        self.uri, self.run_id, self.generation, self.token = uri, run_id, generation, token

    def __call__(self) -> None:
        if not _holds(OutputFolder(self.uri), self.generation, self.token):
            raise LeaseLost(f"run {self.run_id} lost its lease on {self.uri} (it was paused or cut off for longer "
                            "than its lease timeout, and another run took the folder over); it stops here without "
                            "writing more, and the pages it committed before stay")


class Lease:
    """`Lease(folder, run_id, timeout_s).acquire(wait)` ... `renew()` each beat ... `release()`."""

    def __init__(self, folder: OutputFolder, run_id: str, timeout_s: float | None = None):
        from pageray.pipeline.config import default

        self.folder, self.run_id = folder, run_id
        self.timeout_s = float(timeout_s if timeout_s is not None else default("lease_timeout_s"))
        self.token = uuid.uuid4().hex
        self.generation: int | None = None
        self._body = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                      "started_at": utc_now(), "token": self.token, "timeout_s": self.timeout_s}

    def _newest(self) -> tuple[int, pafs.FileInfo | None] | None:
        return _newest(self.folder)

    def acquire(self, wait: bool = False, log: Callable[[str], None] = print) -> None:
        """Take the lease, or raise OutputBusy naming the live run (with `wait`, poll until it is free)."""
        waited = False
        while True:
            newest = self._newest()
            generation = 1
            if newest is not None:
                number, info = newest
                if info is not None:
                    holder = _holder(self.folder, info)
                    timeout = holder.get("timeout_s")  # the holder's own: it renews to match it
                    timeout = float(timeout) if isinstance(timeout, (int, float)) else self.timeout_s
                    age = time.time() - (info.mtime.timestamp() if info.mtime else 0.0)
                    if age <= timeout and not self._died_here(holder):
                        busy = (f"output folder {self.folder.uri} is in use by run {holder.get('run_id', '?')} on "
                                f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}), started "
                                f"{holder.get('started_at', '?')}, last seen {age:.0f} s ago (a lease not renewed "
                                f"for {timeout:g} s is taken over)")
                        if not wait:
                            raise OutputBusy(f"{busy}. Pass --wait to wait for it to finish.")
                        if not waited:
                            log(f"pageray: {busy}; waiting (--wait)")
                            waited = True
                        time.sleep(min(WAIT_POLL_S, timeout / 2))
                        continue
                generation = number + 1  # released, or its holder died: never reuse a number
            if self.folder.create_exclusive(f"{self.folder.path}/{_name(generation)}",
                                            json.dumps(self._content()).encode("utf-8")):
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
        for number, info in _generations(self.folder):
            if number < (self.generation or 0):
                try:
                    self.folder.delete(info.path)
                except OSError:
                    pass  # a racing cleaner took it

    def fence(self) -> Fence:
        """The check each write of pages runs right before its file is put in place."""
        if self.generation is None:
            raise RuntimeError("fence() before acquire()")
        return Fence(self.folder.uri, self.run_id, self.generation, self.token)

    def held(self) -> bool:
        return _holds(self.folder, self.generation, self.token)

    def renew(self) -> bool:
        """Rewrite the lease (its modification time is the proof of life); False if it was lost."""
        try:
            if self.generation is None or not self.held():
                return False
            # no other run ever writes this name (numbers are not reused), so this cannot clobber one
            self.folder.write_json(_name(self.generation), self._content())
        except StorageError:
            return True  # a missed renewal is not a lost lease; the next beat tries again
        return True

    def release(self) -> None:
        """Give the lease back, leaving its number behind; a lease that was taken over is left alone."""
        if self.generation is None:
            return
        try:
            if self.held():
                self.folder.write_json(_name(self.generation, RELEASED), {**self._content(), "released_at": utc_now()})
                self.folder.delete(f"{self.folder.path}/{_name(self.generation)}")
        except (OSError, StorageError):
            pass  # the lease times out, and the next run takes it over
        self.generation = None
