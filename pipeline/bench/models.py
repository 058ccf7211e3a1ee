"""Models for the benchmark: the tiny test model, a random full-size Idefics2-8b, or real weights.

`random-8b` is built from `Idefics2Config` directly on the GPU in bf16 and saved nowhere, so a
GPU box with no network and no weights can still measure the real shapes. Random weights change
no tensor shape and no FLOP count; they change the text, which matters only to the constrained
decoder (which tokens, how soon a row's JSON closes).

It is paired with Idefics2's real tokenizer (32,003 tokens, `extractors.tokenizer`), so that
prompts (~1,200 tokens per invoice page), the grammar's masks and the per-step host costs are the
real ones: `processor_folder` saves it as a processor folder, or `processor=` names one (a real
Idefics2 checkpoint's, or one saved here and carried to a machine without mistral-common).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pageray.extractors.model.loading import ModelSpec, load_model, load_processor, pick_attention, pick_device

RANDOM_8B = "random-8b"


def idefics2_8b_config(image_token_id: int, pad_token_id: int = 0, vocab_size: int = 32003):
    """HuggingFaceM4/idefics2-8b's shapes: SigLIP-so400m/14 at 980 px, a 64-latent perceiver,
    Mistral-7B. Values not given are transformers' Idefics2 / Mistral defaults, which are the
    checkpoint's (rope theta 10000, rms eps 1e-5 from Idefics2Config's text defaults)."""
    from transformers import Idefics2Config

    return Idefics2Config(
        vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                           num_attention_heads=16, image_size=980, patch_size=14),
        perceiver_config=dict(hidden_size=4096, resampler_n_latents=64, resampler_depth=3, resampler_n_heads=16,
                              resampler_head_dim=96, num_key_value_heads=4, rms_norm_eps=1e-5),
        text_config=dict(model_type="mistral", vocab_size=vocab_size, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=32768, rms_norm_eps=1e-5, pad_token_id=pad_token_id),
        image_token_id=image_token_id, tie_word_embeddings=False,
    )


def random_model(config, device: str, dtype):
    """Randomly initialised weights allocated directly on `device` (no CPU copy, no file)."""
    import torch
    from transformers import Idefics2ForConditionalGeneration

    with torch.device(device):
        model = Idefics2ForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def check_request(model: str, device: str = "auto") -> None:
    """Refuse, before any work, a random 8B model on a machine without a GPU."""
    if model == RANDOM_8B and not pick_device(device).startswith("cuda"):
        raise ValueError("--model random-8b builds 8B bf16 parameters on the GPU; this machine has no CUDA "
                         "device (use --model tiny on CPU)")


@dataclass
class BenchModel:
    model: Any
    pageray_processor: Any   # pageray's: PROCESSOR_SIZE, splitting on, left padding
    baseline_processor: Any  # the model card's: AutoProcessor defaults, splitting on
    device: str
    label: str
    tmp: Any = None          # keeps a temporary build folder alive
    folder: str | None = None  # a checkpoint folder the pipeline can load (None: built in memory)

    @property
    def dtype_bytes(self) -> int:
        return self.model.dtype.itemsize


def processor_folder(out: Path) -> Path:
    """A processor folder (tokenizer.json etc., no weights) with Idefics2's real 32,003-token
    tokenizer, made here from the mistral-common wheel (`extractors.tiny`, which builds its
    processor from `extractors.tokenizer`). Where mistral-common is not installed (the GPU
    machines), pass a folder saved by this function instead (benchmarks/device_bench.py prepare)."""
    from pageray.extractors.model.tiny import build_tiny_model

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="pageray-bench-tiny-") as tmp:
        processor = load_processor(ModelSpec(model=str(build_tiny_model(Path(tmp) / "tiny"))))
        processor.save_pretrained(out)
    return out


def _baseline_processor(folder: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder, do_image_splitting=True)


def build_bench_model(model: str, device: str = "auto", processor_source: str | None = None) -> BenchModel:
    """"tiny" (built into a temp dir), "random-8b" (GPU only), or a folder / hub id. For random-8b,
    `processor_source` is a processor folder or hub id to pair it with (default: `processor_folder`)."""
    import torch

    from pageray.extractors.model.tiny import build_tiny_model

    device = pick_device(device)
    if model == "tiny" or model == RANDOM_8B:
        tmp = tempfile.TemporaryDirectory(prefix="pageray-bench-model-")
        if model == "tiny":
            folder = str(build_tiny_model(Path(tmp.name) / "tiny"))
            net, processor, device = load_model(ModelSpec(model=folder, device=device, attn_implementation="sdpa"))
            return BenchModel(net, processor, _baseline_processor(folder), device,
                              "tiny (random, 32,003-token tokenizer)", tmp, folder)
        check_request(model, device)
        folder = processor_source or str(processor_folder(Path(tmp.name) / "processor"))
        processor = load_processor(ModelSpec(model=folder))
        tok = processor.tokenizer
        config = idefics2_8b_config(tok.convert_tokens_to_ids("<image>"), tok.pad_token_id,
                                    max(32003, len(tok)))
        net = random_model(config, device, torch.bfloat16)
        net.generation_config.pad_token_id = tok.pad_token_id
        label = f"idefics2-8b shapes (random bf16, {len(tok)}-token tokenizer)"
        return BenchModel(net, processor, _baseline_processor(folder), device, label, tmp)
    net, processor, device = load_model(ModelSpec(model=model, device=device, attn_implementation="sdpa"))
    return BenchModel(net, processor, _baseline_processor(model), device, model, folder=model)


def set_attention(model, implementation: str) -> str:
    """Switch attention kernels in place (sdpa for the model card; pageray's pick otherwise)."""
    if getattr(model.config, "_attn_implementation", None) != implementation:
        model.set_attn_implementation(implementation)
    return implementation


def pageray_attention(device: str) -> str:
    return pick_attention("auto", device)
