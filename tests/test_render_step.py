"""The render step on plain dict batches of plan rows, without Ray (in-process renderer)."""
from __future__ import annotations

import hashlib
from collections import Counter

from corpus import CLAIMED_PAGES, claimed_pages, mupdf_pdf

from pageray.extractors.inputs import ModelInputs
from pageray.pipeline.render.pages import RenderLimits, iter_render
from pageray.pipeline.render.step import ROWS_PER_OUTPUT_BATCH, RenderPages

LIMITS = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128, max_pages_per_doc=3)


def step(limits: RenderLimits = LIMITS) -> RenderPages:
    return RenderPages("run-1", limits, renderer=lambda data, name: iter_render(data, name, limits))


def plan_batch(*paths, done_pages=None) -> dict[str, list]:
    return {"doc_id": [f"d{i}" for i in range(len(paths))], "source_uri": [str(p) for p in paths],
            "doc_size": [p.stat().st_size if p.exists() else None for p in paths],
            "doc_mtime_ns": [None] * len(paths), "done_pages": [done_pages] * len(paths)}


def rows_of(batches) -> list[dict]:
    out = []
    for batch in batches:
        out += [dict(zip(batch, values)) for values in zip(*batch.values())]
    return out


def test_pages_carry_the_document_identity(tmp_path):
    pdf = tmp_path / "three.pdf"
    pdf.write_bytes(mupdf_pdf(3))
    rows = rows_of(step()(plan_batch(pdf)))
    assert [r["page_index"] for r in rows] == [0, 1, 2]
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["doc_sha256"] for r in rows} == {hashlib.sha256(pdf.read_bytes()).hexdigest()}
    assert {(r["run_id"], r["doc_id"], r["doc_size"]) for r in rows} == {("run-1", "d0", pdf.stat().st_size)}
    assert all(r["image"] is not None and "Corpus page" in r["text_layer"] for r in rows)


def test_pages_already_committed_are_not_rendered_again(tmp_path):
    pdf = tmp_path / "three.pdf"
    pdf.write_bytes(mupdf_pdf(3))
    rows = rows_of(step()(plan_batch(pdf, done_pages=[0, 2])))
    assert [r["page_index"] for r in rows] == [1]


def test_unreadable_and_oversized_files_become_rows(tmp_path):
    big = tmp_path / "big.pdf"
    big.write_bytes(mupdf_pdf(1) + b"\0" * 5000)
    missing = tmp_path / "gone.pdf"
    limits = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128, max_file_bytes=4000)
    rows = rows_of(step(limits)(plan_batch(big, missing)))
    assert [(r["doc_id"], r["status"]) for r in rows] == [("d0", "file_too_large"), ("d1", "read_error")]
    assert "max_file_bytes=4,000" in rows[0]["error"] and "cannot read file" in rows[1]["error"]


def test_skipped_pages_travel_in_few_batches_and_images_in_small_ones(tmp_path):
    many = tmp_path / "many.pdf"
    many.write_bytes(claimed_pages(shared_tree=True, padded=True))
    batches = list(step()(plan_batch(many)))
    rows = rows_of(batches)
    assert len(rows) == CLAIMED_PAGES
    assert Counter(r["status"] for r in rows) == {"ok": 3, "page_skipped": CLAIMED_PAGES - 3}
    assert len(batches) <= CLAIMED_PAGES // ROWS_PER_OUTPUT_BATCH + 2
    # the three images travel together, apart from the skipped rows
    [images] = [b for b in batches if any(i is not None for i in b["image"])]
    assert [i is not None for i in images["image"]] == [True] * 3


def test_a_batch_never_holds_more_than_its_share_of_images(tmp_path):
    pdf = tmp_path / "ten.pdf"
    pdf.write_bytes(mupdf_pdf(10))
    limits = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128)
    batches = list(step(limits)(plan_batch(pdf)))
    assert [len(b["page_index"]) for b in batches] == [4, 4, 2]


def test_batches_span_documents_so_one_page_documents_fill_a_model_batch(tmp_path):
    paths = []
    for number in range(5):
        paths.append(tmp_path / f"one_{number}.pdf")
        paths[-1].write_bytes(mupdf_pdf(1))
    limits = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128)
    renderer = RenderPages("run-1", limits, renderer=lambda d, n: iter_render(d, n, limits), images_per_batch=4)
    batches = list(renderer(plan_batch(*paths)))
    assert [len(b["doc_id"]) for b in batches] == [4, 1]
    assert batches[0]["doc_id"] == ["d0", "d1", "d2", "d3"]
    # a document that fails sits between them: its row waits, the images stay together
    mixed = list(renderer(plan_batch(paths[0], tmp_path / "gone.pdf", *paths[1:4])))
    assert [b["doc_id"] for b in mixed] == [["d0", "d2", "d3", "d4"], ["d1"]]
    assert mixed[1]["status"] == ["read_error"]


def test_with_split_pages_leave_as_the_models_crops(tmp_path):
    import numpy as np

    from pageray.extractors.vision.pixels import model_crops, unpack_crops

    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(mupdf_pdf(2))
    plain = rows_of(step()(plan_batch(pdf)))
    split = RenderPages("run-1", LIMITS, renderer=lambda data, name: iter_render(data, name, LIMITS),
                        prepare=ModelInputs(split=True))
    rows = rows_of(split(plan_batch(pdf)))
    assert [r["page_index"] for r in rows] == [0, 1]
    for before, after in zip(plain, rows):
        assert after["image"] is None and len(after["crop_shapes"]) == 5
        image = np.frombuffer(before["image"], np.uint8).reshape(before["image_height"], before["image_width"], 3)
        for ours, expected in zip(unpack_crops(after["pixels"], after["crop_shapes"]), model_crops(image, True)):
            assert np.array_equal(ours, expected)


def test_a_page_that_cannot_be_prepared_is_a_row(tmp_path):
    pdf = tmp_path / "one.pdf"
    pdf.write_bytes(mupdf_pdf(1))

    def short_image(data, name):  # a renderer whose image does not match its stated size
        for page in iter_render(data, name, LIMITS):
            yield {**page, "image": page["image"][:-3]}

    rows = rows_of(RenderPages("run-1", LIMITS, renderer=short_image, prepare=ModelInputs(split=True))(plan_batch(pdf)))
    assert [(r["status"], r["pixels"], r["image"]) for r in rows] == [("render_error", None, None)]
    assert rows[0]["error"].startswith("page 1: preparing it for the model failed: ValueError")
