"""An offline, tiny Idefics2 checkpoint for tests and the demo.

No machine here can download weights, so the model is built from `Idefics2Config`, with
Idefics2's real tokenizer (`extractors.tokenizer`: 32,003 tokens) and its real 64 perceiver
latents per image, so that prompts, masks and per-step costs are the real ones; only the widths
are tiny. It is saved with `save_pretrained` and loaded back through exactly the path real
weights take (`extractors.loading.load_model`). Its output is random text; schema-constrained
decoding is what makes it valid JSON.

Its weights are chosen so that its answer depends on the pixels (`_reading_weights`): with
transformers' own init (std 0.02 everywhere, perceiver latents all ones) every page gives the same
answer, and no test could see crops in the wrong order or a bundle's pages swapped.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from pageray.extractors.model.tokenizer import CHAT_TEMPLATE, idefics2_tokenizer

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
    _reading_weights(model, seed)
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


# Attention sharpness: a query reads a few positions (attention logits of std ~gain) instead of the
# near-uniform mean over thousands of patches or tokens, in which one page looks like any other.
_SHARP = {"vision_model.encoder.layers.0.self_attn.q_proj": 3.0,
          "perceiver_resampler.layers.0.self_attn.q_proj": 6.0,
          "text_model.layers.0.self_attn.q_proj": 6.0, "text_model.layers.1.self_attn.q_proj": 6.0,
          # what a token reads (the image) outweighs its own embedding in the residual stream
          "text_model.layers.0.self_attn.o_proj": 4.0, "text_model.layers.1.self_attn.o_proj": 4.0}


def _reading_weights(model, seed: int) -> None:
    """Weights under which the answer follows the page: every matrix N(0, gain^2 / fan_in), so
    signals keep unit scale through every layer (lm_head included: top-1 margins of the order of
    the logits' spread, not of float noise); 64 distinct perceiver latents, small in the residual
    (their normed copies are the queries) so that each output latent is what it read from the page;
    position embeddings small beside the patches' content. Shapes are unchanged: so is the cost."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("latents"):
                scale = 0.05
            elif "embed_tokens" in name:
                scale = 1.0
            elif "position_embedding" in name:
                scale = 0.1
            elif p.dim() >= 2:
                gain = next((g for key, g in _SHARP.items() if key in name), 1.0)
                scale = gain / math.sqrt(p[0].numel())
            else:
                continue  # biases stay 0, norms 1
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def is_tiny_checkpoint(path: Path) -> bool:
    return (Path(path) / "PAGERAY_TINY.json").is_file()
