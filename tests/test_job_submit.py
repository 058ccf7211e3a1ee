"""`ray job submit` to a real Ray head (the session's, `ray start --head`: conftest's ray_head)
writes the same output as `pageray extract` joining the same cluster through RAY_ADDRESS."""
from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest
from cheap import SMALL_RENDER_FLAGS
from clusters import BIN, Cluster, cluster_env, copy_checkout, submit_job

pytestmark = pytest.mark.slow


def read(out: Path):
    return duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{out}/data/*.parquet') "
                      "order by all").fetchall()


def test_job_submit_succeeds_and_matches_pageray_extract(ray_head, samples, tiny_model, tmp_path):
    flags = [str(samples), "--schema", "invoice", "--model", str(tiny_model), "--max-new-tokens", "32",
             "--batch-size", "4", *SMALL_RENDER_FLAGS]
    job, status = submit_job(ray_head, [*flags, "--out", str(tmp_path / "job-out")])
    assert job.returncode == 0 and status == "SUCCEEDED", status + job.stdout[-3000:] + job.stderr[-3000:]
    local = subprocess.run([str(BIN / "pageray"), "extract", *flags, "--out", str(tmp_path / "local-out")],
                           env=ray_head.driver_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    assert read(tmp_path / "job-out") == read(tmp_path / "local-out")
    assert any(r[2] == "ok" for r in read(tmp_path / "job-out"))


def submit_from(cluster: Cluster, checkout: Path) -> subprocess.CompletedProcess:
    """The README's command, from the checkout; `--help` runs the job's entry point and its checks only."""
    return subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_address,
                           "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml", "--",
                           "python", "-m", "pageray.jobs.extract", "--help"],
                          cwd=checkout, env=cluster.env, capture_output=True, text=True, timeout=900)


@pytest.mark.cluster
def test_the_runtime_env_runs_the_submitted_checkout_and_never_an_older_install(tmp_path):
    """Ray pip-installs the checkout once per runtime env text and reuses it (ray-project/ray#41827):
    a job from an edited checkout is refused, and the tag on the pip line installs it anew. A cluster
    of its own, so no other test's job finds this one's install in Ray's cache."""
    checkout = copy_checkout(tmp_path / "pageray")
    # differs from the editable install of this venv, so only the runtime env's install passes the check
    marker = checkout / "pipeline" / "_submitted.py"
    marker.write_text("SUBMITTED = 1\n")
    with Cluster(cluster_env()) as cluster:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_job_server()

        first = submit_from(cluster, checkout)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "Usage: python -m pageray.jobs.extract" in first.stdout

        marker.write_text("SUBMITTED = 2\n")  # the user edits the code and submits again
        stale = submit_from(cluster, checkout)
        assert stale.returncode != 0
        assert "not the checkout it was submitted with" in stale.stdout and "pipeline/_submitted.py" in stale.stdout

        env_file = checkout / "jobs" / "runtime_env.yaml"
        text = env_file.read_text()
        assert "# install 1" in text
        env_file.write_text(text.replace("# install 1", "# install 2"))  # the fix the message names
        fresh = submit_from(cluster, checkout)
        assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
