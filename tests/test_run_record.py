"""The run record is typed (pipeline.ledger.records.RunRecord): a misspelt key is refused where it is
written; its file keeps the JSON readers know; records of earlier versions still read."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.heartbeat import Heartbeat
from pageray.pipeline.ledger.records import RunRecord


def test_a_misspelt_or_mistyped_key_is_refused_where_it_is_written(tmp_path):
    folder = OutputFolder(str(tmp_path))
    record = RunRecord(run_id="r1", state="running")
    with Heartbeat(folder, record, every_s=3600) as beat:
        beat.update(pages=3)
        with pytest.raises(ValidationError, match="pagse"):
            beat.update(pagse=4)
        with pytest.raises(ValidationError, match="pages"):
            beat.update(pages="many")
    with pytest.raises(ValidationError, match="state"):
        RunRecord(run_id="r2", state="sleeping")


def test_the_file_holds_the_keys_set_as_plain_json(tmp_path):
    folder = OutputFolder(str(tmp_path))
    record = RunRecord(run_id="r1", state="planning", schema={"name": "invoice", "id": "abc"})
    record.update(state="succeeded", pages=2, pages_per_s=None, counts={"ok": 2}, notes=["a note"])
    folder.write_run(record)
    saved = json.loads((tmp_path / "_runs" / "r1.json").read_text())
    assert set(saved) == {"run_id", "state", "schema", "pages", "pages_per_s", "counts", "notes",
                          "updated_at", "updated_unix"}
    assert saved["state"] == "succeeded" and saved["schema"] == {"name": "invoice", "id": "abc"}
    assert RunRecord.model_validate(saved).to_json() == saved  # read back, the same record


def test_a_record_of_an_earlier_version_still_shows_in_status(tmp_path):
    # written by hand as an older pageray wrote it: a key this version no longer writes, none of the new
    (tmp_path / "_runs").mkdir()
    (tmp_path / "_runs" / "r0.json").write_text(json.dumps(
        {"run_id": "r0", "state": "succeeded", "pages": 5, "pages_per_s": 1.5, "counts": {"ok": 5},
         "started_at": "2025-01-01T00:00:00+00:00", "small_files_merged": 3}))
    folder = OutputFolder(str(tmp_path))
    folder.write_run(RunRecord(run_id="r1", state="succeeded", pages=2, counts={"ok": 2},
                               started_at="2026-01-01T00:00:00+00:00"))
    assert [r["run_id"] for r in folder.runs()] == ["r0", "r1"]
    shown = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "r0" in shown.output and "{'ok': 5}" in shown.output and "r1" in shown.output
