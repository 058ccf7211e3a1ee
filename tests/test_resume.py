"""Kill a run at several points (driver SIGKILL, an extractor actor mid-batch), resubmit, and
check the output page for page: every page of every input exactly once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from cheap import SMALL_RENDER, SMALL_RENDER_FLAGS
from processes import processes, wait_until

from pageray.pipeline.config import RunConfig
from pageray.pipeline.driver.run import run_extraction


pytestmark = pytest.mark.slow
PAGERAY = str(Path(sys.executable).parent / "pageray")
TAG = "PAGERAY_TEST_RUN_TAG"


def parts(out: Path) -> list[Path]:
    return sorted((out / "data").glob("part-*.parquet")) if (out / "data").exists() else []


def pages(out: Path, *columns: str) -> list[tuple]:
    cols = ", ".join(("source_uri", "page_index") + columns)
    return duckdb.sql(f"select {cols} from read_parquet('{out}/data/*.parquet')").fetchall() if parts(out) else []


def pages_while_running(out: Path) -> list[tuple]:
    """`pages` of an output a run is writing: a part file its merge replaced between DuckDB's listing
    and its read is not an error here (the next poll reads the file that replaced it)."""
    try:
        return pages(out)
    except duckdb.IOException:
        return []


def relative(rows, root: Path) -> set[tuple]:
    return {(str(Path(r[0]).relative_to(root)), *r[1:]) for r in rows}


def start(head, inbox: Path, out: Path, model: Path, tag: str) -> subprocess.Popen:
    """`pageray extract` as a driver of the session's cluster (its own Ray job). TAG marks the
    driver and its job's workers (pageray hands PAGERAY_* variables to them), so the test can
    kill exactly those and nothing else on the machine. Its stderr goes to a file beside the
    output (`log_of`): a pipe nobody reads while the run goes on fills up and blocks the driver."""
    with log_of(out, tag).open("wb") as log:
        return subprocess.Popen([PAGERAY, "extract", str(inbox), "--schema", "transcribe", "--out", str(out),
                                 "--model", str(model), "--max-new-tokens", "24", "--batch-size", "2",
                                 *SMALL_RENDER_FLAGS],
                                env=head.driver_env(**{TAG: tag}), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=log)


def log_of(out: Path, tag: str) -> Path:
    return out.parent / f"{tag}.log"


def tail(out: Path, tag: str) -> str:
    return log_of(out, tag).read_text(errors="replace")[-3000:]


def tagged(tag: str, title: str = "") -> list[int]:
    """PIDs whose environment carries TAG=tag (and whose command line contains `title`)."""
    return processes(lambda cmdline: title.encode() in cmdline.replace(b"\0", b" "),
                     lambda environ: f"{TAG}={tag}".encode() in environ)


def kill_tagged(tag: str, title: str = "") -> int:
    pids = tagged(tag, title)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def run_record(out: Path, run_id: str) -> dict:
    return json.loads((out / "_runs" / f"{run_id}.json").read_text())


def test_killed_runs_resume_to_exactly_once(ray_head, ray_local, samples, tiny_model, tmp_path):
    inbox, out, clean = tmp_path / "in", tmp_path / "out", tmp_path / "clean"
    for sub in ("a", "b"):
        shutil.copytree(samples, inbox / sub)

    # 1. the driver dies with SIGKILL after some pages are committed (Ray ends its job's workers)
    proc = start(ray_head, inbox, out, tiny_model, "run1")
    assert wait_until(lambda: len(parts(out)) >= 1, 300, every_s=0.5), tail(out, "run1")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kill_tagged("run1")  # its workers are not in the driver's process group
    first = pages(out, "run_id")
    assert first, "pages were committed before the kill"

    # 2. resubmit; an extractor actor is killed mid-batch while it runs: Ray Data restarts the
    # actor and retries its batch (max_restarts=-1, max_task_retries=-1), so the run still finishes
    proc = start(ray_head, inbox, out, tiny_model, "run2")
    assert wait_until(lambda: len(pages_while_running(out)) > len(first) or proc.poll() is not None, 300, every_s=0.5), \
        tail(out, "run2")
    assert proc.poll() is None, f"the resubmitted run ended (rc {proc.returncode}) before it committed a page:\n" + \
        tail(out, "run2")
    assert kill_tagged("run2", "MapBatches(ExtractFields)") >= 1
    rc = proc.wait(600)
    assert rc == 0, tail(out, "run2")
    kill_tagged("run2")

    got = pages(out, "run_id", "status")
    keys = [(r[0], r[1]) for r in got]
    assert len(keys) == len(set(keys)), "no page twice"
    # pages committed before the kill were kept, not computed again
    assert set(first) <= {(r[0], r[1], r[2]) for r in got}
    runs = sorted(p.stem for p in (out / "_runs").glob("*.json"))
    resumed = [run_record(out, r)["plan"] for r in runs[1:]]
    assert resumed[0]["skipped"] + resumed[0]["resumed"] >= 1

    # the same pages, with the same statuses, as one uninterrupted run (of the same settings; in this
    # process, on the same cluster: nothing is killed, so the driver needs no process of its own)
    record = run_extraction(RunConfig.build(inputs=[str(inbox)], out=str(clean), schema_ref="transcribe",
                                            model=str(tiny_model), max_new_tokens=24, batch_size=2, **SMALL_RENDER))
    assert record["state"] == "succeeded"
    assert relative([(r[0], r[1], r[3]) for r in got], inbox) == relative(pages(clean, "status"), inbox)
