"""`pageray extract --config job.yaml` (pipeline.config_file): keys are the options' names (or
their flags), unknown keys are refused before any work, flags override the file, and the run
record keeps the whole resolved config."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.config import RunConfig
from pageray.pipeline.app.config_file import load_config_file, resolve_options
from pageray.pipeline.errors import ConfigError

runner = CliRunner()


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_an_unknown_key_is_refused_before_any_work_naming_the_key_and_the_fix(samples, tmp_path):
    job = write(tmp_path / "job.yaml", f"inputs: [{samples}]\nschema: invoice\nout: {tmp_path / 'out'}\n"
                                       "batchsize: 4\n")
    result = runner.invoke(app, ["extract", "--config", str(job)])
    assert result.exit_code == 2, result.output
    assert "unknown key 'batchsize'" in result.output and "did you mean 'batch_size'" in result.output
    assert str(job) in result.output
    assert not (tmp_path / "out").exists()


def test_a_bad_value_in_the_file_is_refused_by_runconfig_naming_the_flag(samples, tmp_path):
    job = write(tmp_path / "job.yaml", f"inputs: {samples}\nschema_ref: invoice\nout: {tmp_path / 'out'}\n"
                                       "batch_size: 0\n")
    result = runner.invoke(app, ["extract", "--config", str(job)])
    assert result.exit_code == 2 and "--batch-size" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_keys_are_field_names_or_flag_spellings(tmp_path):
    job = write(tmp_path / "job.yaml", "inputs: /data/pdfs\nschema: invoice\nout: /data/out\nattn: sdpa\n"
                                       "render-timeout: 30\n--max-new-tokens: 64\nsplit_images: false\n"
                                       "retry: render_timeout\n")
    assert load_config_file(job) == {"inputs": ["/data/pdfs"], "schema_ref": "invoice", "out": "/data/out",
                                     "attn_implementation": "sdpa", "render_timeout_s": 30, "max_new_tokens": 64,
                                     "split_images": False, "retry": ["render_timeout"]}


@pytest.mark.parametrize("text, says", [
    ("no_split: true\n", "unknown key 'no_split'"),                    # a negated flag is not a key
    ("schema: invoice\nschema_ref: receipt\n", "given twice"),
    ("- inputs\n", "expected a mapping"),
    ("inputs: [unclosed\n", "not valid YAML"),
])
def test_files_that_cannot_be_used_are_refused(tmp_path, text, says):
    with pytest.raises(ConfigError, match=says):
        load_config_file(write(tmp_path / "job.yaml", text))


def test_json_files_too_and_a_missing_file(tmp_path):
    job = write(tmp_path / "job.json", json.dumps({"inputs": ["/a"], "batch_size": 8}))
    assert load_config_file(job) == {"inputs": ["/a"], "batch_size": 8}
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "nope.yaml")


def test_flags_override_the_file_and_required_options_come_from_either():
    options = resolve_options({"inputs": ["/a"], "schema_ref": "invoice", "out": "/o", "batch_size": 4},
                              {"batch_size": "2", "out": "/other"})
    assert options == {"inputs": ["/a"], "schema_ref": "invoice", "out": "/other", "batch_size": "2"}
    with pytest.raises(ConfigError, match=r"missing --schema \(schema_ref\), --out \(out\)"):
        resolve_options({"inputs": ["/a"]}, {}, "job.yaml")


def test_the_run_record_keeps_the_resolved_config(tiny_model, tmp_path):
    """A real run (of an empty folder: no documents, so no Ray) from a file plus a flag."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    out = tmp_path / "out"
    job = write(tmp_path / "job.yaml", f"inputs: [{inbox}]\nschema: invoice\nout: {out}\nmodel: {tiny_model}\n"
                                       "batch_size: 4\nmax-new-tokens: 64\nrender-timeout: 30\nrun_id: nightly-1\n"
                                       "engine: continuous\n")
    result = runner.invoke(app, ["extract", "--config", str(job), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "_runs" / "nightly-1.json").read_text())
    config = record["config"]
    assert set(config) == set(RunConfig.model_fields)  # every option, defaults included
    assert (config["batch_size"], config["max_new_tokens"], config["render_timeout_s"]) == (2, 64, 30.0)
    assert config["page_time_limit_s"] == 300.0 and config["inputs"] == [str(inbox)]
    assert record["state"] == "succeeded" and record["max_new_tokens_from"] == "flag"
    # the engine chosen reaches the extractor's settings, and the record's decode figures name it
    assert RunConfig.model_validate(config).extract_settings().engine == "continuous"
    assert record["decode"] == {"engine": "continuous", "steps": 0, "occupancy": None, "steps_per_page": None}


@pytest.mark.parametrize("values, named", [
    ("inputs: [[{samples}]]\nout: {out}\n", "inputs"),
    ("inputs: {samples}\nout: 42\n", "--out"),
    ("inputs: 42\nout: {out}\n", "inputs"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(values, named, samples, tmp_path):
    job = write(tmp_path / "job.yaml", "schema: invoice\n" + values.format(samples=samples, out=tmp_path / "out"))
    result = runner.invoke(app, ["extract", "--config", str(job)])
    assert result.exit_code == 2, result.output  # not a TypeError's traceback (exit 1)
    assert named in result.output and "Input should be" in result.output
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_is_quoted_cut_short(samples, tmp_path):
    """Every level nests the one before nine times: its repr would be hundreds of kilobytes."""
    levels = ["&l0 [x, x, x, x, x, x, x, x, x]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 6)]
    for key in ("schema", "batch_size"):
        job = write(tmp_path / "job.yaml", f"inputs: {samples}\nout: {tmp_path / 'out'}\nschema: invoice\n"
                                           f"{key}: [{', '.join(levels)}]\n")
        result = runner.invoke(app, ["extract", "--config", str(job)])
        assert result.exit_code == 2 and flag_of(key) in result.output, result.output
        assert len(result.output) < 1000 and "..." in result.output


def flag_of(key: str) -> str:
    return {"schema": "--schema", "batch_size": "--batch-size"}[key]


def test_plan_takes_the_file_extract_takes(samples, tmp_path):
    """A cron job's file dry-runs as written; flags override it; nothing is written."""
    out = tmp_path / "out"
    job = write(tmp_path / "job.yaml", f"inputs: [{samples}]\nschema: invoice\nout: {out}\nbatch_size: 4\n"
                                       "max-new-tokens: 64\n")
    result = runner.invoke(app, ["plan", "--config", str(job)])
    assert result.exit_code == 0, result.output
    files = [p for p in samples.rglob("*") if p.is_file()]
    assert json.loads(result.output)["new"] == len(files) and not out.exists()
    overridden = runner.invoke(app, ["plan", "--config", str(job), "--max-file-bytes", "1"])
    assert overridden.exit_code == 0 and json.loads(overridden.output)["new"] == len(files)
    bad = write(tmp_path / "bad.yaml", f"inputs: [{samples}]\nout: {out}\nbatchsize: 4\n")
    refused = runner.invoke(app, ["plan", "--config", str(bad)])
    assert refused.exit_code == 2 and "did you mean 'batch_size'" in refused.output
