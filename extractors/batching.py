"""`--batch-size auto`: the largest model batch that fits the device's free memory.

A page in a batch costs its KV cache (prompt plus output budget), the prefill's activations and
its logits; the vision tower is a fixed cost, since it runs on at most `CROPS_PER_CALL` crops at a
time (extractors.vision). The estimate is deliberately conservative (a 15% margin, and the
activations counted as if nothing were freed during a layer), and the extractor still halves a
batch on out-of-memory, so a wrong estimate costs speed, never pages. On CPU, a small fixed batch:
there the batch buys nothing but latency.
"""
from __future__ import annotations

from dataclasses import dataclass

# Crops per vision-tower call: bounds the tower's activations when a batch holds many pages of
# one shape (32 crops of 980 x 980 through SigLIP-so400m: ~5 GB in bf16, counted as in
# page_cost), while still 157,000 patches per call, plenty to keep a GPU busy.
CROPS_PER_CALL = 32
AUTO_MAX = 128      # beyond this, decode is compute-bound on an H100 and batches only add latency
CPU_BATCH = 4
MARGIN = 0.85       # of the free memory, for the allocator's fragmentation and CUDA workspaces
PATCHES_PER_CROP = (980 // 14) ** 2


@dataclass(frozen=True)
class PageCost:
    per_page: int   # bytes one more page in the batch needs
    fixed: int      # bytes any batch needs (the vision tower's activations)


def page_cost(config, prompt_tokens: int, new_tokens: int, dtype_bytes: int) -> PageCost:
    """Bytes per page and per batch for an Idefics2 `config`."""
    text, vision = config.text_config, config.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    tokens = prompt_tokens + new_tokens
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * tokens * dtype_bytes
    # one decoder layer's prefill activations: residual, norm, q/k/v/o and the MLP's gate, up, act
    prefill = prompt_tokens * (6 * text.hidden_size + 3 * text.intermediate_size) * dtype_bytes
    logits = 3 * text.vocab_size * 4  # the fp32 scores, masked and reduced
    tower = CROPS_PER_CALL * PATCHES_PER_CROP * (6 * vision.hidden_size + 2 * vision.intermediate_size) * dtype_bytes
    return PageCost(per_page=kv + prefill + logits, fixed=tower)


def fit_batch(free_bytes: int, cost: PageCost, cap: int = AUTO_MAX) -> int:
    """Pages per batch for `free_bytes` of device memory: at least 1, at most `cap`."""
    usable = int(free_bytes * MARGIN) - cost.fixed
    return max(1, min(cap, usable // max(1, cost.per_page)))


def resolve_batch_size(requested, model, device: str, prompt_tokens: int, new_tokens: int) -> int:
    """An explicit size as it is; "auto" from the free memory of the actor's device (after its
    weights are loaded), or CPU_BATCH on CPU."""
    if requested != "auto":
        return int(requested)
    if not device.startswith("cuda"):
        return CPU_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return fit_batch(free, page_cost(model.config, prompt_tokens, new_tokens, model.dtype.itemsize))
