"""The whole pipeline on a local Ray: real PyMuPDF, the tiny Idefics2, Parquet read by DuckDB."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from cheap import SMALL_RENDER
from pageray.pipeline.config import RunConfig
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.driver.run import run_extraction

pytestmark = pytest.mark.slow


def config(inputs, out, model, **kw):
    values = dict(inputs=[str(i) for i in inputs], out=str(out), schema_ref="invoice", model=str(model),
                  max_new_tokens=48, batch_size=4, **SMALL_RENDER)
    values.update(kw)
    return RunConfig.build(**values)


SCHEMA_LOADS: list = []  # what invoice_run's driver loaded (its workers are handed the schema)


@pytest.fixture(scope="module")
def invoice_run(ray_local, samples, tiny_model, tmp_path_factory):
    import pageray.schemas

    out = tmp_path_factory.mktemp("out")
    SCHEMA_LOADS.clear()  # this run's loads only, however often the fixture is made
    real = pageray.schemas.load_schema
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pageray.schemas, "load_schema", lambda spec: SCHEMA_LOADS.append(spec) or real(spec))
        return out, run_extraction(config([samples], out, tiny_model))


def test_the_run_record_s_schema_is_loaded_once_per_run(invoice_run):
    # planning, the workers' steps, the document rows and the record all use the run's one
    # ResolvedRun (pipeline.resolved_run): a schema file edited mid-run cannot split the run
    assert SCHEMA_LOADS == ["invoice"]


def test_every_file_has_rows_and_ok_rows_are_valid(invoice_run, samples):
    out, record = invoice_run
    assert record["state"] == "succeeded"
    rows = duckdb.sql(f"select source_uri, page_index, status, valid, truncated, fields "
                      f"from read_parquet('{out}/data/*.parquet')").fetchall()
    files = {Path(r[0]).name for r in rows}
    assert files == {p.name for p in samples.iterdir()}
    ok = [r for r in rows if r[2] == "ok"]
    assert len(ok) >= 6, "real ok rows from the tiny model, not only error rows"
    assert all(r[3] is True and r[5] is not None for r in ok)
    statuses = {r[2] for r in rows}
    assert {"render_error", "encrypted"} <= statuses
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys)), "each page exactly once"
    assert sum(record["counts"].values()) == len(rows)


def test_output_types_are_analytics_ready(invoice_run):
    out, _ = invoice_run
    con = duckdb.connect()
    types = dict(con.sql(f"select column_name, column_type from (describe select fields.total as total, "
                         f"fields.line_items as line_items, fields.invoice_date as d, created_at "
                         f"from read_parquet('{out}/data/*.parquet'))").fetchall())
    assert types["total"] == "DOUBLE"
    assert types["line_items"].startswith("STRUCT(") and types["line_items"].endswith("[]")
    assert types["d"] == "DATE"
    assert types["created_at"].startswith("TIMESTAMP WITH TIME ZONE")
    meta = con.sql(f"select distinct compression from parquet_metadata('{out}/data/*.parquet')").fetchall()
    assert {m[0].upper() for m in meta} == {"ZSTD"}


def test_run_record_and_folder_manifest(invoice_run):
    out, record = invoice_run
    saved = json.loads((out / "_runs" / f"{record['run_id']}.json").read_text())
    assert saved["config"]["schema_ref"] == "invoice" and saved["state"] == "succeeded"
    assert saved["versions"]["transformers"] and saved["schema"]["id"]
    # where the extractors' time went: decode steps per page the model answered, and occupancy
    answered = duckdb.sql(f"select count(output_tokens) from read_parquet('{out}/data/*.parquet')").fetchall()[0][0]
    decode = saved["decode"]
    assert decode["engine"] == "continuous" and decode["steps"] > 0 and 0 < decode["occupancy"] <= 1
    assert decode["steps_per_page"] == round(decode["steps"] / answered, 2)
    assert json.loads((out / "_pageray.json").read_text())["schema_name"] == "invoice"


def test_the_record_counts_the_truncated_rows_and_a_tiny_model_run_says_its_values_are_noise(invoice_run, capsys):
    """48 tokens cannot hold an invoice: answers are closed early, and counted. The model is the tiny
    one, whose random weights would fill any budget: the summary says once that its values are
    noise, and does not advise raising --max-new-tokens (a real model's run does:
    test_cli.test_the_summary_counts_truncated_rows_and_names_the_budget_to_raise)."""
    from pageray.pipeline.app.cli import print_summary

    out, record = invoice_run
    truncated = duckdb.sql(f"select count(*) filter (truncated and status <> 'generation_timeout'), "
                           f"count(*) filter (truncated) from read_parquet('{out}/data/*.parquet')").fetchall()[0]
    assert record["truncated"] == truncated[0] == truncated[1] > 0
    assert (record["config"]["max_new_tokens"], record["max_new_tokens_from"]) == (48, "flag")
    assert record["schema"]["max_new_tokens"] == 768  # the built-in's own, which the flag overrode
    (note,) = record["notes"]
    assert "random weights" in note and "noise" in note and "not for accuracy" in note
    saved = json.loads((out / "_runs" / f"{record['run_id']}.json").read_text())
    assert (saved["truncated"], saved["notes"]) == (record["truncated"], record["notes"])
    print_summary(record)
    summary = capsys.readouterr().out
    assert summary.count("noise") == 1 and "--max-new-tokens" not in summary and "raise it" not in summary


def test_another_schema_is_refused_in_the_same_folder(invoice_run, samples, tiny_model):
    out, _ = invoice_run
    with pytest.raises(ConfigError, match="--append"):
        run_extraction(config([samples], out, tiny_model, schema_ref="receipt"))


def test_real_world_pdfs_run_to_completion(ray_local, tiny_model, tmp_path):
    """PDFs we did not write (tests/data/realworld/SOURCES.md), plus truncated copies of two."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    realworld = Path(__file__).parent / "data" / "realworld"
    pdfs = sorted(realworld.glob("*.pdf"))
    for pdf in pdfs:
        (inbox / pdf.name).write_bytes(pdf.read_bytes())
    for name in ("Seige_of_Vicksburg_Sample_OCR.pdf", "indirect-rotation.pdf"):
        data = (realworld / name).read_bytes()
        (inbox / f"truncated_{name}").write_bytes(data[: len(data) // 3])
    record = run_extraction(config([inbox], tmp_path / "out", tiny_model, schema_ref="transcribe",
                                   max_new_tokens=16, max_pages_per_doc=3))
    assert record["state"] == "succeeded"
    rows = duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{tmp_path}/out/data/*.parquet')"
                      ).fetchall()
    assert {Path(r[0]).name for r in rows} == {p.name for p in inbox.iterdir()}  # every file has rows
    statuses = {r[2] for r in rows}
    assert {"ok", "encrypted", "page_skipped"} <= statuses
    assert not statuses & {"model_error", "invalid_output"}  # every page that rendered ran, validly
    assert all(r[3] for r in rows if r[2] in ("ok", "generation_timeout"))
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))
    assert sum(record["counts"].values()) == len(rows)


def test_small_part_files_are_merged_when_the_run_ends(invoice_run):
    out, record = invoice_run
    parts = sorted((out / "data").glob("*.parquet"))
    assert len(parts) == 1, [p.name for p in parts]  # one schema, far below the target size
    assert record["merged_into"] <= 1 and record["merged_files"] != 1 and record["merge_recovered"] == 0
    assert not (out / "_compact").exists() or not list((out / "_compact").iterdir())


def test_an_invoice_run_also_writes_one_row_per_document(invoice_run, samples):
    out, record = invoice_run  # invoice defaults to --scope document
    docs = duckdb.sql(f"select source_uri, status, page_count, pages_ok, failed_pages, fields, field_pages "
                      f"from read_parquet('{out}/documents/*.parquet')").fetchall()
    by_name = {Path(d[0]).name: d for d in docs}
    assert len(docs) == len(by_name) == len(list(samples.iterdir())) == record["documents_written"]
    assert by_name["encrypted_password_secret.pdf"][1] == "encrypted"
    form = by_name["form_two_pages.pdf"]
    assert form[2] == 2 and form[1] in ("ok", "partial") and form[3] + len(form[4]) == 2
    pages = duckdb.sql(f"select count(*) from read_parquet('{out}/data/*.parquet') where status = 'ok'").fetchall()[0][0]
    assert sum(d[3] for d in docs) == pages  # every ok page is in its document's row
    assert all(d[5] is not None for d in docs if d[3])
