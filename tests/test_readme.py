"""Every command block of README.md runs as written on a CPU machine (tests/readme_blocks.py).

The blocks run in README order from a temporary folder that is not this repository and that holds
its own pipeline.py, schemas/, extractors.py and jobs.py (`user_project`: the shadowing test, for
the CLI and the API), with only
paths substituted (and the example run id of `pageray report --run`): the data and model folders
become temporary ones and the tiny model, `s3://bucket/out` a local folder, `/opt/pageray/.venv`
this virtualenv, `http://head:8265` the session's Ray head (every driver joins it through
RAY_ADDRESS, as on a cluster's head node). The install commands are not re-run on this virtualenv
(`.ci/run` runs them, from a fresh one): in their place the test checks that pageray is
importable. Blocks marked `readme-test: skip` are left out, and the README says which and why; a
block marked `run by tests/FILE.py` is run as written by that test (tests/readme_blocks.py).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from clusters import BIN, REPO, copy_checkout, until_agent_ready
from readme_blocks import LANGUAGES, readme_blocks, shell_commands, sql_statements, substitute

README = REPO / "README.md"
INSTALL_STEPS = ("python3 -m venv ", ". .venv/bin/activate", "pip install ", "uv pip install ")
IMPORTABLE = f"{sys.executable} -c 'import pageray'"
EXAMPLE_RUN_ID = "20260301T100000Z-abc123"
# input documents: a page of each kind the README's queries read, and one that fails to render
SAMPLE_FILES = ("invoice.pdf", "receipt.png", "corrupt_truncated.pdf")


SHADOWS = "raise ImportError('the user\\'s own {} was imported instead of pageray\\'s')\n"


def user_project(folder: Path) -> Path:
    """A data engineer's project folder: its own pipeline.py, schemas package, extractors.py and
    jobs.py, each failing loudly if anything imports it. The README's commands run from one, so a
    `pageray extract` (whose Ray workers get the driver's folder first on their path when they
    unpickle a task) or an API script there that imported one of them instead of pageray's fails."""
    (folder / "schemas").mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.py").write_text(SHADOWS.format("pipeline.py"))
    (folder / "schemas" / "__init__.py").write_text(SHADOWS.format("schemas/"))
    (folder / "extractors.py").write_text(SHADOWS.format("extractors.py"))
    (folder / "jobs.py").write_text(SHADOWS.format("jobs.py"))
    return folder


def without_install(command: str) -> str:
    """The README's install-and-run line with its install steps replaced by an import check."""
    steps = command.split(" && ")
    if not any(step.startswith(INSTALL_STEPS) for step in steps):
        return command
    kept = [step for step in steps if not step.startswith(INSTALL_STEPS)]
    return " && ".join([IMPORTABLE, *kept])


# --- the parser (no Ray) -------------------------------------------------------------------------

def test_blocks_marks_continuations_and_cron_lines():
    text = ("intro\n\n<!-- readme-test: skip (a download) -->\n```bash\nget it\n```\n\n"
            "```bash\n# a comment\nray job submit --a \\\n    -- python -m x\n"
            "0 2 * * * /opt/p/.venv/bin/pageray extract IN >> /var/log/p.log 2>&1\n```\n\n"
            "```\npageray: 1/2 pages\n```\n")
    skipped, run, output = readme_blocks(text)
    assert (skipped.language, skipped.skipped, skipped.line) == ("bash", True, 4)
    assert not run.skipped and output.language == "" and run.run_by == ""
    delegated, = readme_blocks("<!-- readme-test: run by tests/test_x.py (it goes on) -->\n```bash\nx\n```\n")
    assert delegated.run_by == "tests/test_x.py" and not delegated.skipped
    assert shell_commands(run.text) == ["ray job submit --a      -- python -m x",
                                        "/opt/p/.venv/bin/pageray extract IN >> /var/log/p.log 2>&1"]
    assert sql_statements("-- one\nSELECT 1;\n-- two\nSELECT 2\nFROM t;\n") == ["-- one\nSELECT 1", "-- two\nSELECT 2\nFROM t"]
    assert substitute("/etc/p/a.yaml in /etc/p", {"/etc/p": "/x", "/etc/p/a.yaml": "/y.yaml"}) == "/y.yaml in /x"
    assert without_install("python3 -m venv .venv && . .venv/bin/activate && pip install torch uv && "
                           "uv pip install --compile-bytecode -e . && pageray demo") == f"{IMPORTABLE} && pageray demo"


