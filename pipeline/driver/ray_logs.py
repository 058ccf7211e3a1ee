"""What of Ray's own logging reaches the driver's terminal: by default nothing below an error,
with `--verbose` (PAGERAY_VERBOSE=1) everything Ray prints.

A run's log is pageray's lines (progress, the summary, errors that name a fix). Ray's lines stay
where Ray writes them anyway, the session's log folder (/tmp/ray/session_*/logs, Ray Data's in
logs/ray-data/ray-data.log): each is handled where it starts, not by filtering printed text.

* Ray's "ray" logger in the driver (the local instance and dashboard address, the notice that
  token authentication was turned on for it): `ray.init(logging_level=...)`, which Ray applies
  before it starts anything; workers' output is not streamed to the driver. (Setting
  RAY_AUTH_MODE=token ourselves would say the same silently, but Ray caches the mode when it is
  imported, and a late change leaves the driver and its GCS disagreeing.)
* Ray Data's console handler (execution plans, "Progress bars disabled": pageray draws its own):
  raised to ERROR; its file handler in the session folder keeps every line.
* The core worker's one-time ERROR about actor constructor arguments in the object store
  (ray-project/ray#53727). Ray Data hands every actor pool its context and UDF as object refs
  that the driver owns for the dataset's life, so the restart hazard it names does not apply.
  The C++ logger prints it to the driver's stderr once per process, at the first such actor;
  `spend_restart_notice` creates one such actor itself, at start-up, with stderr pointed at the
  driver's log file in the session folder, so the notice is written there.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

VERBOSE_ENV = "PAGERAY_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def set_verbose(on: bool) -> None:
    """`pageray extract --verbose`: a logging switch of this process, not part of the run's config."""
    if on:
        os.environ[VERBOSE_ENV] = "1"


def init_options() -> dict:
    """Extra ray.init() arguments."""
    if verbose():
        return {"log_to_driver": True}
    return {"log_to_driver": False, "logging_level": logging.ERROR}


def quiet_ray_data() -> None:
    """Ray Data's console handler at ERROR (its file handler keeps everything), unless verbose."""
    if verbose():
        return
    import ray.data  # noqa: F401 - configures the "ray.data" logger

    # Only Ray Data's own console handler (ray.data._internal.logging's config names its class): the
    # logger can carry the application's handlers too (a notebook's, pytest's), which stay as they are.
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":
            handler.setLevel(logging.ERROR)


def _driver_log() -> Path | None:
    try:
        import ray._private.worker as worker

        logs = Path(worker._global_node.get_logs_dir_path())
    except Exception:  # noqa: BLE001 - no local node to ask (Ray Client): nothing to point at
        return None
    mine = sorted(logs.glob(f"python-core-driver-*_{os.getpid()}.log"))
    return mine[0] if mine else logs / f"pageray-driver-{os.getpid()}.err"


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 (where the C++ logger writes) at `path` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_spent = False


def spend_restart_notice() -> None:
    """See the module docstring: the core worker's once-per-process notice, written to Ray's log."""
    global _spent
    if _spent or verbose():
        return
    import ray

    path = _driver_log()
    if path is None:
        return
    _spent = True

    @ray.remote(num_cpus=0, max_restarts=1)
    class _RestartNotice:
        def __init__(self, ref_argument):
            pass

    argument = ray.put(None)
    with _stderr_to(path):
        actor = _RestartNotice.remote(argument)  # the notice is logged here, synchronously
    ray.kill(actor, no_restart=True)
