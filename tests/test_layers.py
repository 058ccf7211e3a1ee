"""The layering of docs/ARCHITECTURE.md, and no import cycles, checked from the import graph by
import-linter (its contracts are in pyproject.toml, [tool.importlinter]) on every CI run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_graph_keeps_its_layers_and_has_no_cycles():
    result = lint(ROOT)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # the cycle the extractor and its multi-image path once had (a type-only import counts)
    ("extractors/multi_image.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from pageray.extractors.extractor import ExtractFields\n", "no import cycles"),
    # a render default read back from the config that composes it
    ("pipeline/render/limits.py", "from pageray.pipeline.config import default\n", "layers"),
])
def test_a_cycle_or_an_upward_import_breaks_the_check(tmp_path, module, line, broken):
    # A copy of the package, first on the path, with one import added: the check must fail on it.
    copy = tmp_path / "pageray"
    copy.mkdir()
    shutil.copy(ROOT / "__init__.py", copy / "__init__.py")
    for top in ("pipeline", "extractors", "schemas", "jobs"):
        shutil.copytree(ROOT / top, copy / top, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + "\n" + line)
    result = lint(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    print(result.stdout, result.stderr)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
