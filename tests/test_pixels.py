"""extractors.pixels: CPU crops + device normalize must give the Idefics2 processor's pixel_values bit for bit."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pymupdf
import pytest
import torch
from PIL import Image
from transformers.models.idefics2.image_processing_pil_idefics2 import (
    Idefics2ImageProcessorPil,
    get_resize_output_image_size,
)

from pageray.extractors.model.loading import PROCESSOR_SIZE
from pageray.extractors.vision.pixels import (
    MAX_MODEL_ASPECT,
    MIN_MODEL_SIDE_PX,
    PreparePixels,
    check_processor,
    model_canvas,
    model_crops,
    normalize,
    pack_crops,
    processor_constants,
    resize_output_size,
    unpack_crops,
)
from pageray.pipeline.errors import ModelLoadError
from pageray.pipeline.render.pages import RenderLimits, render_document
from pageray.pipeline.samples import SAMPLES


def _pdf(width: float, height: float) -> bytes:
    with pymupdf.open() as doc:
        page = doc.new_page(width=width, height=height)
        page.draw_rect(pymupdf.Rect(0, 0, width / 3, height / 3), color=None, fill=(0.2, 0.4, 0.6))
        page.insert_text((2, min(height - 1, 12)), "pageray", fontsize=min(10, height))
        return doc.tobytes()


def _png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * 1000 + height)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _render(name: str, data: bytes) -> np.ndarray:
    row = render_document(data, name, RenderLimits())[0]  # the pipeline's settings: 1960 px longest side
    assert row["status"] == "ok", row["error"]
    return np.frombuffer(row["image"], np.uint8).reshape(row["image_height"], row["image_width"], 3)


def _synthetic(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(7).integers(0, 256, (height, width), dtype=np.uint8)
    return np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), noise], -1).astype(np.uint8)


PAGES = {  # name -> how to get the (H, W, 3) page image
    "letter": lambda: _render("invoice.pdf", SAMPLES["invoice.pdf"]()),
    "a4": lambda: _render("paper_first_page.pdf", SAMPLES["paper_first_page.pdf"]()),
    "landscape": lambda: _render("rotated_table.pdf", SAMPLES["rotated_table.pdf"]()),
    "scanned": lambda: _render("scanned_invoice.pdf", SAMPLES["scanned_invoice.pdf"]()),
    "square": lambda: _render("square.pdf", _pdf(500, 500)),
    "tiny_png": lambda: _render("tiny.png", _png(10, 7)),  # padded to 28 x 28, then upscaled to 378
    "thin_strip": lambda: _render("strip.pdf", _pdf(1, 5000)),  # 1 x 1960 px, padded to 49 x 1960
    "synthetic_200x300": lambda: _synthetic(300, 200),  # shortest-edge upscale to 378
}


@pytest.fixture(scope="module")
def pages() -> dict[str, np.ndarray]:
    return {name: make() for name, make in PAGES.items()}


def _processor(split: bool) -> Idefics2ImageProcessorPil:
    return Idefics2ImageProcessorPil(do_image_splitting=split, size=dict(PROCESSOR_SIZE))


def _reference_pil(image: np.ndarray) -> Image.Image:
    """The page as the extractor gave it to the processor: a thin strip padded white, bottom/right."""
    pil = Image.fromarray(image, "RGB")
    canvas = model_canvas(*pil.size)
    if canvas != pil.size:
        padded = Image.new("RGB", canvas, (255, 255, 255))
        padded.paste(pil, (0, 0))
        pil = padded
    return pil


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
@pytest.mark.parametrize("name", list(PAGES))
def test_crops_normalized_equal_the_processor(pages, name, split):
    image = pages[name]
    proc = _processor(split)
    expected = proc(images=[[_reference_pil(image)]], return_tensors="pt")
    crops = model_crops(image, split)
    assert len(crops) == (5 if split else 1) == expected["pixel_values"].shape[1]
    rescale, mean, std, _ = processor_constants(proc)
    for i, crop in enumerate(crops):
        assert crop.dtype == np.uint8 and crop.flags.c_contiguous and crop.shape[2] == 3
        h, w = crop.shape[:2]
        got = normalize(torch.from_numpy(crop)[None], rescale, mean, std)
        ref = expected["pixel_values"][0, i]
        assert got.dtype == ref.dtype == torch.float32
        assert torch.equal(got[0], ref[:, :h, :w]), (name, i, crop.shape)
        mask = expected["pixel_attention_mask"][0, i]
        assert int(mask.sum()) == h * w and bool(mask[:h, :w].all())
        assert not ref[:, h:, :].any() and not ref[:, :, w:].any()


def test_normalize_chunks_like_one_pass(monkeypatch):
    import pageray.extractors.vision.pixels as pixels

    x = torch.from_numpy(np.stack([_synthetic(40, 30)] * 5))
    whole = normalize(x, 1 / 255, (0.5, 0.4, 0.3), (0.2, 0.3, 0.5))
    monkeypatch.setattr(pixels, "_INDEX_CHUNK_ELEMENTS", 1)
    assert torch.equal(normalize(x, 1 / 255, (0.5, 0.4, 0.3), (0.2, 0.3, 0.5)), whole)
    assert whole.shape == (5, 3, 40, 30) and whole.is_contiguous()


def test_normalize_is_the_processors_math_for_every_value():
    """The lookup table holds, for each of the 256 values and each channel, exactly what the
    processor's float64-then-float32 arithmetic gives (here done pixel by pixel), in any dtype."""
    every = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(2, 16, 16, 3).contiguous()
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    x = every.permute(0, 3, 1, 2).to(torch.float64) * (1 / 255)
    ref = (x.to(torch.float32) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(normalize(every, 1 / 255, mean, std), ref)
    assert torch.equal(normalize(every, 1 / 255, mean, std, torch.bfloat16), ref.to(torch.bfloat16))


def test_resize_output_size_is_the_processors():
    for h in (1, 2, 27, 28, 300, 377, 378, 379, 757, 979, 980, 981, 1515, 1959, 1960, 4000):
        for w in (1, 3, 28, 49, 200, 378, 980, 981, 1386, 1515, 1960, 7001):
            ref = get_resize_output_image_size(np.zeros((3, h, w)), SimpleNamespace(**PROCESSOR_SIZE))
            assert resize_output_size(h, w) == ref, (h, w)


def test_pack_unpack_round_trip(pages):
    crops = model_crops(pages["letter"], True)
    buf, shapes = pack_crops(crops)
    assert isinstance(buf, bytes) and len(buf) == sum(h * w * 3 for h, w in shapes)
    assert shapes == [[c.shape[0], c.shape[1]] for c in crops]
    for holder in (buf, memoryview(buf), pa.py_buffer(buf)):
        views = unpack_crops(holder, shapes)
        assert all(np.array_equal(a, b) for a, b in zip(views, crops))
        assert not views[0].flags.writeable  # views over the buffer, not copies
    assert np.shares_memory(unpack_crops(np.frombuffer(buf, np.uint8), shapes)[1], np.frombuffer(buf, np.uint8))
    with pytest.raises(ValueError, match="need"):
        unpack_crops(buf[:-1], shapes)


def test_prepare_pixels_on_rows_and_column_batches(pages):
    image = pages["synthetic_200x300"]
    page = {"doc_id": "d", "page_index": 0, "image": image.tobytes(), "image_width": 200, "image_height": 300}
    empty = {"doc_id": "d", "page_index": 1, "image": None, "image_width": None, "image_height": None}
    step = PreparePixels(split=True)
    out = step.page(page)
    assert "image" not in out and out["image_width"] == 200 and out["crop_shapes"] == [[378, 378]] * 4 + [[378, 378]]
    assert all(np.array_equal(a, b) for a, b in zip(unpack_crops(out["pixels"], out["crop_shapes"]),
                                                    model_crops(image, True)))
    assert step.page(empty) == empty
    assert step([page, empty]) == [out, empty]
    columns = {k: [page[k], empty[k]] for k in page}
    for batch in (columns, pa.Table.from_pydict(columns)):
        got = step(batch)
        assert list(got) == ["doc_id", "page_index", "image_width", "image_height", "pixels", "crop_shapes"]
        assert got["pixels"] == [out["pixels"], None] and got["crop_shapes"] == [out["crop_shapes"], None]
    with pytest.raises(ValueError, match="bytes"):
        step.page({**page, "image_width": 201})


def test_processor_constants_and_settings_check():
    proc = _processor(True)
    assert processor_constants(proc) == (1 / 255, (0.5,) * 3, (0.5,) * 3, 2)
    assert processor_constants(SimpleNamespace(image_processor=proc)) == processor_constants(proc)
    check_processor(proc, split=True)
    check_processor(SimpleNamespace(image_processor=proc))
    bad = {"resample": Image.Resampling.BICUBIC, "do_resize": False, "do_rescale": False, "do_normalize": False,
           "do_convert_rgb": False, "size": {"longest_edge": 1960, "shortest_edge": 378}}
    for setting, value in bad.items():
        other = Idefics2ImageProcessorPil(**{"do_image_splitting": True, "size": dict(PROCESSOR_SIZE), setting: value})
        with pytest.raises(ModelLoadError, match=setting):
            check_processor(other)
    with pytest.raises(ModelLoadError, match="do_image_splitting"):
        check_processor(proc, split=False)


@pytest.mark.parametrize("size, canvas", [
    ((1960, 1386), (1960, 1386)),  # an A4 page is left alone
    ((1960, 1), (1960, 49)),       # a 5000 x 1 pt strip: aspect capped at 40
    ((1, 1960), (49, 1960)),
    ((10, 5), (28, 28)),           # a speck: the minimum side
    ((980, 24), (980, 28)),
])
def test_model_canvas_pads_only_what_the_processor_cannot_take(size, canvas):
    assert model_canvas(*size) == canvas
    width, height = canvas
    assert min(width, height) >= MIN_MODEL_SIDE_PX and max(width, height) / min(width, height) <= MAX_MODEL_ASPECT
