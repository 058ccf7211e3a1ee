"""`ray job submit` to a real local Ray head writes the same output as `pageray extract`."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest
from clusters import BIN, REPO, free_port

pytestmark = pytest.mark.slow


@pytest.fixture()
def ray_head():
    """A Ray head on 127.0.0.1 in its own temp dir; stopped by ending its --block process.

    Ray's dashboard requires token authentication, so the test makes a token for its cluster.
    The temp dir is short because Ray's unix socket paths must stay under 108 bytes.
    """
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", "--include-dashboard=true",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        ok = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                            capture_output=True).returncode == 0
        if ok:
            break
        time.sleep(2)
    else:
        proc.kill()
        pytest.fail("Ray head did not come up")
    yield address, env
    os.killpg(proc.pid, 15)
    proc.wait(60)
    shutil.rmtree(temp_dir, ignore_errors=True)


def read(out: Path):
    return duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{out}/data/*.parquet') "
                      "order by all").fetchall()


def test_job_submit_succeeds_and_matches_pageray_extract(ray_head, samples, tiny_model, tmp_path):
    address, env = ray_head
    flags = [str(samples), "--schema", "invoice", "--model", str(tiny_model), "--max-new-tokens", "32",
             "--batch-size", "4"]
    job = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO),
         "--", "python", "-m", "jobs.extract", *flags, "--out", str(tmp_path / "job-out")],
        env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    job_id = re.search(r"raysubmit_\w+", job.stdout + job.stderr).group(0)
    status = subprocess.run([sys.executable, "-c", "from ray.job_submission import JobSubmissionClient as C; "
                             f"print(C({address!r}).get_job_status({job_id!r}).value)"],
                            env=env, capture_output=True, text=True)
    assert status.stdout.strip() == "SUCCEEDED", status.stderr[-2000:]
    local_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    local = subprocess.run([str(BIN / "pageray"), "extract", *flags, "--out", str(tmp_path / "local-out")],
                           env=local_env,
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    assert read(tmp_path / "job-out") == read(tmp_path / "local-out")
    assert any(r[2] == "ok" for r in read(tmp_path / "job-out"))