def test_every_readme_block_is_run_or_says_why_not():
    """A fence in a language the runner does not know would go untested without a word."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    unknown = [(b.line, b.language) for b in blocks if b.language and b.language not in LANGUAGES]
    assert not unknown, f"README blocks in a language tests/test_readme.py does not run: {unknown}"
    assert all("(" in b.mark for b in blocks if b.skipped or b.run_by), "a skipped or delegated block must say why"
    delegated = [b for b in blocks if b.run_by]
    for block in delegated:  # the test named must exist and read the README's blocks marked for it
        assert f'"{block.run_by}"' in (REPO / block.run_by).read_text(encoding="utf-8"), block.run_by
    run = [b for b in blocks if b.language and not b.skipped and not b.run_by]
    assert any("--runtime-env" in b.text for b in delegated) and any("pageray model tiny" in b.text for b in run)


# --- the README, run ---------------------------------------------------------------------------------

class Runner:
    """Runs the README's blocks in order, in `home` (a temporary folder), with paths substituted."""

    def __init__(self, home: Path, checkout: Path, paths: dict[str, str], env: dict[str, str]):
        self.home, self.checkout, self.paths, self.env = home, checkout, paths, env
        self.ran: list[str] = []
        self.seconds: dict[str, float] = {}  # per command, printed at the end (pytest -s shows them)
        self.stdout: dict[str, str] = {}

    def bash(self, command: str, cwd: Path) -> None:
        command = without_install(substitute(command, self.paths))
        started = time.monotonic()
        done = until_agent_ready(lambda: subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd,
                                                        env=self.env, capture_output=True, text=True, timeout=900))
        assert done.returncode == 0, f"README command failed ({done.returncode}): {command}\n" \
                                     f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        self.ran.append(command)
        self.seconds[command] = time.monotonic() - started
        self.stdout[command] = done.stdout

    def python(self, code: str) -> None:
        script = self.home / f"block{len(self.ran)}.py"
        script.write_text(substitute(code, self.paths), encoding="utf-8")
        self.bash(f"{sys.executable} {script}", self.home)

    def sql(self, text: str, monkeypatch) -> None:
        monkeypatch.chdir(self.home)  # the queries name out/... relative to where they run
        for statement in sql_statements(substitute(text, self.paths)):
            duckdb.sql(statement).fetchall()
            self.ran.append(statement)

    def yaml_file(self, text: str) -> None:
        """A YAML block whose first line names its file (`# /etc/pageray/invoices.yaml`) is written there."""
        first = text.splitlines()[0]
        assert first.startswith("# /"), f"a YAML block must name its file on its first line: {first}"
        target = Path(substitute(first[2:].strip(), self.paths))
        target.parent.mkdir(parents=True, exist_ok=True)
        text = substitute(text, self.paths)
        assert isinstance(yaml.safe_load(text), dict)
        target.write_text(text, encoding="utf-8")


def check_demo(out: Path, printed: str) -> None:
    """`pageray demo`'s first run: it built the tiny model and wrote valid ok rows, as its record counts them."""
    record = json.loads((out / "_runs" / f"{newest_run_id(out)}.json").read_text())
    assert record["state"] == "succeeded" and record["counts"].get("ok", 0) >= 6, record
    assert "built the tiny offline Idefics2" in printed, printed[-2000:]
    ok = duckdb.sql(f"select count(*) from read_parquet('{out}/data/*.parquet') where status = 'ok' and valid"
                    ).fetchall()[0][0]
    assert ok == record["counts"]["ok"]


