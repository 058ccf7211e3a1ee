"""Is the pageray a job imports the checkout it was submitted from?

`ray job submit --working-dir .` uploads a checkout, but the job imports pageray from the node's
Python: the version installed there, or the one jobs/runtime_env.yaml pip-installed from an
earlier submission (Ray keeps that install while the runtime env's text is unchanged,
ray-project/ray#41827). Either can be older than the checkout, and the job would run old code
without a word. So when the job's working dir is a pageray checkout, its package files are
compared with the imported ones before any work.
"""
from __future__ import annotations

import re
from pathlib import Path

# What an install of pageray holds besides the modules: the package data of pyproject.toml.
_SUFFIXES = (".py", ".json", ".yaml")
_NAME = re.compile(r'^name\s*=\s*"pageray"\s*$', re.MULTILINE)


def is_checkout(folder: Path) -> bool:
    """A folder holding pageray's own pyproject.toml (the package is the folder itself)."""
    try:
        text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    # a line match, not a TOML parser: tomllib is Python 3.11+, and pageray supports 3.10
    return bool(_NAME.search(text)) and (folder / "__init__.py").is_file()


def _package_files(root: Path, tops: list[str]) -> dict[str, Path]:
    files = {}
    for top in tops:
        path = root / top
        candidates = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        for file in candidates:
            if file.is_file() and file.suffix in _SUFFIXES and "__pycache__" not in file.parts:
                files[file.relative_to(root).as_posix()] = file
    return files


def differing_files(installed: Path, checkout: Path) -> list[str]:
    """Package files (relative paths) that differ between the installed package folder and a
    checkout, or are in one only; only the install's modules and subpackages are compared
    (a checkout's tests/ and benchmarks/ are not installed)."""
    # the package's own modules and subpackages (an editable install's folder is a whole checkout)
    tops = sorted(p.name for p in installed.iterdir()
                  if (p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file())
    ours, theirs = _package_files(installed, tops), _package_files(checkout, tops)
    return sorted(name for name in ours.keys() | theirs.keys()
                  if name not in ours or name not in theirs or ours[name].read_bytes() != theirs[name].read_bytes())


def stale_install_message(installed: Path, checkout: Path) -> str | None:
    """None when the job runs the submitted checkout's code; else what differs and how to fix it."""
    if not is_checkout(checkout) or installed.resolve() == checkout.resolve():
        return None
    differ = differing_files(installed, checkout)
    if not differ:
        return None
    shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
    return (f"this job imports pageray from {installed}, which is not the checkout it was submitted with "
            f"(differing: {shown}), so it would run other code. Ray reuses a runtime env's pip "
            "install while the runtime env's text is unchanged (ray-project/ray#41827): edit the tag after ' #' "
            "on the pip line of jobs/runtime_env.yaml (any new text) and submit again; without a runtime env, "
            "install this checkout's pageray on every node")
