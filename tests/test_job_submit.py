"""`ray job submit` from a pageray checkout with the README's runtime env, to the session's Ray head
(`ray start --head`: conftest's ray_head). That a submitted job writes the same output as `pageray
extract` joining the same cluster through RAY_ADDRESS is checked on test_pydantic_e2e's runs, which
run the same flags both ways."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clusters import BIN, Cluster, copy_checkout

pytestmark = pytest.mark.slow


def submit_from(cluster: Cluster, checkout: Path) -> subprocess.CompletedProcess:
    """The README's command, from the checkout; `--help` runs the job's entry point and its checks only."""
    return subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_address,
                           "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml", "--",
                           "python", "-m", "pageray.jobs.extract", "--help"],
                          cwd=checkout, env=cluster.env, capture_output=True, text=True, timeout=900)


def test_the_runtime_env_runs_the_submitted_checkout_and_never_an_older_install(ray_head, tmp_path):
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

    first = submit_from(ray_head, checkout)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Usage: python -m pageray.jobs.extract" in first.stdout

    marker.write_text("SUBMITTED = 2\n")  # the user edits the code and submits again
    stale = submit_from(ray_head, checkout)
    assert stale.returncode != 0
    assert "not the checkout it was submitted with" in stale.stdout and "pipeline/_submitted.py" in stale.stdout

    text = env_file.read_text()
    assert "# install 1" + own in text
    env_file.write_text(text.replace("# install 1", "# install 2"))  # the fix the message names
    fresh = submit_from(ray_head, checkout)
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
