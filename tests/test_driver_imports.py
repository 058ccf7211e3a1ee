"""The driver's process never loads the model's libraries: torch, transformers and xgrammar cost
seconds and hundreds of MiB at every start, and a driver (often a small head node) never runs the
model. Checked in a fresh interpreter, as `pageray extract` starts."""
from __future__ import annotations

import subprocess
import sys

MODEL_LIBRARIES = ("torch", "transformers", "xgrammar")


def test_the_driver_and_its_ledger_import_no_model_library():
    code = ("import sys, pageray.pipeline.driver.run, pageray.pipeline.driver.api, pageray.pipeline.ledger.documents; "
            f"print([m for m in {MODEL_LIBRARIES!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
