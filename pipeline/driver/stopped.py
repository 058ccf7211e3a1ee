"""Why a run stopped mid-way: its storage went away, or Ray lost nodes or workers and could not
redo their work (pipeline.errors says which errors are fatal; this module names the cause)."""
from __future__ import annotations

import re

from pageray.pipeline.errors import ActorsNotStarted, FatalError, LeaseLost, LostWorkers, StorageError, describe

# Ray's errors for a worker, actor, node or object that is gone (by name: they move between versions)
RAY_LOSSES = {"ActorDiedError", "ActorUnavailableError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
              "ObjectReconstructionFailedError", "ObjectFetchTimedOutError", "WorkerCrashedError",
              "LocalRayletDiedError"}
# Ray's wrappers around the error that happened in a task (whose text carries the remote traceback)
RAY_WRAPPERS = {"RayTaskError", "RayActorError", "UserCodeException", "UnserializableException", "RaySystemError",
                "RayError"}
KEPT = "Every page committed so far is kept"
_ERROR_LINE = re.compile(r"^(?:\w+\.)*(\w+)(?:\([\w.]+\))?: (.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def stopped_by(exc: Exception, out: str, storage_down: str | None, lost_nodes: dict[str, str]) -> FatalError | None:
    """Why a run that failed mid-way with `exc` stopped, as the FatalError that says so and what to
    do: another run took the output folder over (a worker's write was fenced), the output storage did not answer (`storage_down`: the error of asking it just now), or
    Ray lost nodes (`lost_nodes`: id -> address) or a worker and could not redo their work on the
    nodes left. None when it is neither: then `exc` goes up as it is."""
    errors = list(_errors(exc))
    fenced = next((text for name, text in errors if name == LeaseLost.__name__), None)
    if fenced is not None:  # a worker's commit was refused: another run holds the folder now
        return LeaseLost(_short(fenced, 600))
    if any(name == "GetTimeoutError" and "starting actors" in text for name, text in errors):
        # Ray Data's wait for the pools' actors (pipeline.driver.run: ACTORS_START_TIMEOUT_S)
        return ActorsNotStarted("the run's actors did not all start in time, so no page was processed: the cluster "
                                "lacks what they ask for (one GPU and the model's memory per extractor; on CPU, "
                                "--actors of them) or the model load hangs. Lower --actors, or check `ray status` "
                                "and the nodes' logs, then run the same command again")
    cause = _short(next((f"{name}: {text}" for name, text in errors if name not in RAY_WRAPPERS), describe(exc)))
    if storage_down is not None:
        return StorageError(f"storage {out} did not answer ({_short(storage_down)}), so the run stopped (it "
                            f"failed with {cause}). {KEPT}: resubmit the same command once the storage is back "
                            "(the next run does only what is missing)")
    loss = next((_short(f"{name}: {text}") for name, text in errors if name in RAY_LOSSES), None)
    if lost_nodes or loss is not None:
        what = f"Ray lost {named_nodes(lost_nodes)}" if lost_nodes else "a Ray worker died"
        return LostWorkers(f"{what} mid-run, and Ray could not finish its work on the nodes left ({loss or cause})"
                           f". {KEPT}: resubmit the same command to finish the rest (the next run does only what is "
                           "missing)")
    return None


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def named_nodes(nodes: dict[str, str]) -> str:
    return ", ".join(f"node {address} (id {node[:12]})" for node, address in sorted(nodes.items(), key=lambda n: n[1]))


def _errors(exc: BaseException):
    """(type name, message) of `exc`, of the errors it was raised from, and of the errors named in
    their text: a Ray task's error carries the remote traceback (and its causes) as text only."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
        yield type(exc).__name__.partition("(")[0], lines[0].rstrip(".") if lines else ""
        for line in lines[1:]:
            found = _ERROR_LINE.match(line)
            if found and (found.group(1).endswith(("Error", "Exception")) or found.group(1) == LeaseLost.__name__):
                yield found.group(1), found.group(2).rstrip(".")
        inner = getattr(exc, "cause", None)  # a RayTaskError's original exception
        exc = inner if isinstance(inner, BaseException) else exc.__cause__ or exc.__context__


def alive_nodes() -> dict[str, str]:
    """Node id -> address of the cluster's live Ray nodes (empty if Ray cannot say)."""
    import ray

    try:
        return {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")}
    except Exception:  # noqa: BLE001 - asked while another failure is being explained
        return {}


def lost_nodes(before: dict[str, str] | None) -> dict[str, str]:
    """The nodes of `before` that are dead now."""
    now = alive_nodes() if before else {}
    return {node: address for node, address in (before or {}).items() if now and node not in now}
