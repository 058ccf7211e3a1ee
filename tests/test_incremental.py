"""Scheduled re-runs: only new and changed documents are processed; readers see current rows."""
from __future__ import annotations

import os
import shutil
import time

import duckdb
import pytest
from cheap import SMALL_RENDER

from pageray.pipeline.config import RunConfig
from pageray.pipeline.driver.run import run_extraction

pytestmark = pytest.mark.slow


def run(inputs, out, model, **kw):
    return run_extraction(RunConfig.build(inputs=[str(inputs)], out=str(out), schema_ref="transcribe",
                                          model=str(model), max_new_tokens=24, batch_size=4, **{**SMALL_RENDER, **kw}))


def rows(out):
    return duckdb.sql(f"select source_uri, page_index, doc_sha256, run_id from read_parquet('{out}/data/*.parquet')"
                      ).fetchall()


def test_only_new_and_changed_documents_are_processed(ray_local, samples, tiny_model, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("invoice.pdf", "receipt.pdf", "paper_first_page.pdf"):
        shutil.copy(samples / name, inbox / name)
    first = run(inbox, out, tiny_model)
    assert first["plan"]["new"] == 3 and first["pages"] == 3
    second = run(inbox, out, tiny_model)
    assert second["plan"]["skipped"] == 3 and second["pages"] == 0

    shutil.copy(samples / "form_two_pages.pdf", inbox / "form.pdf")
    shutil.copy(samples / "rotated_table.pdf", inbox / "table.pdf")
    shutil.copy(samples / "form_two_pages.pdf", inbox / "receipt.pdf")  # same path, new content
    os.utime(inbox / "receipt.pdf", ns=(time.time_ns(), time.time_ns()))
    third = run(inbox, out, tiny_model)
    plan = third["plan"]
    assert (plan["new"], plan["changed"], plan["skipped"]) == (2, 1, 2)
    assert third["pages"] == 2 + 1 + 2  # form (2) + table (1) + the new receipt.pdf (2 pages)

    current = rows(out)
    keys = [(u, p) for u, p, _, _ in current]
    assert len(keys) == len(set(keys)), "one current row per page"
    receipt = [r for r in current if r[0].endswith("/receipt.pdf")]
    assert {r[1] for r in receipt} == {0, 1} and len({r[2] for r in receipt}) == 1
    assert third["superseded_files_rewritten"] >= 1

    forced = run(inbox, out, tiny_model, force=True)
    assert forced["plan"]["forced"] == 5
    after = rows(out)
    assert len(after) == len(current) and {r[3] for r in after} == {forced["run_id"]}
