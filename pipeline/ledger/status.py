"""`pageray status OUT`: one line per run recorded in an output folder, live or dead."""
from __future__ import annotations

import time

from pageray.pipeline.errors import StorageError
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunState
from pageray.pipeline.progress import describe

# A running driver rewrites its record every ~10 s (pipeline.ledger.heartbeat); far older means it died.
STALE_AFTER_S = 300


def run_state(record: dict, now: float | None = None) -> str:
    state = record.get("state", "?")
    if state in {s.value for s in RunState if s.live}:
        age = (now or time.time()) - float(record.get("updated_unix", 0))
        if age > STALE_AFTER_S:
            return f"died? (no heartbeat for {int(age)} s)"
    return state


def describe_runs(out: str) -> str:
    """StorageError for a folder that does not exist (a mistyped path is no empty history)."""
    folder = OutputFolder(out)
    records = folder.runs()
    if not records and folder.manifest() is None and not folder.exists(folder.path):
        raise StorageError(f"{out} does not exist; pass the --out of a run")
    if not records:
        return f"no runs recorded in {out}"
    lines = [f"{'run_id':<28} {'state':<28} {'pages':>7} {'pages/s':>8}  counts"]
    for r in records:
        state = run_state(r)
        live = r.get("progress") if state in {s.value for s in RunState if s.live} else None
        lines.append(f"{r['run_id']:<28} {state:<28} {r.get('pages', 0):>7} "
                     f"{r.get('pages_per_s') or '-':>8}  {r.get('counts', {})}")
        if live:  # the heartbeat's numbers (pipeline.progress), as the driver's own progress line says them
            lines.append(f"  progress: {describe(live)}")
    return "\n".join(lines)
