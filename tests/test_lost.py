"""Lost workers and lost storage mid-run: the run finishes on what is left, or stops with a message
that names the cause and says to resubmit; the resubmitted command completes every page once.

A node is lost by SIGKILL to its raylet (on the two-node cluster of tests/clusters.py, while the
node's extractor runs a batch). Storage is lost by cutting a TCP proxy between the pipeline and
moto's S3 server (new connections refused, open ones reset): a real network failure, and the
server keeps its data for the resubmit, which moto's in-memory server would not across a restart.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from cheap import SMALL_RENDER_FLAGS
from clusters import BIN, Cluster, actor_titles, busy_actor, cluster_env, free_port, raylet_of
from pageray.pipeline.errors import LostWorkers, StorageError
from pageray.pipeline.driver.stopped import stopped_by
from processes import wait_until

FLAGS = ["--schema", "invoice", "--max-new-tokens", "8", "--batch-size", "2", *SMALL_RENDER_FLAGS]
# A dead raylet refuses the GCS's health checks at once: 3 refusals 1 s apart mark its node dead in
# seconds instead of the minute cluster_env's slack costs. That slack is for a starved but live
# raylet, whose checks each time out after 30 s: three in a row is still 90 s of silence.
FAST_NODE_DEATH = {"RAY_health_check_failure_threshold": "3", "RAY_health_check_period_ms": "1000"}
BUCKET = "pageray-lost"


def expected_pages(folder: Path) -> set[tuple[str, int]]:
    """(file name relative to `folder`, page) the pipeline must write: a row per page, one row for a
    document that cannot be opened or has no pages."""
    import pymupdf

    pages = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with pymupdf.open(path) as doc:
                count = 0 if doc.needs_pass else doc.page_count
        except Exception:  # noqa: BLE001 - any unopenable file is one error row
            count = 0
        pages |= {(str(path.relative_to(folder)), page) for page in range(max(count, 1))}
    return pages


def rows_of(parquet_glob: str) -> list[tuple]:
    return duckdb.sql(f"select source_uri, page_index, status, run_id from read_parquet('{parquet_glob}')").fetchall()


def pages_once(rows: list[tuple], strip: str) -> set[tuple[str, int]]:
    """The (relative name, page) of the rows, asserting that none is there twice."""
    seen = Counter((uri.removeprefix(strip), page) for uri, page, *_ in rows)
    assert [k for k, n in seen.items() if n > 1] == [], "pages written twice"
    return set(seen)


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as fh:  # a file, not a pipe: Ray's log lines could fill a pipe and block the run
        return subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=fh, stderr=subprocess.STDOUT, text=True)


# What stops a run, decided without Ray

class RayTaskError(Exception):
    """Stands for Ray's error of a failed task (by name, as pipeline.errors tells Ray's wrappers)."""


def test_unreachable_storage_is_named_with_the_resubmit():
    remote = ("ray::MapWorker(MapBatches(CommitPages)).submit() (pid=1, ip=10.0.0.2)\n  File \"x\", line 1\n"
              "OSError: When uploading part: AWS Error NETWORK_CONNECTION: Could not connect to server\n\n"
              "The above exception was the direct cause of the following exception:\n\n"
              "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    stopped = stopped_by(RayTaskError(remote), "s3://b/out", "OSError: connection refused", {})
    assert isinstance(stopped, StorageError)
    assert str(stopped).startswith("storage s3://b/out did not answer (OSError: connection refused), so the run "
                                   "stopped (it failed with OSError: When uploading part: AWS Error NETWORK_CONNECTION")
    assert "resubmit the same command once the storage is back" in str(stopped)


def test_a_lost_node_or_worker_is_named_with_the_resubmit():
    # Ray's error for a task of a dead node's actor, as the driver gets it (the text of a remote traceback)
    remote = ("Failed to deserialize exception.\nOriginal exception:\nray.exceptions.RayTaskError: ray::ListFiles()\n"
              "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.\n"
              "\tclass_name: FooterReader")
    stopped = stopped_by(RuntimeError(remote), "out", None, {"5ffe479ca88dba0e5862c39632": "10.0.0.2"})
    assert isinstance(stopped, LostWorkers)
    assert str(stopped) == ("Ray lost node 10.0.0.2 (id 5ffe479ca88d) mid-run, and Ray could not finish its work on "
                            "the nodes left (ActorDiedError: The actor died unexpectedly before finishing this task). "
                            "Every page committed so far is kept: resubmit the same command to finish the rest (the "
                            "next run does only what is missing)")
    assert str(stopped_by(RuntimeError(remote), "out", None, {})).startswith("a Ray worker died mid-run")
    assert stopped_by(ValueError("a bug"), "out", None, {}) is None  # anything else goes up as it is


# A node dies

@pytest.mark.slow
@pytest.mark.cluster
def test_a_dead_worker_node_is_finished_on_the_head_or_named_for_a_resubmit(samples, tiny_model, tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "out"
    for i in range(4):  # 40 pages: most of them are left when the worker dies
        shutil.copytree(samples, docs / f"copy{i}")
    cmd = [str(BIN / "pageray"), "extract", str(docs), *FLAGS, "--model", str(tiny_model), "--out", str(out)]
    with Cluster(cluster_env(**FAST_NODE_DEATH)) as cluster:
        t0 = time.monotonic()
        head = cluster.start_head(num_cpus=2, num_gpus=1, dashboard=False)
        cluster.wait_for_nodes(1)
        worker = cluster.start_worker(num_cpus=2, num_gpus=1)
        cluster.wait_for_nodes(2)
        env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address}
        print(f"two nodes up in {time.monotonic() - t0:.0f} s")

        # Mid-run: once a batch is being extracted. Which node's extractor gets batches first is
        # Ray Data's choice (the first one ready takes several), so either may be the busy one; the
        # worker node holds an extractor and render actors of the run either way.
        t0 = time.monotonic()
        run = start(cmd, env, tmp_path / "run1.log")
        assert wait_until(lambda: run.poll() is not None or any(busy_actor(n, "ExtractFields") for n in (head, worker)),
                          300, every_s=0.2)
        assert run.poll() is None, "the run ended before its first batch was seen\n" + \
            (tmp_path / "run1.log").read_text()[-3000:]
        busy = [name for name, n in (("head", head), ("worker", worker)) if busy_actor(n, "ExtractFields")]
        titles = sorted(actor_titles(worker))
        raylet = raylet_of(worker)
        assert raylet is not None
        os.kill(raylet, signal.SIGKILL)
        print(f"worker's raylet killed {time.monotonic() - t0:.0f} s into the run; extracting on {busy}; the "
              f"worker's actors: {titles}")
        rc = run.wait(300)
        log = (tmp_path / "run1.log").read_text()
        print(f"the run ended {time.monotonic() - t0:.0f} s in, rc {rc}")
        if rc == 0:  # Ray redid the dead node's batches on the head: the run says so
            assert "Ray lost node" in log and "redid its unfinished batches on the nodes left" in log, log[-3000:]
            assert pages_once(rows_of(f"{out}/data/*.parquet"), f"{docs}/") == expected_pages(docs)
        else:  # Ray gave up: the run says what happened and what to do (2: a FatalError, not a crash)
            assert rc == 2, log[-3000:]
            assert "pageray: Ray lost node" in log and "resubmit the same command to finish the rest" in log, \
                log[-3000:]

        # The same command again: only what is missing is done, on the head alone
        t0 = time.monotonic()
        again = start(cmd, env, tmp_path / "run2.log")
        assert again.wait(300) == 0, (tmp_path / "run2.log").read_text()[-3000:] + ray_head.logs()
        print(f"resubmit: {time.monotonic() - t0:.0f} s")

    rows = rows_of(f"{out}/data/*.parquet")
    assert pages_once(rows, f"{docs}/") == expected_pages(docs)
    assert all(status not in ("model_error", "read_error") for _, _, status, _ in rows)
    records = {r["run_id"]: r for r in (json.loads(p.read_text()) for p in (out / "_runs").glob("*.json"))}
    by_run = Counter(run_id for *_, run_id in rows)
    assert set(by_run) <= set(records)
    last = max(records.values(), key=lambda r: r["started_at"])
    assert last["state"] == "succeeded" and last["pages"] == by_run.get(last["run_id"], 0)
    if rc == 0:
        assert last["pages"] == 0  # nothing was left to do


# Storage goes away

class Outage:
    """A TCP proxy on 127.0.0.1 in front of a server: cut() is the server going away (new
    connections refused, open ones reset), restore() is it coming back, on the same port."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for s in sockets:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # close = reset
                s.close()
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                if self._listener is not listener:
                    return
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._sockets -= {src, dst}


