"""One run per output folder: the lease, locally and on an S3 server, raced by real processes,
and two real concurrent runs of the same command."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from corpus import mupdf_pdf
from processes import wait_until
from pageray.pipeline.app.cli import app
from pageray.pipeline.errors import OutputBusy, StorageError
from pageray.pipeline.ledger import lease as lease_module
from pageray.pipeline.ledger.folder import LEASE_DIR, OutputFolder
from pageray.pipeline.ledger.heartbeat import Heartbeat
from pageray.pipeline.ledger.lease import Lease
from pageray.pipeline.ledger.records import RunRecord

PAGERAY = str(Path(sys.executable).parent / "pageray")


def leases(out: Path) -> list[str]:
    return sorted(p.name for p in (out / LEASE_DIR).glob("*.json")) if (out / LEASE_DIR).exists() else []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_run_is_refused_while_the_first_holds_the_lease(where, tmp_path, request):
    out = str(tmp_path / "out") if where == "local" else (request.getfixturevalue("s3_bucket"), "s3://docs/out")[1]
    first, second = Lease(OutputFolder(out), "r1"), Lease(OutputFolder(out), "r2")
    first.acquire()
    with pytest.raises(OutputBusy) as refused:
        second.acquire()
    message = str(refused.value)
    assert "run r1 on " in message and "last seen" in message and "--wait" in message
    assert first.renew() and first.held()
    first.release()
    second.acquire()
    assert second.held() and second.generation == 2  # a number is never given out twice
    second.release()


def test_a_dead_holders_lease_is_taken_over_and_the_old_holder_knows(tmp_path):
    out = tmp_path / "out"
    dead, alive = Lease(OutputFolder(str(out)), "r1", timeout_s=30), Lease(OutputFolder(str(out)), "r2", timeout_s=30)
    dead.acquire()
    stale = out / LEASE_DIR / leases(out)[0]
    os.utime(stale, (time.time() - 60, time.time() - 60))  # no heartbeat for a minute
    alive.acquire()
    assert alive.generation == 2 and leases(out) == ["000000000002.json"]  # the dead one's file is gone
    assert not dead.renew() and not dead.held()
    beat = Heartbeat(OutputFolder(str(out)), RunRecord(run_id="r1", state="running"), lease=dead)
    beat.lost = not dead.renew()
    with pytest.raises(StorageError, match="lost its lease"):
        beat.check_lease()


def test_wait_waits_for_the_holder_to_finish(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "WAIT_POLL_S", 0.1)
    folder = OutputFolder(str(tmp_path / "out"))
    first, second, said = Lease(folder, "r1"), Lease(folder, "r2"), []
    first.acquire()
    releasing = threading.Event()

    def release():
        releasing.set()  # set first: acquire cannot succeed before this, only after the release below
        first.release()

    threading.Timer(1.0, release).start()
    second.acquire(wait=True, log=said.append)
    assert releasing.is_set() and second.held()  # it waited for the holder, by order of events
    assert len(said) == 1 and "in use by run r1" in said[0]


def _race(out: str, run_id: str, start, finish, results) -> None:
    lease = Lease(OutputFolder(out), run_id)
    start.wait()
    try:
        lease.acquire()
        results.put((run_id, "won"))
    except OutputBusy:
        results.put((run_id, "refused"))
    # a winner stays alive until every racer has looked: a lease whose process is gone from this
    # host is a dead run's, and a late racer would rightly take it over
    finish.wait(60)


def _race_once(out: str, name: str) -> Counter:
    ctx = multiprocessing.get_context("spawn")
    start, finish, results = ctx.Event(), ctx.Event(), ctx.Queue()
    racers = [ctx.Process(target=_race, args=(out, f"{name}-{n}", start, finish, results)) for n in range(6)]
    for proc in racers:
        proc.start()
    time.sleep(1.0)  # all of them at the start line
    start.set()
    try:
        outcome = Counter(results.get(timeout=60)[1] for _ in racers)
    finally:
        finish.set()
        for proc in racers:
            proc.join(30)
    return outcome


@pytest.mark.parametrize("where", ["local", "s3"])
def test_of_runs_racing_for_a_free_folder_exactly_one_wins(where, tmp_path, request):
    out = str(tmp_path / "out") if where == "local" else (request.getfixturevalue("s3_bucket"), "s3://docs/out")[1]
    assert _race_once(out, "free") == {"won": 1, "refused": 5}


def test_of_runs_racing_for_a_dead_holders_folder_exactly_one_wins(tmp_path):
    out = tmp_path / "out"
    Lease(OutputFolder(str(out)), "dead").acquire()
    [stale] = (out / LEASE_DIR).glob("*.json")
    os.utime(stale, (time.time() - 600, time.time() - 600))
    assert _race_once(str(out), "takeover") == {"won": 1, "refused": 5}
    assert leases(out) == ["000000000002.json"]


# two real runs of the same command on the same output

def _inbox(tmp_path: Path, documents: int = 4) -> Path:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for n in range(documents):
        (inbox / f"d{n}.pdf").write_bytes(mupdf_pdf(2))
    return inbox


def _overlapping_runs(head, inbox: Path, out: str, tiny_model: Path, read_pages) -> None:
    """Both runs that do work are processes of their own on the session's cluster (`head`); a run in
    this process would start a Ray here that outlives the test (and the order of tests would matter)."""
    flags = ["--schema", "transcribe", "--model", str(tiny_model), "--max-new-tokens", "8", "--batch-size", "4",
             "--longest-edge", "256", "--max-page-pixels", str(256 * 256)]
    env = {**os.environ, "RAY_ADDRESS": head.gcs_address}  # with this test's AWS_* (the S3 case)

    def run(run_id: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([PAGERAY, "extract", str(inbox), "--out", out, "--run-id", run_id, *extra, *flags],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = run("first")
    folder = OutputFolder(out)
    assert wait_until(lambda: Lease(folder, "probe")._newest() is not None or first.poll() is not None, 120, 0.2)
    refused = CliRunner().invoke(app, ["extract", str(inbox), "--out", out, "--run-id", "second", *flags])
    assert refused.exit_code == 2, refused.output  # refused before any work: no Ray in this process
    assert "in use by run first" in refused.output and "--wait" in refused.output
    waited = run("third", "--wait")
    # communicate, not wait: a run's output left in a pipe nobody reads would block it once full
    for proc in (first, waited):
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
    records = {r["run_id"]: r for r in folder.runs()}
    assert set(records) == {"first", "third"}  # the refused run wrote nothing, not even a record
    assert records["third"]["plan"]["skipped"] == 4 and records["third"]["pages"] == 0
    rows = read_pages()
    assert len(rows) == len(set(rows)) == 8  # every page once
    assert sum(r["pages"] for r in records.values()) == len(rows)  # and computed once


@pytest.mark.slow
def test_two_runs_of_one_command_on_a_local_output(ray_head, tiny_model, tmp_path):
    out = tmp_path / "out"
    _overlapping_runs(ray_head, _inbox(tmp_path), str(out), tiny_model, lambda: duckdb.sql(
        f"select source_uri, page_index from read_parquet('{out}/data/*.parquet')").fetchall())
    assert leases(out) == []  # released


@pytest.mark.slow
def test_two_runs_of_one_command_on_an_s3_output(ray_head, s3_bucket, tiny_model, tmp_path):
    import pyarrow.dataset as pads

    def pages():
        folder = OutputFolder("s3://docs/out")
        table = pads.dataset([i.path for i in folder.part_files()], filesystem=folder.fs, format="parquet").to_table(
            columns=["source_uri", "page_index"])
        return list(zip(*(table.column(c).to_pylist() for c in table.column_names)))
    _overlapping_runs(ray_head, _inbox(tmp_path), "s3://docs/out", tiny_model, pages)
    keys = [o["Key"] for o in s3_bucket.list_objects_v2(Bucket="docs", Prefix=f"out/{LEASE_DIR}/").get("Contents", [])]
    assert not [k for k in keys if k.endswith(".json")]  # released (pyarrow may leave a folder marker)
    json.dumps(OutputFolder("s3://docs/out").runs())  # the records read back


def test_a_killed_driver_on_this_host_does_not_hold_the_folder_for_the_timeout(tmp_path):
    out = str(tmp_path / "out")
    code = ("import sys; from pageray.pipeline.ledger.folder import OutputFolder; from pageray.pipeline.ledger.lease import Lease; "
            f"Lease(OutputFolder({out!r}), 'killed').acquire(); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputBusy):  # alive: refused
        Lease(OutputFolder(out), "r2").acquire()
    holder.kill()
    holder.wait()
    after = Lease(OutputFolder(out), "r2")
    after.acquire()  # seconds after the kill, not the lease timeout
    assert after.generation == 2
