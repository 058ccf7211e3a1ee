"""The actor's own path (CPU crops, per-shape vision, our decode loop) against the model card's
(processor, `generate` with the constrained logits processor): same model, same pages."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pageray.extractors.decoding.rows import ConstrainedBatch
from pageray.extractors.extractor import ExtractFields, ExtractSettings
from pageray.extractors.model.loading import ModelSpec
from pageray.extractors.vision.pixels import model_crops
from pageray.pipeline.render.pages import RenderLimits, render_document
from pageray.schemas import load_schema


@pytest.fixture(scope="module")
def extractor(tiny_model):
    # the table schema's reserve is 39 tokens: with a budget of 70, rows choose freely, then are closed
    return ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("table"),
                         ExtractSettings(batch_size=2, max_new_tokens=70))


def _pages(samples, names):
    out = []
    for name in names:
        for page in render_document((samples / name).read_bytes(), name, RenderLimits()):
            if page.get("image") is not None:
                out.append(np.frombuffer(page["image"], np.uint8).reshape(page["image_height"], page["image_width"], 3))
    return out


def _processor_inputs(ex, pages):
    from PIL import Image

    images = [[Image.fromarray(p)] for p in pages]
    return ex.processor(text=[ex.prompt] * len(pages), images=images, padding=True, return_tensors="pt")


def test_features_per_shape_equal_the_models_own_on_padded_batches(extractor, samples):
    pages = _pages(samples, ["invoice.pdf", "rotated_table.pdf"])  # letter and landscape: padding
    ours = extractor.encoder([model_crops(p, split=True) for p in pages])
    inputs = _processor_inputs(extractor, pages)
    with torch.inference_mode():
        theirs = extractor.model.model.get_image_features(
            inputs["pixel_values"], inputs["pixel_attention_mask"]).pooler_output
    theirs = torch.stack(list(theirs))
    assert ours.shape == theirs.shape == (2, 5 * 64, extractor.model.config.perceiver_config.hidden_size)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_prompt_is_the_processors(extractor, samples):
    [page] = _pages(samples, ["receipt.pdf"])
    inputs = _processor_inputs(extractor, [page])
    assert inputs["input_ids"][0].tolist() == extractor._prompt_ids()
    # the real tokenizer: 5 crops x (64 latents + 1) + 1 image tokens and the table prompt
    assert extractor.decoder.prompt_tokens() == inputs["input_ids"].shape[1] > 600


def test_decode_loop_equals_generate_with_the_logits_processor(extractor, samples):
    pages = _pages(samples, ["invoice.pdf", "receipt.pdf"])  # both letter: the processor pads nothing
    budget = 70
    features = extractor.encoder([model_crops(p, split=True) for p in pages])
    ours, stats = extractor.decoder(features, budget)
    inputs = _processor_inputs(extractor, pages)
    constrained = ConstrainedBatch(extractor.grammar, len(pages), budget, None)
    with torch.inference_mode():
        extractor.model.generate(**inputs, logits_processor=[constrained], max_new_tokens=constrained.max_new_tokens,
                                 do_sample=False, eos_token_id=extractor.stop_ids, pad_token_id=extractor.stop_ids[0])
    theirs = constrained.results()
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [r.truncated for r in ours] == [r.truncated for r in theirs]
    # both rows are closed at the budget's end; `generate` stops before its logits processor sees
    # that last (stop) token, so it counts one token less
    assert [r.output_tokens for r in ours] == [r.output_tokens + 1 for r in theirs]
    assert any(r.truncated for r in ours)  # 70 tokens cannot hold a table: forcing ran
    for a, b in zip(ours, theirs):
        assert a.confidence is not None and a.confidence == pytest.approx(b.confidence, rel=1e-4)
    assert stats.steps == max(r.output_tokens for r in ours)
