"""pageray installs and imports under one name, so a user's own `pipeline.py` or `schemas/` never
shadows it: not in the driver, not on a Ray worker that unpickles a task."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cheap import SMALL_RENDER_FLAGS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHADOWS = "raise ImportError('the user\\'s own {} was imported instead of pageray\\'s')\n"


def test_every_folder_with_an_init_is_an_installed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"pageray"} | {
        "pageray." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "extractors", "schemas", "jobs") for init in (ROOT / top).rglob("__init__.py")}
    assert listed == found


def _user_project(tmp_path: Path) -> Path:
    """A data engineer's project folder: its own pipeline.py and schemas package, both of which
    fail loudly if anything imports them."""
    project = tmp_path / "userproj"
    (project / "schemas").mkdir(parents=True)
    (project / "pipeline.py").write_text(SHADOWS.format("pipeline.py"))
    (project / "schemas" / "__init__.py").write_text(SHADOWS.format("schemas/"))
    (project / "extractors.py").write_text(SHADOWS.format("extractors.py"))
    (project / "jobs.py").write_text(SHADOWS.format("jobs.py"))
    return project


@pytest.mark.slow
def test_api_and_cli_run_from_a_folder_with_its_own_pipeline_and_schemas(ray_head, samples, tiny_model, tmp_path):
    project = _user_project(tmp_path)
    # Both drivers join the session's cluster (no Ray bring-up each): Ray puts a driver's working
    # folder on its own job's workers' path whichever cluster it joins, so the workers still unpickle
    # their tasks with the user's folder first on the path.
    env = ray_head.driver_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cheap = ["--max-new-tokens", "8", "--batch-size", "2", *SMALL_RENDER_FLAGS]
    inbox = samples / "invoice.pdf"

    cli = subprocess.run([str(BIN / "pageray"), "extract", str(inbox), "--schema", "invoice",
                          "--out", str(tmp_path / "cli"), "--model", str(tiny_model), *cheap],
                         cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert pq.read_table(tmp_path / "cli" / "data").num_rows >= 1

    code = ("import sys; from pageray import extract, read; "
            f"extract([{str(inbox)!r}], schema='invoice', out={str(tmp_path / 'api')!r}, "
            f"model={str(tiny_model)!r}, max_new_tokens=8, batch_size=2, longest_edge_px=490, "
            "max_page_pixels=490*490); print('rows', read(sys.argv[1]).count_rows())")
    api = subprocess.run([sys.executable, "-c", code, str(tmp_path / "api")], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600)
    assert api.returncode == 0, api.stdout[-3000:] + api.stderr[-3000:]
    assert "rows " in api.stdout and int(api.stdout.rsplit("rows ", 1)[1].split()[0]) >= 1
