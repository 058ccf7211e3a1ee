"""pageray installs and imports under one name, so a user's own `pipeline.py` or `schemas/` never
shadows it: not in the driver, not on a Ray worker that unpickles a task. That is run end to end by
tests/test_readme.py: the README's commands, the CLI's and the API's, run from a folder that holds
its own pipeline.py, schemas/, extractors.py and jobs.py, each of which fails if imported
(`user_project`)."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_with_an_init_is_an_installed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"pageray"} | {
        "pageray." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "extractors", "schemas", "jobs") for init in (ROOT / top).rglob("__init__.py")}
    assert listed == found
