"""An offline, tiny Idefics2 checkpoint for tests and the demo.

No machine here can download weights, so the model is built from `Idefics2Config`, with
Idefics2's real tokenizer (`extractors.tokenizer`: 32,003 tokens) and its real 64 perceiver
latents per image, so that prompts, masks and per-step costs are the real ones; only the widths
are tiny. It is saved with `save_pretrained` and loaded back through exactly the path real
weights take (`extractors.loading.load_model`). Its output is random text; schema-constrained
decoding is what makes it valid JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

from pageray.extractors.tokenizer import CHAT_TEMPLATE, idefics2_tokenizer

TINY_MARKER = "pageray-tiny-idefics2"


def build_tiny_model(out: Path, seed: int = 0, image_seq_len: int = 64) -> Path:
    """Write a complete, loadable tiny Idefics2 checkpoint (model + processor) to `out`."""
    import torch
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = idefics2_tokenizer()
    vocab = len(tokenizer)
    config = Idefics2Config(
        # Same geometry as idefics2-8b (980 px, 14 px patches), tiny widths.
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=980, patch_size=14),
        perceiver_config=dict(hidden_size=64, resampler_n_latents=image_seq_len, resampler_depth=1,
                              resampler_n_heads=2, resampler_head_dim=16, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=8192, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Idefics2ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<end_of_utterance>"), tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Idefics2ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": 980, "shortest_edge": 378})
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=image_seq_len, chat_template=CHAT_TEMPLATE)
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar for one 17 MB shard is noise in the demo's log
    try:
        model.save_pretrained(out)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(out)
    (out / "PAGERAY_TINY.json").write_text(json.dumps({"kind": TINY_MARKER, "seed": seed}))
    return out


def is_tiny_checkpoint(path: Path) -> bool:
    return (Path(path) / "PAGERAY_TINY.json").is_file()
