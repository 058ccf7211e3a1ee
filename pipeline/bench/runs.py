"""The three timed configurations, each over the same pages and the same model object.

Every `generate` runs exactly `new_tokens` steps: `eos_token_id=None` removes the EOS stopping
criterion, so neither a stop token from the model (baseline) nor the stop token the constrained
decoder forces once a row's JSON is closed (pageray) ends a row or the batch early. A closed row
keeps decoding (its extra tokens are ignored: ConstrainedBatch skips rows that are done), so the
GPU does the same work as the baseline; only the share of steps that pay for a grammar mask
differs, and the pageray row reports it (`json_tokens`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

from transformers import LogitsProcessor

from extractors.extractor import ExtractSettings, ExtractFields
from pipeline.bench.pages import page_batch, pil_image


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _TimedProcessor(LogitsProcessor):
    """Host time spent in a logits processor (xgrammar masks, forcing, log-softmax, syncs)."""

    def __init__(self, inner, stats: dict):
        self.inner, self.stats = inner, stats

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.stats["logits_s"] += time.perf_counter() - t0
        return out


@contextmanager
def fixed_length(model, new_tokens: int, constrained: bool, stats: dict):
    """Make `model.generate` (as the extractor calls it) run exactly `new_tokens` steps, with or
    without the extractor's logits processors. Restored on exit."""
    real = model.generate

    def generate(*args, **kwargs):
        processors = kwargs.pop("logits_processor", None) or []
        if constrained:
            kwargs["logits_processor"] = [_TimedProcessor(p, stats) for p in processors]
        kwargs.update(max_new_tokens=new_tokens, eos_token_id=None)
        t0 = time.perf_counter()
        out = real(*args, **kwargs)
        stats["generate_s"] += time.perf_counter() - t0
        stats["generated"] += out.shape[0] * (out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    model.generate = generate
    try:
        yield
    finally:
        del model.generate


def make_extractor(bench, schema, batch_size: int, new_tokens: int) -> ExtractFields:
    """pageray's ExtractFields around the already loaded model."""
    from extractors.loading import ModelSpec

    settings = ExtractSettings(batch_size=batch_size, max_new_tokens=new_tokens, page_time_limit_s=None)
    return ExtractFields(ModelSpec(model=bench.label), schema, settings,
                     loaded=(bench.model, bench.pageray_processor, bench.device))


def _new_stats() -> dict:
    return {"logits_s": 0.0, "generate_s": 0.0, "generated": 0}


def shape_groups(pages: list[dict]) -> list[list[dict]]:
    """Pages grouped by exact raster size, in first-seen order (a probe for shape bucketing)."""
    groups: dict[tuple, list[dict]] = {}
    for p in pages:
        groups.setdefault((p["image_width"], p["image_height"]), []).append(p)
    return list(groups.values())


def run_pageray(extractor: ExtractFields, pages: list[dict], new_tokens: int, constrained: bool,
                bucketed: bool = False) -> Callable:
    """A run over `pages` (or a subset) through ExtractFields.__call__; returns its stats. `bucketed`
    calls the extractor once per page shape, so no batch pads one shape up to another."""
    def run(subset: list[dict] | None = None) -> dict:
        stats, rows = _new_stats(), []
        todo = subset if subset is not None else pages
        with fixed_length(extractor.model, new_tokens, constrained, stats):
            for group in shape_groups(todo) if bucketed else [todo]:
                rows += extractor(page_batch(group)).to_pylist()
        stats["json_tokens"] = sum(r["output_tokens"] or 0 for r in rows)
        stats["ok"] = sum(r["status"] == "ok" for r in rows)
        stats["errors"] = sorted({r["error"] for r in rows if r["status"] == "model_error"})
        return stats
    return run


def run_baseline(bench, prompt: str, pages: list[dict], new_tokens: int) -> Callable:
    """The Idefics2 model card's loop: one page per processor call and per `generate`."""
    import torch

    processor, model = bench.baseline_processor, bench.model
    pad = processor.tokenizer.pad_token_id

    def run(subset: list[dict] | None = None) -> dict:
        stats = _new_stats()
        for page in subset if subset is not None else pages:
            inputs = processor(text=prompt, images=[pil_image(page)], return_tensors="pt")
            inputs = {k: v.to(bench.device) for k, v in inputs.items()}
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                     eos_token_id=None, pad_token_id=pad)
            stats["generate_s"] += time.perf_counter() - t0
            new = out[:, inputs["input_ids"].shape[1]:]
            stats["generated"] += new.numel()
            processor.batch_decode(new, skip_special_tokens=True)
        return stats
    return run


def _kernel_spans(prof) -> list[tuple[float, float]]:
    """(start, end) in seconds of every GPU activity (kernels, copies) the profiler saw."""
    from torch.autograd import DeviceType

    spans = []
    try:
        for ev in prof.profiler.kineto_results.events():
            if ev.device_type() == DeviceType.CUDA:
                spans.append((ev.start_ns() / 1e9, (ev.start_ns() + ev.duration_ns()) / 1e9))
    except (AttributeError, RuntimeError):
        for ev in prof.events():
            if ev.device_type == DeviceType.CUDA:
                spans.append((ev.time_range.start / 1e6, ev.time_range.end / 1e6))
    return spans


def gpu_busy_fraction(fn: Callable[[], object]) -> float | None:
    """Union of GPU activity intervals / wall time of `fn`, under torch.profiler (CUDA only)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    busy = union_seconds(_kernel_spans(prof))
    return min(busy / wall, 1.0) if busy and wall > 0 else None


def union_seconds(spans) -> float:
    """Length of the union of (start, end) intervals: overlapping kernels count once."""
    busy, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy


def measure(run: Callable, pages: list[dict], device: str, warmup: list[dict] | None,
            profile_pages: list[dict] | None) -> dict:
    """Warm up, then one timed run over all pages (peak memory reset first), then optionally a
    separate profiled run over `profile_pages` for the GPU busy fraction."""
    import torch

    cuda = device.startswith("cuda")
    if warmup:
        run(warmup)
    sync(device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), time.process_time()
    stats = run(pages)
    sync(device)
    stats["wall_s"], stats["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    stats["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
    stats["gpu_busy"] = None
    if cuda and profile_pages:
        try:
            stats["gpu_busy"] = gpu_busy_fraction(lambda: run(profile_pages))
        except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the timings
            stats["profile_error"] = f"{type(exc).__name__}: {exc}"
    return stats
