"""The `pageray` command line without Ray: refusals name the flag, dry runs write nothing."""
from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunRecord, claim

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("flags, named", [
    (["--batch-size", "0"], "--batch-size"),
    (["--attn", "fast"], "--attn"),
    (["--dtype", "int3"], "--dtype"),
    (["--max-page-pixels", str(9000 * 9000)], "--max-page-pixels"),
    (["--longest-edge", "20000"], "--longest-edge"),
    (["--render-timeout", "0"], "--render-timeout"),
    (["--page-time-limit", "-1"], "--page-time-limit"),
    (["--engine", "dynamic"], "--engine: Input should be 'static' or 'continuous'"),
    (["--render-retries", "9"], "--render-retries"),
    (["--quantize", "4bit", "--dtype", "float32"], "--dtype float32"),
    (["--longest-edge", "8000", "--max-page-pixels", "5000"], "--max-page-pixels must be at least --longest-edge"),
    (["--run-id", "../../etc"], "--run-id"),
])
def test_bad_flags_are_refused_before_any_work_naming_the_flag(flags, named, samples, tmp_path):
    out = tmp_path / "out"
    result = invoke("extract", str(samples), "--schema", "invoice", "--out", str(out), *flags)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not out.exists()


def test_a_bad_schema_file_is_refused_naming_the_field(samples, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "version": "1", "description": "d", "schema": {
        "type": "object", "properties": {"total": {"type": "number", "description": "t", "multipleOf": 2}}}}))
    result = invoke("extract", str(samples), "--schema", str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "multipleOf" in result.output and "total" in result.output
    assert not (tmp_path / "out").exists()


def test_options_that_need_missing_packages_are_refused_up_front(samples, tiny_model, tmp_path):
    result = invoke("extract", str(samples), "--schema", "invoice", "--out", str(tmp_path / "out"),
                    "--model", str(tiny_model), "--attn", "flash_attention_2")
    assert result.exit_code == 2 and "flash-attn" in result.output and "--attn auto" in result.output


def test_missing_weights_say_what_was_tried(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = invoke("extract", str(samples), "--schema", "invoice", "--out", str(tmp_path / "out"),
                    "--model", "HuggingFaceM4/idefics2-8b")
    assert result.exit_code == 2
    assert "HuggingFaceM4/idefics2-8b" in result.output and "--model" in result.output


def test_plan_is_a_dry_run(samples, tmp_path):
    out = tmp_path / "out"
    result = invoke("plan", str(samples), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    files = [p for p in samples.rglob("*") if p.is_file()]
    assert summary["documents"] == summary["new"] == len(files) and summary["skipped"] == 0
    assert not out.exists()


def test_a_mistyped_input_is_refused_before_the_output_is_claimed(samples, tiny_model, tmp_path):
    out = tmp_path / "out"
    result = invoke("extract", str(tmp_path / "no" / "such" / "dir"), "--schema", "invoice", "--out", str(out),
                    "--model", str(tiny_model))
    assert result.exit_code == 2 and "does not exist" in result.output, result.output
    assert not out.exists()  # no manifest, lease or run record
    # so the corrected command, with another schema, is not refused as "made with schema invoice"
    corrected = invoke("plan", str(samples), "--schema", "receipt", "--out", str(out), "--model", str(tiny_model))
    assert corrected.exit_code == 0, corrected.output


def test_status_of_a_mistyped_folder_says_it_does_not_exist(tmp_path):
    result = invoke("status", str(tmp_path / "no-such-out"))
    assert result.exit_code == 2 and "does not exist" in result.output, result.output
    assert invoke("status", str(tmp_path)).exit_code == 0  # an existing folder without runs: said so


def test_schemas_list_and_show():
    listed = invoke("schemas", "list")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == \
        ["form", "invoice", "paper", "receipt", "table", "transcribe"]
    shown = invoke("schemas", "show", "invoice")
    assert shown.exit_code == 0 and "line_items" in shown.output
    unknown = invoke("schemas", "show", "nope")
    assert unknown.exit_code == 2 and "invoice" in unknown.output  # lists what exists


def test_status_tells_finished_running_and_dead_runs(tmp_path):
    folder = OutputFolder(str(tmp_path))
    folder.write_run(RunRecord(run_id="r1-done", state="succeeded", pages=12, pages_per_s=3.5, counts={"ok": 12}))
    folder.write_run(RunRecord(run_id="r2-live", state="running", pages=4))
    folder.write_run(RunRecord(run_id="r3-dead", state="running", pages=1))
    record = tmp_path / "_runs" / "r3-dead.json"
    dead = json.loads(record.read_text())
    dead["updated_unix"] = time.time() - 3600
    record.write_text(json.dumps(dead))
    result = invoke("status", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert "succeeded" in lines["r1-done"] and " 12 " in lines["r1-done"]
    assert "running" in lines["r2-live"]
    assert "died?" in lines["r3-dead"]


def test_the_summary_counts_truncated_rows_and_names_the_budget_to_raise(capsys):
    from pageray.pipeline.app.cli import print_summary
    from pageray.pipeline.driver.run import truncation_note
    from pageray.pipeline.progress import budget_truncated

    batch = {"status": ["ok", "ok", "generation_timeout", "invalid_output", "render_error"],
             "truncated": [True, False, True, True, None]}
    truncated = budget_truncated(batch)  # a timed-out row was cut off by the clock, not the budget
    assert truncated == 2
    record = {"run_id": "r1", "state": "succeeded", "counts": {"ok": 2}, "pages": 5, "truncated": truncated,
              "notes": [truncation_note(truncated, 768, "schema")], "config": {"out": "/o"}}
    print_summary(record)
    printed = capsys.readouterr().out
    assert "truncated: 2" in printed
    assert "2 pages ran out of output budget" in printed and "--max-new-tokens is 768 (the schema's)" in printed
    print_summary({**record, "truncated": 0, "notes": []})
    assert "truncated: 0" in capsys.readouterr().out
    print_summary({**record, "decode": {"engine": "continuous", "steps": 840, "occupancy": 0.93,
                                        "steps_per_page": 168.0}})
    assert "decode (continuous): 840 steps, 168.0 per page, occupancy 93%" in capsys.readouterr().out


def test_extract_help_says_the_budget_comes_from_the_schema():
    import typer

    command = typer.main.get_command(app).commands["extract"]  # the help text, before rich wraps it
    (option,) = [p for p in command.params if "--max-new-tokens" in p.opts]
    assert option.help.endswith("(default: from the schema)") and option.default is None


def test_the_heartbeat_keeps_a_blocked_run_alive(tmp_path):
    from pageray.pipeline.ledger.heartbeat import Heartbeat
    from pageray.pipeline.ledger.status import run_state

    folder = OutputFolder(str(tmp_path))
    record = RunRecord(run_id="r-busy", state="running", pages=0)
    folder.write_run(record)
    with Heartbeat(folder, record, every_s=0.05) as beat:
        beat.update(pages=7)
        time.sleep(0.5)  # the driver blocked (a model loading), no batch arriving
        written = json.loads((tmp_path / "_runs" / "r-busy.json").read_text())
    assert beat.beats >= 3 and written["pages"] == 7
    assert run_state(written, now=written["updated_unix"] + 60) == "running"
    assert run_state(written, now=written["updated_unix"] + 3600).startswith("died?")


def test_model_tiny_builds_a_checkpoint_the_extract_preflight_accepts(tmp_path):
    from pageray.extractors.model.loading import ModelSpec, preflight

    result = invoke("model", "tiny", "--out", str(tmp_path / "tiny"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "config.json").exists() and "tiny Idefics2 written to" in result.output
    preflight(ModelSpec(model=str(tmp_path / "tiny")))  # raises if it is not a loadable Idefics2 folder


def test_plan_counts_what_an_output_already_holds_with_its_own_schema_and_model(samples, tmp_path):
    from pageray.pipeline.config import DEFAULT_MODEL
    from pageray.schemas import load_schema

    from outputs import commit  # a committed earlier run, made by hand

    out = tmp_path / "out"
    invoice = load_schema("invoice").id
    claim(OutputFolder(str(out)), load_schema("invoice"), "/models/idefics2-8b", "r1", append=False)
    files = sorted(p for p in samples.rglob("*") if p.is_file())
    for path in files:
        st = path.stat()
        commit(out, "r1", path, [0], size=st.st_size, mtime_ns=st.st_mtime_ns,
               scope=Scope(invoice, "/models/idefics2-8b"), page_count=1)
    made_with = json.loads(invoke("plan", str(samples), "--out", str(out)).output)
    assert (made_with["skipped"], made_with["new"]) == (len(files), 0)
    assert made_with["counted_against"] == {"schema_id": invoice, "model": "/models/idefics2-8b"}
    refused = invoke("plan", str(samples), "--out", str(out), "--schema", "receipt")  # as extract would
    assert refused.exit_code == 2 and "--append" in refused.output
    other = json.loads(invoke("plan", str(samples), "--out", str(out), "--schema", "receipt", "--append").output)
    assert (other["skipped"], other["new"]) == (0, len(files))
    assert DEFAULT_MODEL != "/models/idefics2-8b"


def _commands(command, path=()):
    yield path, command
    if hasattr(command, "commands"):  # a group (typer's own click, not necessarily the installed one)
        for name, sub in command.commands.items():
            yield from _commands(sub, path + (name,))


def test_every_command_and_option_has_a_help_line_and_flags_show_no_type():
    import typer.main

    for path, command in _commands(typer.main.get_command(app)):
        if path == ("bench",):
            continue  # its options are benchmarks/bench_extract.py's, listed by `pageray bench --help`
        assert path == () or (command.help or "").strip(), f"pageray {' '.join(path)} has no help line"
        for param in command.params:
            assert (getattr(param, "help", None) or "").strip(), f"pageray {' '.join(path)} {param.name}: no help"
        help_text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}).output
        flags = [p for p in command.params if getattr(p, "is_flag", False)]
        for option in flags:
            line = next(line for line in help_text.splitlines() if f" {option.opts[0]} " in line)
            assert "<bool>" not in line, line  # shown as a flag, not as an option taking a value
    assert any(o.opts == ["--force"] for o in typer.main.get_command(app).commands["extract"].params
               if getattr(o, "is_flag", False))


def test_a_flag_given_a_value_is_refused_saying_flags_take_none(samples, tmp_path):
    result = invoke("extract", str(samples), "--force", "true", "--schema", "invoice", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "--force, not --force true" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_mistyped_schema_gets_the_nearest_name_and_a_model_file_its_class_form(samples, tmp_path, monkeypatch):
    typo = invoke("extract", str(samples), "--schema", "invoce", "--out", str(tmp_path / "o"))
    assert typo.exit_code == 2 and "did you mean 'invoice'" in typo.output and "models.py:ClassName" in typo.output
    monkeypatch.chdir(tmp_path)  # the user's own folder, with their own models.py
    (tmp_path / "models.py").write_text("from pydantic import BaseModel\n\n\nclass Invoice(BaseModel):\n"
                                        '    """An invoice."""\n    total: float\n', encoding="utf-8")
    bare = invoke("extract", str(samples), "--schema", "models.py", "--out", str(tmp_path / "o"))
    assert bare.exit_code == 2 and "models.py:Invoice" in bare.output, bare.output
    assert not (tmp_path / "o").exists()
