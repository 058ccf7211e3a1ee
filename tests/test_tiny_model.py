"""The tiny model reads the page: its answer follows the pixels, so the other tests can see an
image-path bug (crops in the wrong order, features in another row's place, a bundle's pages
swapped). With transformers' own init (latents all ones, std 0.02) every page gave one answer."""
from __future__ import annotations

import numpy as np
import pymupdf
import pytest
import torch
from PIL import Image

from cheap import SMALL_RENDER
from pageray.extractors.extractor import ExtractFields, ExtractSettings
from pageray.extractors.inputs import ModelInputs
from pageray.extractors.model.loading import ModelSpec
from pageray.extractors.vision.pixels import model_crops
from pageray.pipeline.datamodel import Status, rows_to_columns
from pageray.pipeline.render.pages import RenderLimits, iter_render, render_document
from pageray.pipeline.render.step import RenderPages
from pageray.schemas import load_schema

LIMITS = RenderLimits(**SMALL_RENDER)
PAGES = ["invoice.pdf", "receipt.pdf", "rotated_table.pdf", "scanned_invoice.pdf"]
IMAGE = ("image", "image_width", "image_height")


@pytest.fixture(scope="module")
def extractor(tiny_model):
    return ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("transcribe"),
                         ExtractSettings(batch_size=4, max_new_tokens=16))


def first_pages(samples, names) -> list[dict]:
    rows = []
    for name in names:
        page = next(iter(render_document((samples / name).read_bytes(), name, LIMITS)))
        assert page["status"] == Status.OK.value
        rows.append({**page, "run_id": "r1", "doc_id": name, "source_uri": str(samples / name),
                     "doc_sha256": "x", "doc_size": 1, "doc_mtime_ns": 1})
    return rows


def pixels(row) -> np.ndarray:
    return np.frombuffer(row["image"], np.uint8).reshape(row["image_height"], row["image_width"], 3)


def answers(extractor, rows) -> list[str]:
    out = extractor(rows_to_columns([dict(r) for r in rows])).to_pylist()
    assert [r["doc_id"] for r in out] == [r["doc_id"] for r in rows]
    assert all(r["status"] == Status.OK.value and r["valid"] for r in out)
    return [r["raw_text"] for r in out]


def test_different_pages_give_different_answers_under_the_grammar(extractor, samples):
    texts = answers(extractor, first_pages(samples, PAGES))
    assert len(set(texts)) == len(PAGES), texts


def test_different_pages_give_different_answers_without_the_grammar(extractor, samples):
    images = [[Image.fromarray(pixels(r))] for r in first_pages(samples, PAGES)]
    inputs = extractor.processor(text=[extractor.prompt] * len(images), images=images, padding=True,
                                 return_tensors="pt")
    with torch.inference_mode():
        out = extractor.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    continuations = {tuple(o[inputs["input_ids"].shape[1]:].tolist()) for o in out}
    assert len(continuations) == len(PAGES)


def test_swapping_two_pages_images_in_a_batch_swaps_their_answers(extractor, samples):
    rows = first_pages(samples, PAGES)
    before = answers(extractor, rows)
    swapped = [dict(r) for r in rows]
    for key in IMAGE:  # only the pixels move: names, text layers and positions stay
        swapped[0][key], swapped[1][key] = rows[1][key], rows[0][key]
    after = answers(extractor, swapped)
    assert before[0] != before[1]
    assert after == [before[1], before[0], *before[2:]]


def test_the_order_of_a_pages_crops_changes_its_answer(extractor, samples):
    [row] = first_pages(samples, ["invoice.pdf"])
    crops = model_crops(pixels(row), split=True)
    assert len(crops) == 5  # four quarters, then the whole page
    shuffled = [crops[1], crops[0], *crops[2:]]
    results, _ = extractor.decoder(extractor.encoder([crops, shuffled, crops]), 16)
    first, other, again = (r.text for r in results)
    assert first == again and first != other


def two_page_pdf(samples, names) -> bytes:
    doc = pymupdf.open()
    for name in names:
        with pymupdf.open(samples / name) as src:
            doc.insert_pdf(src, from_page=0, to_page=0)
    return doc.tobytes()


def test_the_order_of_a_bundles_pages_changes_its_answer(extractor, samples, tmp_path):
    paths = []
    for order in (PAGES[:2], PAGES[1::-1]):
        path = tmp_path / ("-".join(n.removesuffix(".pdf") for n in order) + ".pdf")
        path.write_bytes(two_page_pdf(samples, order))
        paths.append(path)
    step = RenderPages("r1", LIMITS, renderer=lambda data, name: iter_render(data, name, LIMITS),
                       prepare=ModelInputs(split=True, multi_image_pages=2))
    plan = {"doc_id": [p.stem for p in paths], "source_uri": [str(p) for p in paths],
            "doc_size": [p.stat().st_size for p in paths], "doc_mtime_ns": [1, 1]}
    bundles = [dict(zip(out, values)) for out in step(plan) for values in zip(*out.values())]
    assert len(bundles) == 2  # each document is one row: read in one prompt
    out = extractor({k: [b.get(k) for b in bundles] for k in bundles[0]}).to_pylist()
    leads = {r["doc_id"]: r for r in out if r["page_index"] == 0}
    assert all(r["status"] == Status.OK.value and r["method"] == "multi_image" for r in leads.values())
    forward, backward = (leads[p.stem]["raw_text"] for p in paths)
    assert forward != backward