def check_sample_scores(scores: dict, printed: str) -> None:
    """`pageray eval` of a real tiny-model run of the labeled sample invoices (the README's
    sample-out/): a well-formed score dict over all four labeled pages (its values are random)."""
    from pageray.pipeline.evaluation.scoring import paths
    from pageray.schemas import arrow_type, load_schema

    assert scores["pages"] == scores["matched_pages"] == 4 and scores["missing"] == []
    assert sorted(p["page_index"] for p in scores["per_page"]) == [0, 0, 0, 1]
    assert set(scores["fields"]) <= set(paths(arrow_type(load_schema("invoice"))))
    assert scores["fields"]["total"]["support"] == 4 and scores["overall"]["leaves"] == 92
    for field in scores["fields"].values():
        for key in ("exact", "normalized", "precision", "recall", "f1"):
            assert field[key] is None or 0.0 <= field[key] <= 1.0
    assert 0.0 <= scores["json_accuracy"] <= 1.0
    assert "micro (all leaves)" in printed


def newest_run_id(out: Path) -> str:
    records = sorted((out / "_runs").glob("*.json"))
    assert records, f"no run record in {out}"
    return records[-1].stem


@pytest.mark.slow
def test_the_readme_commands_run_as_written(ray_head, tiny_model, tmp_path, monkeypatch):
    from pageray.pipeline.samples import write_samples

    home = user_project(tmp_path / "home")  # where a user types the commands: not this repository
    samples = write_samples(tmp_path / "all-samples")
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    for file in samples:
        if file.name in SAMPLE_FILES:
            shutil.copy(file, pdfs / file.name)
            (home / "my-pdfs").mkdir(exist_ok=True)
            shutil.copy(file, home / "my-pdfs" / file.name)
    # a pageray checkout, as a user's clone (what `--working-dir .` uploads for the runtime env)
    checkout = copy_checkout(tmp_path / "checkout")
    paths = {"/data/pdfs": str(pdfs), "/shared/pdfs": str(pdfs), "/data/out": str(home / "out"),
             "/data/invoices": str(tmp_path / "invoices"), "s3://bucket/out": str(tmp_path / "job-out"),
             "/models/idefics2-8b": str(tiny_model), "/etc/pageray": str(tmp_path / "etc-pageray"),
             "/var/log/pageray.log": str(tmp_path / "pageray.log"), "/opt/pageray/.venv/bin/": f"{BIN}/",
             "http://head:8265": ray_head.dashboard_address}
    env = ray_head.driver_env(PATH=f"{BIN}:{ray_head.env.get('PATH', '')}")
    runner = Runner(home, checkout, paths, env)

    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if block.skipped or block.run_by or not block.language:
            continue
        if block.language == "bash":
            for command in shell_commands(block.text):
                if EXAMPLE_RUN_ID in command:
                    command = command.replace(EXAMPLE_RUN_ID, newest_run_id(home / "sample-out"))
                runner.bash(command, checkout if block.in_checkout else home)
        elif block.language == "python":
            runner.python(block.text)
        elif block.language == "sql":
            runner.sql(block.text, monkeypatch)
        else:
            runner.yaml_file(block.text)

    for command, seconds in sorted(runner.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{seconds:7.1f} s  {command[:150]}")
    # what the commands were to leave behind
    demo = home / "pageray-demo" / "out"                                               # pageray demo
    check_demo(demo, next(out for c, out in runner.stdout.items() if c.endswith("pageray demo")))
    runner.bash("pageray demo", home)  # and again: the model is reused, nothing is redone
    again = json.loads((demo / "_runs" / f"{newest_run_id(demo)}.json").read_text())
    first = json.loads(sorted((demo / "_runs").glob("*.json"))[0].read_text())
    assert again["run_id"] != first["run_id"] and again["pages"] == 0
    assert again["plan"]["skipped"] == first["plan"]["new"]
    assert list((home / "tiny-idefics2").iterdir())                                   # pageray model tiny
    for out in (home / "my-out", home / "out", tmp_path / "job-out", tmp_path / "invoices", home / "sample-out"):
        rows = duckdb.sql(f"select status from read_parquet('{out}/data/*.parquet')").fetchall()
        assert ("ok",) in rows, f"{out}: {rows}"
    assert "run " in (tmp_path / "pageray.log").read_text()                           # the cron lines
    eval_printed = next(out for c, out in runner.stdout.items() if c.startswith("pageray eval "))
    check_sample_scores(json.loads((home / "scores.json").read_text()), eval_printed)  # pageray eval
    assert (home / "pageray-report.html").is_file() and (home / "run.html").is_file()  # pageray report
    assert any("--config" in c for c in runner.ran)
