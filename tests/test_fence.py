"""A paused or cut-off holder of an output folder is fenced (pipeline.ledger.lease): lease numbers
are never given out twice, a holder is known by its token, and once another run took the folder
over, nothing the stale holder still writes lands: not a commit from a Ray worker, not a merge.
Locally and on the S3 test server; and a real `pageray extract` SIGSTOPped past its lease timeout."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pytest

from cheap import SMALL_RENDER_FLAGS
from corpus import mupdf_pdf
from outputs import SCHEMA, SCOPE, T0, rows
from processes import wait_until
from pageray.pipeline.datamodel import rows_to_table
from pageray.pipeline.errors import LeaseLost, OutputBusy
from pageray.pipeline.ledger.commit import CommitPages
from pageray.pipeline.ledger.folder import LEASE_DIR, OutputFolder
from pageray.pipeline.ledger.lease import Lease
from pageray.pipeline.ledger.merge import merge_small_files
from pageray.pipeline.driver.stopped import stopped_by

PAGERAY = str(Path(sys.executable).parent / "pageray")
SHORT = 1.0  # a lease timeout the tests wait out for real


def _out(where: str, tmp_path: Path, request) -> str:
    if where == "s3":
        request.getfixturevalue("s3_bucket")
        return "s3://docs/out"
    return str(tmp_path / "out")


def _stale(lease: Lease) -> None:
    """Let `lease` go unrenewed past its timeout, as a paused driver's does (S3 keeps its own times)."""
    time.sleep(lease.timeout_s + 1.0)


def _batch(doc: str, pages: list[int]):
    return rows_to_table([{"run_id": "stale", "schema_id": SCOPE.schema_id, "model_id": SCOPE.model_id,
                           "doc_id": doc, "source_uri": f"/in/{doc}.pdf", "doc_sha256": doc, "doc_size": 1,
                           "doc_mtime_ns": 1, "page_index": p, "page_count": len(pages), "status": "ok",
                           "created_at": T0} for p in pages], SCHEMA)


def _part_files(out: str) -> list[str]:
    return [i.base_name for i in OutputFolder(out).part_files()]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_lease_number_is_never_given_out_twice(where, tmp_path, request):
    out = _out(where, tmp_path, request)
    paused = Lease(OutputFolder(out), "paused", timeout_s=SHORT)
    paused.acquire()
    _stale(paused)
    compaction = Lease(OutputFolder(out), "compact", timeout_s=SHORT)  # `pageray compact` takes the folder over
    compaction.acquire()
    taken = compaction.generation
    compaction.release()  # and gives it back
    rightful = Lease(OutputFolder(out), "rightful")
    rightful.acquire()
    assert (paused.generation, taken, rightful.generation) == (1, 2, 3)
    # the paused holder wakes up: the lease is not its own, and giving it back leaves the new holder's alone
    assert not paused.held() and not paused.renew()
    paused.release()
    assert rightful.held() and rightful.renew()
    with pytest.raises(OutputBusy, match="in use by run rightful"):
        Lease(OutputFolder(out), "second-compact").acquire()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_holder_is_known_by_its_token_not_only_its_number(where, tmp_path, request):
    """If the lease folder is wiped (a hand clean-up, a lifecycle rule), a new run gets number 1
    again; the old holder must still not take that lease for its own."""
    out = _out(where, tmp_path, request)
    old = Lease(OutputFolder(out), "old")
    old.acquire()
    folder = OutputFolder(out)
    folder.fs.delete_dir_contents(f"{folder.path}/{LEASE_DIR}", missing_dir_ok=True)
    new = Lease(OutputFolder(out), "new")
    new.acquire()
    assert new.generation == old.generation == 1
    assert not old.held() and not old.renew()
    with pytest.raises(LeaseLost, match="run old lost its lease"):
        old.fence()()
    old.release()
    assert new.held()
    new.fence()()  # the rightful holder's writes go on


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_commit_after_a_takeover_writes_nothing(where, tmp_path, request):
    out = _out(where, tmp_path, request)
    stale = Lease(OutputFolder(out), "stale", timeout_s=SHORT)
    stale.acquire()
    # as Ray ships it to the commit actor
    commit = CommitPages(out, "stale", SCHEMA, fence=pickle.loads(pickle.dumps(stale.fence())))
    commit(_batch("a", [0, 1]))  # committed while the lease was its own
    before = _part_files(out)
    assert len(before) == 1
    _stale(stale)
    Lease(OutputFolder(out), "new").acquire()
    with pytest.raises(LeaseLost, match="lost its lease"):
        commit(_batch("b", [0, 1]))  # a block that was already on its way
    assert _part_files(out) == before
    if where == "local":  # not even a temporary file is left
        assert sorted(os.listdir(Path(out) / "data")) == before


