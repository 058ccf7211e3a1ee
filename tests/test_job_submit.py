"""`ray job submit` to a real local Ray head writes the same output as `pageray extract`."""
from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest
from cheap import SMALL_RENDER_FLAGS
from clusters import BIN, Cluster, cluster_env, submit_job

pytestmark = pytest.mark.slow


@pytest.fixture()
def ray_head():
    """A Ray head on 127.0.0.1 started with `ray start --head` (tests/clusters.py)."""
    with Cluster(cluster_env()) as cluster:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_job_server()
        yield cluster


def read(out: Path):
    return duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{out}/data/*.parquet') "
                      "order by all").fetchall()


def test_job_submit_succeeds_and_matches_pageray_extract(ray_head, samples, tiny_model, tmp_path):
    flags = [str(samples), "--schema", "invoice", "--model", str(tiny_model), "--max-new-tokens", "32",
             "--batch-size", "4", *SMALL_RENDER_FLAGS]
    job, status = submit_job(ray_head, [*flags, "--out", str(tmp_path / "job-out")])
    assert job.returncode == 0 and status == "SUCCEEDED", status + job.stdout[-3000:] + job.stderr[-3000:]
    local_env = {k: v for k, v in ray_head.env.items() if k != "RAY_ADDRESS"}
    local = subprocess.run([str(BIN / "pageray"), "extract", *flags, "--out", str(tmp_path / "local-out")],
                           env=local_env,
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    assert read(tmp_path / "job-out") == read(tmp_path / "local-out")
    assert any(r[2] == "ok" for r in read(tmp_path / "job-out"))