@pytest.fixture()
def s3_behind_proxy(samples):
    """moto's S3 server with the samples under s3://BUCKET/in/copyN/, and a proxy in front of it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        direct = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        direct.create_bucket(Bucket=BUCKET)
        for i in range(3):
            for p in sorted(samples.iterdir()):
                direct.upload_file(str(p), BUCKET, f"in/copy{i}/{p.name}")
        yield direct, Outage(port)
    finally:
        server.stop()


def keys(client, prefix: str) -> list[str]:
    return [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", []) if not o["Key"].endswith("/")]


@pytest.mark.slow
def test_lost_storage_stops_the_run_and_a_resubmit_finishes_it(ray_head, s3_behind_proxy, samples, tiny_model,
                                                               tmp_path):
    s3, proxy = s3_behind_proxy
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": proxy.endpoint}
    out = f"s3://{BUCKET}/out"
    cmd = [str(BIN / "pageray"), "extract", f"s3://{BUCKET}/in/", *FLAGS, "--model", str(tiny_model), "--out", out]
    # the session's cluster: the driver hands the AWS_* variables to its workers (its runtime env)
    env = ray_head.driver_env(**aws)
    runs: list[subprocess.Popen] = []  # ended whatever happens: the session's cluster outlives this test
    try:
        t0 = time.monotonic()
        run = start(cmd, env, tmp_path / "run1.log")
        runs.append(run)
        assert wait_until(lambda: run.poll() is not None or keys(s3, "out/data/"), 300, every_s=0.2)
        assert run.poll() is None, "the run ended before the cut\n" + (tmp_path / "run1.log").read_text()[-3000:]
        committed = keys(s3, "out/data/")
        proxy.cut()
        cut = time.monotonic()
        print(f"storage cut {cut - t0:.0f} s into the run, {len(committed)} part file(s) committed")
        rc = run.wait(180)  # it stops: the S3 client's timeouts and retries are bounded
        log = (tmp_path / "run1.log").read_text()
        print(f"the run stopped {time.monotonic() - cut:.0f} s after the cut, rc {rc}")
        assert rc == 2, log[-3000:]  # a FatalError's exit, not a crash's (1)
        assert f"pageray: storage {out} did not answer" in log, log[-3000:]
        assert "resubmit the same command once the storage is back" in log, log[-3000:]

        proxy.restore()
        t0 = time.monotonic()
        again = start(cmd, env, tmp_path / "run2.log")
        runs.append(again)
        assert again.wait(300) == 0, (tmp_path / "run2.log").read_text()[-3000:] + ray_head.logs()
        print(f"resubmit: {time.monotonic() - t0:.0f} s")
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()

    local = tmp_path / "out"
    local.mkdir()
    for k in keys(s3, "out/data/"):
        if k.endswith(".parquet"):
            s3.download_file(BUCKET, k, str(local / Path(k).name))
    rows = rows_of(f"{local}/*.parquet")
    inputs = tmp_path / "inputs"  # the same files as the bucket's in/, for the pages they must give
    for i in range(3):
        shutil.copytree(samples, inputs / f"copy{i}")
    assert pages_once(rows, f"s3://{BUCKET}/in/") == expected_pages(inputs)
    assert all(status not in ("model_error", "read_error") for _, _, status, _ in rows)
    records = [json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())
               for k in keys(s3, "out/_runs/") if k.count("/") == 2 and k.endswith(".json")]
    last = max(records, key=lambda r: r["started_at"])
    assert last["state"] == "succeeded"
    assert last["pages"] == sum(1 for *_, run_id in rows if run_id == last["run_id"])
    assert last["plan"]["skipped"] + last["plan"]["resumed"] >= 1  # what was committed before the cut stayed