def test_a_stale_holders_merge_changes_no_file(tmp_path):
    out = tmp_path / "out"
    for doc in "abcd":
        OutputFolder(str(out)).write_part("r1", _batch(doc, [0]))
    before = rows(out)
    stale = Lease(OutputFolder(str(out)), "stale", timeout_s=SHORT)
    stale.acquire()
    fenced = OutputFolder(str(out), fence=stale.fence())
    _stale(stale)
    Lease(OutputFolder(str(out)), "new").acquire()
    with pytest.raises(LeaseLost):
        merge_small_files(fenced, "stale")
    assert rows(out) == before and len(_part_files(str(out))) == 4
    assert not [p for p in os.listdir(out / "data") if p.startswith(".")]


def test_pageray_compact_declares_its_lease_timeout(tmp_path):
    out = tmp_path / "out"
    for doc in "ab":
        OutputFolder(str(out)).write_part("r1", _batch(doc, [0]))
    OutputFolder(str(out)).write_manifest({"schema_id": SCOPE.schema_id, "model": SCOPE.model_id})
    done = subprocess.run([PAGERAY, "compact", str(out), "--lease-timeout", "7"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    [released] = (out / LEASE_DIR).iterdir()
    assert released.name == "000000000001.released" and json.loads(released.read_text())["timeout_s"] == 7
    refused = subprocess.run([PAGERAY, "compact", str(out), "--lease-timeout", "0"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--lease-timeout" in refused.stderr


class RayTaskError(Exception):
    """Stands for Ray's error of a failed task (pipeline.stopped reads Ray's wrappers by name)."""


def test_a_fenced_commit_on_a_worker_stops_the_run_as_a_lost_lease():
    remote = ("ray::MapWorker(MapBatches(CommitPages)).submit() (pid=1, ip=10.0.0.2)\n"
              '  File "/x/pipeline/ledger/lease.py", line 101, in __call__\n'
              "pageray.pipeline.errors.LeaseLost: run stale lost its lease on /o (it was paused)\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    stopped = stopped_by(RayTaskError(remote), "/o", None, {})
    assert isinstance(stopped, LeaseLost) and str(stopped) == "run stale lost its lease on /o (it was paused)"


# a real driver, paused past its lease timeout while a second run takes the folder over

def _extract(ray_head, inbox: Path, out: Path, run_id: str, tiny_model: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([PAGERAY, "extract", str(inbox), "--out", str(out), "--run-id", run_id,
                             "--schema", "transcribe", "--model", str(tiny_model), "--max-new-tokens", "8",
                             "--lease-timeout", "3", *SMALL_RENDER_FLAGS, *extra],
                            env=ray_head.driver_env(), cwd=inbox.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_paused_driver_is_taken_over_and_writes_nothing_when_it_wakes(ray_head, tiny_model, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for n, pages in enumerate((1, 2)):
        (inbox / f"d{n}.pdf").write_bytes(mupdf_pdf(pages))
    stale = _extract(ray_head, inbox, out, "stale", tiny_model)
    folder = OutputFolder(str(out))

    def planned() -> bool:  # it holds the lease and has its plan: from here on it would commit pages
        record = next((r for r in folder.runs() if r["run_id"] == "stale"), {})
        return record.get("state") == "running" or stale.poll() is not None
    assert wait_until(planned, 180, 0.1)
    os.kill(stale.pid, signal.SIGSTOP)
    try:
        assert stale.poll() is None, stale.stdout.read()
        taker = _extract(ray_head, inbox, out, "taker", tiny_model, "--wait")  # takes over once the lease is 3 s old
        taker_output = taker.communicate(timeout=300)[0]
        assert taker.returncode == 0, taker_output
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    stale_output = stale.communicate(timeout=300)[0]
    assert stale.returncode != 0 and "pageray: run stale lost its lease" in stale_output, stale_output
    pages = duckdb.sql(f"select source_uri, page_index, run_id from read_parquet('{out}/data/*.parquet')").fetchall()
    assert sorted((uri, page) for uri, page, _ in pages) == [
        (str(inbox / "d0.pdf"), 0), (str(inbox / "d1.pdf"), 0), (str(inbox / "d1.pdf"), 1)]  # each page once
    assert {run for _, _, run in pages} == {"taker"}  # the stale run had committed nothing before its pause
    records = {r["run_id"]: r for r in folder.runs()}
    assert records["stale"]["state"] == "failed" and records["taker"]["state"] == "succeeded"
    assert not [p for p in (out / LEASE_DIR).iterdir() if p.suffix == ".json"]  # the taker gave it back; the stale
    # run took nothing with it
