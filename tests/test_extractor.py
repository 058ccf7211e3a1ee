"""The extractor on plain dict batches, without Ray: real tiny Idefics2, real PyMuPDF pages."""
from __future__ import annotations

import json

import jsonschema
import pyarrow as pa
import pytest
import torch

from pageray.extractors.extractor import ExtractSettings, ExtractFields
from pageray.extractors.model.loading import ModelSpec
from pageray.pipeline.datamodel import Status, rows_to_columns
from pageray.pipeline.render.pages import RenderLimits, render_document
from pageray.schemas import generation_schema, load_schema


def page_batch(samples, names, run_id="r1"):
    rows = []
    for path in sorted(samples.iterdir()):
        if path.name not in names:
            continue
        for page in render_document(path.read_bytes(), path.name, RenderLimits()):
            rows.append({**page, "run_id": run_id, "doc_id": path.stem, "source_uri": str(path),
                         "doc_sha256": "x", "doc_size": 1, "doc_mtime_ns": 1})
    return rows_to_columns(rows)


@pytest.fixture(scope="module")
def invoice_extractor(tiny_model):
    return ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("invoice"),
                     ExtractSettings(batch_size=2, max_new_tokens=120))


def pdf_names(samples):
    return sorted(p.name for p in samples.iterdir() if p.suffix == ".pdf")


def test_ok_rows_are_schema_valid_even_when_truncated(invoice_extractor, samples):
    batch = page_batch(samples, ["invoice.pdf", "receipt.pdf", "scanned_invoice.pdf"])
    table = invoice_extractor(batch)
    assert isinstance(table, pa.Table)
    rows = table.to_pylist()
    ok = [r for r in rows if r["status"] == Status.OK.value]
    # the budget is closed by the forced completion, so every rendered page is an ok row
    assert len(ok) == len(rows) == 3, [(r["status"], r["error"]) for r in rows]
    gen = generation_schema(invoice_extractor.schema)
    for r in ok:
        assert r["valid"] is True
        value = json.loads(r["raw_text"])
        jsonschema.validate(value, invoice_extractor.schema.source_schema)  # the schema the user gave
        assert r["fields"] is not None and set(r["fields"]) == set(gen["properties"])
        assert r["input_tokens"] > 0 and r["output_tokens"] > 0
        assert 0.0 < r["confidence"] <= 1.0
        assert r["image_width"] == 1960 or r["image_height"] == 1960
    # 120 tokens cannot hold a whole invoice from a random model: the closing path must have run
    assert any(r["truncated"] for r in ok)
    assert table.schema.field("fields").type.field("total").type == pa.float64()
    for r in ok:  # grounded against the text layer where there is one, null for the scan
        if r["text_layer"] and r["text_layer"].strip():
            assert r["ungrounded_fields"] is not None
            assert r["grounded_fraction"] is None or 0.0 <= r["grounded_fraction"] <= 1.0
        else:
            assert r["grounded_fraction"] is None and r["ungrounded_fields"] is None
    # both branches ran: the invoice and receipt have a text layer, the scan has none
    assert {bool(r["text_layer"] and r["text_layer"].strip()) for r in ok} == {True, False}


def test_error_rows_pass_through_untouched(invoice_extractor, samples):
    batch = page_batch(samples, ["corrupt_truncated.pdf", "encrypted_password_secret.pdf", "receipt.pdf"])
    statuses = set(batch["status"])
    table = invoice_extractor(batch).to_pylist()
    assert len(table) == len(batch["status"])
    for before, after in zip(batch["status"], table):
        if before != Status.OK.value:
            assert after["status"] == before and after["fields"] is None
    assert statuses - {Status.OK.value}, "the samples include a corrupt and an encrypted PDF"


def test_out_of_memory_halves_the_batch_then_records_the_page(invoice_extractor, samples, monkeypatch):
    batch = page_batch(samples, ["invoice.pdf", "receipt.pdf"])
    n_ok = sum(s == Status.OK.value for s in batch["status"])
    real_encoder = invoice_extractor.encoder
    calls = []

    def encoder_that_fits_one(pages):  # stands in for a GPU that fits one page at a time
        calls.append(len(pages))
        if len(pages) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_encoder(pages)

    monkeypatch.setattr(invoice_extractor, "encoder", encoder_that_fits_one)
    rows = invoice_extractor(batch).to_pylist()
    assert calls[0] == 2 and 1 in calls
    assert sum(r["status"] == Status.OK.value for r in rows) == n_ok

    def never_fits(pages):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(invoice_extractor, "encoder", never_fits)
    rows = invoice_extractor(batch).to_pylist()
    assert {r["status"] for r in rows if r["page_index"] is not None} >= {Status.MODEL_ERROR.value}
    assert all("out of memory" in r["error"] for r in rows if r["status"] == Status.MODEL_ERROR.value)


def test_page_time_limit_closes_output_validly(tiny_model, samples):
    ex = ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("paper"),
                   ExtractSettings(batch_size=2, max_new_tokens=400, page_time_limit_s=1e-6))
    rows = ex(page_batch(samples, ["invoice.pdf"])).to_pylist()
    timed = [r for r in rows if r["status"] == Status.GENERATION_TIMEOUT.value]
    assert timed and all(r["valid"] and "--page-time-limit 1e-06 s" in r["error"] for r in timed)
    assert all(r["output_tokens"] < 400 for r in timed)


def test_settings_without_a_budget_take_the_schemas(invoice_extractor):
    loaded = (invoice_extractor.model, invoice_extractor.processor, invoice_extractor.device)
    transcriber = ExtractFields(invoice_extractor.spec, load_schema("transcribe"), ExtractSettings(batch_size=2),
                                loaded=loaded)
    assert ExtractSettings().max_new_tokens is None
    assert transcriber.settings.max_new_tokens == 1536  # schemas/builtin/transcribe.json
    assert invoice_extractor.settings.max_new_tokens == 120  # given: it wins


def test_rows_of_a_pydantic_class_validate_under_the_class(tiny_model, samples):
    """The issue's invoice: optional keys that may not be null take their default, or are left
    out; every ok row then passes the user's class and the user's JSON Schema."""
    from test_answer_validity import Invoice

    extractor = ExtractFields(ModelSpec(model=str(tiny_model)), load_schema(Invoice),
                              ExtractSettings(batch_size=2, max_new_tokens=8))
    rows = extractor(page_batch(samples, ["invoice.pdf"])).to_pylist()
    ok = [r for r in rows if r["status"] == Status.OK.value]
    assert ok and all(r["truncated"] for r in ok)  # 8 tokens: every answer closed by the closer
    for r in ok:
        assert r["valid"] is True
        value = json.loads(r["raw_text"])
        jsonschema.validate(value, Invoice.model_json_schema())
        Invoice.model_validate(value)
        assert value.get("kind", "invoice") == r["fields"]["kind"]  # the default in both, or what the model wrote
        assert "items" not in value or value["items"] is not None
