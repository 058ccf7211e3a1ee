"""`ray job submit` from a pageray checkout with the README's runtime env, to the session's Ray head
(`ray start --head`: conftest's ray_head). The README's own command (its block marked `run by
tests/test_job_submit.py`) runs here as written, paths substituted as tests/test_readme.py does,
because what follows needs its install: the checkout is edited and submitted again. That a
submitted job writes the same output as `pageray extract` joining the same cluster through
RAY_ADDRESS is checked on test_pydantic_e2e's runs, which run the same flags both ways."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from clusters import BIN, REPO, Cluster, copy_checkout, until_agent_ready
from readme_blocks import readme_blocks, shell_commands, substitute

pytestmark = pytest.mark.slow
HERE = "tests/test_job_submit.py"


def readme_command() -> str:
    """The README's runtime-env job command: the one command of the blocks it marks `run by` this file."""
    blocks = [b for b in readme_blocks((REPO / "README.md").read_text(encoding="utf-8")) if b.run_by == HERE]
    commands = [c for b in blocks for c in shell_commands(b.text)]
    assert len(commands) == 1 and "--runtime-env jobs/runtime_env.yaml" in commands[0], commands
    return commands[0]


def run_as_written(command: str, checkout: Path, cluster: Cluster) -> subprocess.CompletedProcess:
    """The README's command, from the checkout, in bash as a user types it."""
    return until_agent_ready(lambda: subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=checkout,
        env={**cluster.env, "PATH": f"{BIN}:{cluster.env.get('PATH', '')}"}, capture_output=True, text=True,
        timeout=900))


def submit_from(cluster: Cluster, checkout: Path) -> subprocess.CompletedProcess:
    """The README's command, from the checkout; `--help` runs the job's entry point and its checks only."""
    return subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_address,
                           "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml", "--",
                           "python", "-m", "pageray.jobs.extract", "--help"],
                          cwd=checkout, env=cluster.env, capture_output=True, text=True, timeout=900)


def test_the_runtime_env_runs_the_submitted_checkout_and_never_an_older_install(ray_head, samples, tiny_model,
                                                                                  tmp_path):
    """Ray pip-installs the checkout once per runtime env text and reuses it (ray-project/ray#41827):
    a job from an edited checkout is refused, and the tag on the pip line installs it anew. On the
    session's cluster, with a pip line no other test submits (a tag of this test's own, after the
    shipped one), so no other job's install in Ray's cache is found for this one's, nor this one's
    for another's."""
    checkout = copy_checkout(tmp_path / "pageray")
    # differs from the editable install of this venv, so only the runtime env's install passes the check
    marker = checkout / "pipeline" / "_submitted.py"
    marker.write_text("SUBMITTED = 1\n")
    env_file = checkout / "jobs" / "runtime_env.yaml"
    text = env_file.read_text()
    assert "# install 1\"" in text
    own = f" {tmp_path.name}\""  # this test's own pip line; the tag the user changes stays first
    env_file.write_text(text.replace("# install 1\"", "# install 1" + own))

    pdfs, out = tmp_path / "pdfs", tmp_path / "job-out"
    pdfs.mkdir()
    shutil.copy(samples / "invoice.pdf", pdfs)
    command = substitute(readme_command(), {"/shared/pdfs": str(pdfs), "s3://bucket/out": str(out),
                                            "/models/idefics2-8b": str(tiny_model),
                                            "http://head:8265": ray_head.dashboard_address})
    first = run_as_written(command, checkout, ray_head)
    assert first.returncode == 0, f"README command failed: {command}\n" + first.stdout[-3000:] + first.stderr[-3000:]
    assert ("ok",) in duckdb.sql(f"select status from read_parquet('{out}/data/*.parquet')").fetchall()

    marker.write_text("SUBMITTED = 2\n")  # the user edits the code and submits again
    stale = submit_from(ray_head, checkout)
    assert stale.returncode != 0
    assert "not the checkout it was submitted with" in stale.stdout and "pipeline/_submitted.py" in stale.stdout

    text = env_file.read_text()
    assert "# install 1" + own in text
    env_file.write_text(text.replace("# install 1", "# install 2"))  # the fix the message names
    fresh = submit_from(ray_head, checkout)
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
