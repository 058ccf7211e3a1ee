"""Model loading: the one from_pretrained path, and errors that say what was tried."""
from __future__ import annotations

import json

import pytest

from pageray.extractors.model.loading import ModelSpec, load_model, preflight
from pageray.extractors.model.tiny import is_tiny_checkpoint
from pageray.pipeline.errors import ModelLoadError


def test_tiny_checkpoint_loads_through_the_real_path(tiny_model):
    assert is_tiny_checkpoint(tiny_model)
    model, processor, device = load_model(ModelSpec(model=str(tiny_model)))
    assert model.config.model_type == "idefics2" and device == "cpu"
    assert processor.image_processor.do_image_splitting is True
    assert processor.image_processor.size["longest_edge"] == 980
    assert processor.tokenizer.padding_side == "left"
    assert str(model.dtype) == "torch.float32"  # float32 on CPU


def test_a_folder_that_is_not_idefics2_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="not an Idefics2"):
        preflight(ModelSpec(model=str(tmp_path)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelSpec(model=str(empty)))


def test_missing_weights_say_what_was_tried_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as err:
        preflight(ModelSpec(model="HuggingFaceM4/idefics2-8b"))
    text = str(err.value)
    assert "Tried" in text and str(tmp_path / "hf") in text and "HF_HUB_OFFLINE=1" in text
    assert "--model /models/idefics2-8b" in text


def test_quantization_needs_a_gpu(tiny_model):
    with pytest.raises(ModelLoadError, match="CUDA"):
        load_model(ModelSpec(model=str(tiny_model), quantize="4bit"))
