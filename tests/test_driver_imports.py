"""The driver's process never loads the model's libraries: torch, transformers and xgrammar cost
seconds and hundreds of MiB at every start, and a driver (often a small head node) never runs the
model. Checked in a fresh interpreter, as `pageray extract` starts: at import, and through what a
run does in the driver before Ray takes over (the model folder's preflight, the stages it hands Ray).
Nor PyMuPDF (0.5 s): documents are opened by the render actors, never by the driver."""
from __future__ import annotations

import json
import subprocess
import sys

MODEL_LIBRARIES = ("torch", "transformers", "xgrammar", "pymupdf")


def loaded_after(code: str) -> list[str]:
    code += f"\nimport json, sys; print(json.dumps([m for m in {MODEL_LIBRARIES!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_driver_and_its_ledger_import_no_model_library():
    assert loaded_after("import pageray.pipeline.driver.run, pageray.pipeline.driver.api, "
                        "pageray.pipeline.ledger.documents") == []


def test_a_runs_preflight_and_stages_load_no_model_library(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "idefics2"}')
    code = f"""
from pageray.extractors.model.loading import preflight
from pageray.pipeline.config import RunConfig
from pageray.pipeline.driver.stages import Cluster, run_stages
config = RunConfig(inputs=[{str(tmp_path)!r}], out={str(tmp_path / 'out')!r}, schema_ref="invoice", model={str(model)!r})
preflight(config.model_spec())
stages = run_stages(config, config.extraction_schema(), Cluster({{"CPU": 2}}, []), 1)
assert [s.name for s in stages][2] == "ExtractFields"
"""
    assert loaded_after(code) == []
