"""The throughput floor: FLOPs and bytes an Idefics2 page needs, and what the device can do.

Pure arithmetic over an `Idefics2Config` (or anything with the same attributes). Only matrix
multiplications are counted, at 2 FLOPs per multiply-add; norms, activations, rotary embeddings,
softmax and biases are left out (well under 1% for Idefics2-8b). The floor is what the page would
cost if nothing were wasted: the vision tower sees only a crop's real patches (no padding up to the
batch's largest crop), the LM head runs once per generated token, and decode reads every text
weight plus the live KV cache once per step.
"""
from __future__ import annotations

import time
from typing import Iterable, Sequence


def _head_dim(text) -> int:
    return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def vision_flops(vision, n_patches: int) -> int:
    """SigLIP tower over one crop of `n_patches` real 14x14 patches (bidirectional attention)."""
    n, d, f = n_patches, vision.hidden_size, vision.intermediate_size
    embed = 2 * n * vision.num_channels * vision.patch_size ** 2 * d
    per_layer = 2 * n * d * 3 * d + 2 * n * d * d + 4 * n * n * d + 2 * 2 * n * d * f
    return embed + vision.num_hidden_layers * per_layer


def connector_flops(config, n_patches: int) -> int:
    """Modality projection (SwiGLU MLP) over the crop's patches, then the perceiver resampler."""
    dv, dt = config.vision_config.hidden_size, config.text_config.hidden_size
    inter = config.text_config.intermediate_size
    n = n_patches
    projection = 2 * n * (2 * dv * inter + inter * dt)
    p = config.perceiver_config
    r, heads, kv, hd = p.resampler_n_latents, p.resampler_n_heads, p.num_key_value_heads, p.resampler_head_dim
    keys = n + r  # the latents attend to [context; latents]
    attn = 2 * r * dt * heads * hd + 2 * 2 * keys * dt * kv * hd + 4 * r * keys * heads * hd + 2 * r * heads * hd * dt
    mlp = 3 * 2 * r * dt * 4 * dt
    return projection + p.resampler_depth * (attn + mlp)


def text_linear_flops_per_token(text) -> int:
    """Every projection of every decoder layer, for one token (no attention scores, no LM head)."""
    d, hd = text.hidden_size, _head_dim(text)
    q, kv = text.num_attention_heads * hd, text.num_key_value_heads * hd
    per_layer = 2 * d * q + 2 * 2 * d * kv + 2 * q * d + 3 * 2 * d * text.intermediate_size
    return text.num_hidden_layers * per_layer


def _attention_flops(text, keys: int) -> int:
    """One query attending to `keys` positions, summed over layers: QK^T plus AV."""
    return text.num_hidden_layers * 4 * keys * text.num_attention_heads * _head_dim(text)


def page_flops(config, n_crop_patches: int | Sequence[int], prompt_tokens: int, new_tokens: int) -> dict:
    """FLOPs for one page: vision per crop, connector per crop, prefill of the prompt, decode.

    `n_crop_patches`: real patches of each image the processor made for the page (4 crops + the
    page with splitting), as the model's patch mask counts them: (h // 14) * (w // 14).
    `prompt_tokens`: the page's prompt, image tokens included. The prefill forward over it yields
    the first new token; each of the other `new_tokens - 1` is one decode step whose query
    attends to the prompt and every token so far (causal, the token itself included).
    """
    crops = [n_crop_patches] if isinstance(n_crop_patches, int) else list(n_crop_patches)
    text = config.text_config
    lin, head = text_linear_flops_per_token(text), 2 * text.hidden_size * text.vocab_size
    t = prompt_tokens
    vision = sum(vision_flops(config.vision_config, n) for n in crops)
    connector = sum(connector_flops(config, n) for n in crops)
    # causal prefill: position i attends to i keys; sum_i i = t(t+1)/2
    prefill = t * lin + text.num_hidden_layers * 2 * t * (t + 1) * text.num_attention_heads * _head_dim(text)
    prefill += head if new_tokens > 0 else 0
    decode = sum(lin + _attention_flops(text, t + k) + head for k in range(1, max(new_tokens, 1)))
    out = {"vision": vision, "connector": connector, "prefill": prefill, "decode": decode}
    out["total"] = sum(out.values())
    return out


def text_weight_params(text) -> int:
    """Parameters decode reads every step: the decoder's projections and the LM head."""
    return text_linear_flops_per_token(text) // 2 + text.hidden_size * text.vocab_size


def decode_bytes_per_step(config, batch: int, context_tokens: int = 0, bytes_per_value: int = 2) -> int:
    """Bytes one decode step must read: all text weights once, plus K and V of every layer for
    `context_tokens` positions of each of the `batch` rows."""
    text = config.text_config
    kv = batch * text.num_hidden_layers * 2 * text.num_key_value_heads * _head_dim(text) * context_tokens
    return (text_weight_params(text) + kv) * bytes_per_value


def floor_seconds_per_page(config, pages: Iterable[tuple[Sequence[int], int]], new_tokens: int, batch: int,
                           flops_per_s: float, bytes_per_s: float, bytes_per_value: int = 2) -> dict:
    """Roofline time per page at `batch` rows per decode step, averaged over `pages`
    ((crop patches, prompt tokens) each). Vision, connector and prefill are compute bound; each
    decode step takes the longer of its FLOPs and its bytes (weights + mean KV cache)."""
    pages = list(pages)
    text = config.text_config
    lin, head = text_linear_flops_per_token(text), 2 * text.hidden_size * text.vocab_size
    compute_s = decode_s = 0.0
    for crops, t in pages:
        f = page_flops(config, crops, t, new_tokens)
        compute_s += (f["vision"] + f["connector"] + f["prefill"]) / flops_per_s
        for k in range(1, new_tokens):
            step_flops = batch * (lin + _attention_flops(text, t + k) + head)
            step_bytes = decode_bytes_per_step(config, batch, t + k, bytes_per_value)
            decode_s += max(step_flops / flops_per_s, step_bytes / bytes_per_s) / batch
    n = max(len(pages), 1)
    return {"prefill_s": compute_s / n, "decode_s": decode_s / n, "total_s": (compute_s + decode_s) / n}


def measure_device(device: str, dtype=None) -> dict:
    """Achieved matmul FLOP/s (bf16 8192^2 on GPU, fp32 1024^2 on CPU) and copy bandwidth
    (bytes read + written by one large device-to-device copy)."""
    import torch

    cuda = device.startswith("cuda")
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    n, iters = (8192, 20) if cuda else (1024, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    copy_elems = (1 << 30) // 2 if cuda else (1 << 24)  # 1 GiB bf16 on GPU, 64 MiB fp32 on CPU
    src = torch.empty(copy_elems, device=device, dtype=dtype).fill_(1)
    dst = torch.empty_like(src)

    def timed(fn, repeat: int) -> float:
        fn()  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / repeat

    mm_s = timed(lambda: torch.mm(a, b), iters)
    copy_s = timed(lambda: dst.copy_(src), iters)
    return {"flops_per_s": 2 * n ** 3 / mm_s, "bytes_per_s": 2 * src.numel() * src.element_size() / copy_s,
            "matmul": f"{n}x{n} {str(dtype).replace('torch.', '')}"}
