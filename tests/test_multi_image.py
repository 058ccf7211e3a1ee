"""Document scope on the model's side: "page k of n" prompts, and the multi-image path (a short
document's pages in one prompt: bundled by the render step, one answer, page rows kept)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import duckdb
import jsonschema
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from cheap import SMALL_RENDER
from corpus import mupdf_pdf
from pageray.extractors import bundle
from pageray.extractors.extractor import ExtractFields, ExtractSettings
from pageray.extractors.inputs import ModelInputs
from pageray.extractors.model.loading import ModelSpec
from pageray.extractors.multi_image import METHOD
from pageray.extractors.prompts import image_tokens_per_page, multi_image_page_limit
from pageray.pipeline.datamodel import Status, document_schema
from pageray.pipeline.ledger.documents import document_row
from pageray.pipeline.render.pages import RenderLimits, iter_render
from pageray.pipeline.render.step import RenderPages
from pageray.schemas import arrow_type, build_prompt, load_schema

INVOICE = load_schema("invoice")
LIMITS = RenderLimits(**SMALL_RENDER)


def test_the_prompt_names_the_page_or_the_pages():
    alone = build_prompt(INVOICE)
    page = build_prompt(INVOICE, page=(1, 3))
    whole = build_prompt(INVOICE, pages=3)
    assert alone.startswith("Read this document page and extract")
    assert page.startswith("Read this document page (page 2 of 3) and extract the following from this page.")
    assert whole.startswith("Read these 3 pages of one document, in order, and extract the following for the whole")
    assert "not in the document" in whole and "not on the page" in page
    assert [line for line in page.splitlines()[1:]] == [line for line in alone.splitlines()[1:]]


def test_the_default_page_limit_fits_the_context():
    assert image_tokens_per_page(True) == 5 * 65 + 1 and image_tokens_per_page(False) == 66
    assert multi_image_page_limit(True, 768) == 7 and multi_image_page_limit(False, 768) == 34
    assert multi_image_page_limit(True, 8192) == 1


def plan_row(path: Path) -> dict:
    return {"doc_id": path.stem, "source_uri": str(path), "doc_size": path.stat().st_size, "doc_mtime_ns": 1}


def render(paths, max_pages, done=None):
    step = RenderPages("r1", LIMITS, renderer=lambda data, name: iter_render(data, name, LIMITS),
                       prepare=ModelInputs(split=True, multi_image_pages=max_pages))
    rows = [plan_row(p) | ({"done_pages": done} if done is not None else {}) for p in paths]
    batch = {k: [r.get(k) for r in rows] for k in rows[0]}
    return [dict(zip(out, values)) for out in step(batch) for values in zip(*out.values())]


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    for pages in (1, 2, 3):
        (folder / f"doc{pages}.pdf").write_bytes(mupdf_pdf(pages))
    return folder


def test_the_render_step_bundles_whole_short_documents_only(pdfs):
    rows = render(sorted(pdfs.iterdir()), max_pages=2)
    bundles = [r for r in rows if bundle.is_bundle(r)]
    assert sorted(r["doc_id"] for r in bundles) == ["doc1", "doc2"]
    assert [r["page_index"] for r in rows if r["doc_id"] == "doc3"] == [0, 1, 2]  # over the limit: pages
    two = next(r for r in bundles if r["doc_id"] == "doc2")
    assert len(two["crop_shapes"]) == 10 and bundle.page_count(two) == 2
    pages = bundle.unbundle(two)
    assert [p["page_index"] for p in pages] == [0, 1] and all("Corpus page" in p["text_layer"] for p in pages)
    assert all(p.get("pixels") is None for p in pages)
    # a document an earlier run half committed is finished page by page
    resumed = render([pdfs / "doc2.pdf"], max_pages=2, done=[0])
    assert [(bundle.is_bundle(r), r["page_index"]) for r in resumed] == [(False, 1)]


@pytest.fixture(scope="module")
def extractor(tiny_model):
    return ExtractFields(ModelSpec(model=str(tiny_model)), INVOICE,
                         ExtractSettings(batch_size=4, max_new_tokens=40, page_prompts=True))


def test_page_prompts_say_page_k_of_n_and_batch_by_length(extractor, monkeypatch):
    tok = extractor.processor.tokenizer
    row = {"page_index": 1, "page_count": 3}
    assert "page 2 of 3" in tok.decode(extractor._prompt_ids(row))
    rows = [{"page_index": i, "page_count": 12} for i in range(12)]
    chunks = extractor._chunks(rows)
    assert sorted(i["page_index"] for c in chunks for i in c) == list(range(12))
    assert all(len({len(extractor._prompt_ids(r)) for r in c}) == 1 and len(c) <= 4 for c in chunks)
    monkeypatch.setattr(extractor, "settings", dataclasses.replace(extractor.settings, page_prompts=False))
    assert extractor._prompt_ids(row) == extractor.prompts.ids()  # page scope: the page alone


def test_the_multi_image_prompt_holds_n_image_blocks_and_the_processor_takes_n_images(extractor):
    ids = extractor.prompts.ids(pages=3)
    image = extractor.model.config.image_token_id
    assert sum(1 for i in ids if i == image) == 3 * 5 * 64
    runs = sum(1 for a, b in zip([None] + ids, ids) if b == image and a != image)
    assert runs == 3 * 5  # five crops per page, each its own block of 64 latents
    blanks = [Image.new("RGB", (600, 800), (255, 255, 255))] * 3
    inputs = extractor.processor(text=[extractor.prompts.text(pages=3)], images=[blanks], return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == ids and inputs["pixel_values"].shape[1] == 3 * 5


def test_a_bundle_is_read_in_one_prompt_and_leaves_as_its_page_rows(extractor, pdfs, monkeypatch):
    rows = render([pdfs / "doc2.pdf", pdfs / "doc3.pdf"], max_pages=2)
    batch = {k: [r.get(k) for r in rows] for k in rows[0]}  # a plain dict batch, as Ray hands it
    seen = []
    real = extractor.encoder
    monkeypatch.setattr(extractor, "encoder", lambda pages: seen.append([len(p) for p in pages]) or real(pages))
    out = extractor(batch).to_pylist()
    assert [len(c) for c in seen] and [10] in seen  # the bundle: one row of 2 pages x 5 crops
    doc2 = [r for r in out if r["doc_id"] == "doc2"]
    doc3 = [r for r in out if r["doc_id"] == "doc3"]
    assert [r["page_index"] for r in doc2] == [0, 1] and [r["method"] for r in doc2] == [METHOD] * 2
    assert {r["method"] for r in doc3} == {"page"}
    lead, other = doc2
    assert lead["status"] == other["status"] == Status.OK.value and lead["valid"]
    jsonschema.validate(json.loads(lead["raw_text"]), INVOICE.source_schema)
    assert lead["fields"] is not None and other["fields"] is None and other["raw_text"] is None
    assert lead["input_tokens"] == len(extractor.prompts.ids(pages=2)) and lead["output_tokens"] > 0
    assert lead["confidence"] is None or 0 < lead["confidence"] <= 1  # None: a budget spent closing the JSON
    assert lead["ungrounded_fields"] is not None  # against the text of both pages

    doc = document_row(INVOICE, "r1", doc2)
    assert doc["method"] == METHOD and doc["fields"] == lead["fields"] and doc["field_pages"] is None
    assert doc["status"] == "ok" and doc["complete"] and doc["conflicts"] == []
    assert all(g["page"] is None and g["found"] is not None for g in doc["grounding"])
    assert {g["field"] for g in doc["grounding"] if not g["found"]} == set(doc["ungrounded_fields"])
    pa.Table.from_pylist([doc], schema=document_schema(arrow_type(INVOICE)))  # schema-valid by construction
    merged = document_row(INVOICE, "r1", doc3)
    assert merged["method"] == "merge" and all(g["page"] is not None for g in merged["grounding"])


@pytest.mark.slow
def test_a_multi_image_run_writes_one_row_per_document_and_a_resubmit_writes_none(ray_local, pdfs, tiny_model,
                                                                                  tmp_path):
    from pageray.pipeline.config import RunConfig
    from pageray.pipeline.driver.run import run_extraction

    out = tmp_path / "out"
    config = dict(inputs=[str(pdfs)], out=str(out), schema_ref="invoice", model=str(tiny_model), max_new_tokens=16,
                  batch_size=4, document_mode="multi_image", multi_image_max_pages=2, **SMALL_RENDER)
    t0 = time.monotonic()
    record = run_extraction(RunConfig.build(**config))
    print(f"multi-image run: {time.monotonic() - t0:.1f} s")
    assert record["config"]["multi_image_max_pages"] == 2 and record["documents_written"] == 3
    docs = duckdb.sql(f"select source_uri, method, status, page_count, fields, grounding "
                      f"from read_parquet('{out}/documents/*.parquet') order by source_uri").fetchall()
    assert [(Path(d[0]).name, d[1], d[3]) for d in docs] == [
        ("doc1.pdf", "multi_image", 1), ("doc2.pdf", "multi_image", 2), ("doc3.pdf", "merge", 3)]
    assert all(d[2] == "ok" and d[4] is not None for d in docs)
    pages = pd.read_parquet(out / "data")
    pages["name"] = pages.source_uri.str.rsplit("/", n=1).str[-1]
    assert pages.groupby("name").size().to_dict() == {"doc1.pdf": 1, "doc2.pdf": 2, "doc3.pdf": 3}
    assert set(pages[pages.name == "doc2.pdf"].method) == {METHOD}
    assert set(pages[pages.name == "doc3.pdf"].method) == {"page"}

    again = run_extraction(RunConfig.build(**config))
    assert again["documents_written"] == 0 and again["pages"] == 0
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/documents/*.parquet')").fetchall() == [(3,)]
    assert len(pd.read_parquet(out / "data")) == 6


def test_a_bundle_the_model_cannot_take_marks_every_page(extractor, pdfs, monkeypatch):
    import torch

    def never_fits(pages):
        raise torch.OutOfMemoryError("CUDA out of memory")

    rows = render([pdfs / "doc2.pdf"], max_pages=2)
    monkeypatch.setattr(extractor, "encoder", never_fits)
    out = extractor({k: [r.get(k) for r in rows] for k in rows[0]}).to_pylist()
    assert [(r["page_index"], r["status"], r["method"]) for r in out] == [
        (0, Status.MODEL_ERROR.value, METHOD), (1, Status.MODEL_ERROR.value, METHOD)]  # redone whole next run
    doc = document_row(INVOICE, "r1", out)
    assert doc["status"] == Status.MODEL_ERROR.value and doc["fields"] is None and doc["failed_pages"] == [0, 1]


def test_bundles_and_pages_share_one_engine_call_and_get_the_static_rows(extractor, pdfs):
    """The continuous engine (the default) takes bundles beside single pages of other prompt
    lengths in its slots, in one call, and each gets exactly the tokens of static batches."""
    from pageray.pipeline.datamodel import DECODE_COLUMNS

    rows = render(sorted(pdfs.iterdir()), max_pages=2)  # doc1, doc2 bundled; doc3 as 3 pages
    tables = {}
    for engine in ("static", "continuous"):
        step = ExtractFields(extractor.spec, INVOICE, dataclasses.replace(extractor.settings, batch_size=2,
                             max_new_tokens=24, engine=engine),
                             loaded=(extractor.model, extractor.processor, extractor.device))
        tables[engine] = step({k: [r.get(k) for r in rows] for k in rows[0]}).to_pylist()
    counted = {engine: [r for r in table if r["decode_steps"]] for engine, table in tables.items()}
    assert len(counted["continuous"]) == 1 and len(counted["static"]) >= 3  # one engine call; static: 3 batches
    assert {r["method"] for r in tables["continuous"]} == {METHOD, "page"}
    for ours, theirs in zip(tables["continuous"], tables["static"]):
        confidence = theirs.pop("confidence")  # None: a budget spent closing the JSON
        assert ours.pop("confidence") == (confidence if confidence is None else pytest.approx(confidence, rel=1e-4))
        for key in ("extract_ms", "created_at", *DECODE_COLUMNS):
            ours.pop(key), theirs.pop(key)
        assert ours == theirs
