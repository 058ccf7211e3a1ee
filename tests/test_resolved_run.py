"""A run is resolved once (pipeline.resolved_run): `pageray plan` loads its schema as extract does, once."""
from __future__ import annotations

import json

from typer.testing import CliRunner

import pageray.schemas
from pageray.pipeline.app.cli import app


def test_pageray_plan_loads_the_schema_once(samples, tmp_path, monkeypatch):
    loaded = []
    real = pageray.schemas.load_schema
    monkeypatch.setattr(pageray.schemas, "load_schema", lambda spec: loaded.append(spec) or real(spec))
    result = CliRunner().invoke(app, ["plan", str(samples), "--out", str(tmp_path / "out"), "--schema", "receipt"])
    assert result.exit_code == 0, result.output
    assert loaded == ["receipt"]
    summary = json.loads(result.output)
    assert summary["counted_against"]["schema_id"] == real("receipt").id
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
