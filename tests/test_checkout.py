"""jobs/checkout.py: a job refuses a pageray that is not the checkout it was submitted with."""
from __future__ import annotations

import shutil
from pathlib import Path

import pageray
from clusters import copy_checkout
from pageray.jobs.checkout import differing_files, is_checkout, stale_install_message

INSTALLED = Path(pageray.__file__).parent


def installed_copy(checkout: Path, target: Path) -> Path:
    """What `pip install <checkout>` puts in site-packages/pageray: the package's modules and data only."""
    target.mkdir()
    shutil.copy(checkout / "__init__.py", target)
    for package in ("pipeline", "extractors", "schemas", "jobs"):
        shutil.copytree(checkout / package, target / package)
    return target


def test_an_install_of_the_same_checkout_passes_and_tests_or_caches_do_not_count(tmp_path):
    checkout = copy_checkout(tmp_path / "pageray")
    installed = installed_copy(checkout, tmp_path / "site-packages-pageray")
    (checkout / "tests" / "test_new.py").write_text("x = 1\n")  # not installed, not compared
    (installed / "pipeline" / "__pycache__").mkdir(exist_ok=True)
    (installed / "pipeline" / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"\0")
    assert is_checkout(checkout)
    assert stale_install_message(installed, checkout) is None


def test_an_older_install_is_named_with_the_files_that_differ_and_the_fix(tmp_path):
    checkout = copy_checkout(tmp_path / "pageray")
    installed = installed_copy(checkout, tmp_path / "site-packages-pageray")
    (checkout / "pipeline" / "driver" / "run.py").write_text((checkout / "pipeline" / "driver" / "run.py").read_text() + "# edited\n")
    (checkout / "schemas" / "builtin" / "new.json").write_text("{}")
    assert differing_files(installed, checkout) == ["pipeline/driver/run.py", "schemas/builtin/new.json"]
    message = stale_install_message(installed, checkout)
    assert "pipeline/driver/run.py" in message and "jobs/runtime_env.yaml" in message and "ray-project/ray#41827" in message


def test_a_folder_that_is_not_a_pageray_checkout_is_not_compared(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    (tmp_path / "__init__.py").write_text("")
    assert not is_checkout(tmp_path)
    assert stale_install_message(INSTALLED, tmp_path) is None
    assert stale_install_message(INSTALLED, INSTALLED) is None  # an editable install run from its own checkout
