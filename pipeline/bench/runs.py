"""The timed configurations, each over the same pages and the same model object.

  baseline               the Idefics2 model card: per page the processor and `generate`, unconstrained
  pageray-generate       today's extractor (before the decode loop): the processor on each padded
                         batch in the actor, then `generate` with `ConstrainedBatch` (two syncs per
                         step) and the re-parsing forcing planner (`incremental=False`)
  pageray                `ExtractFields.__call__` on rows that `PreparePixels` already made into
                         uint8 crops (on the render workers in the pipeline, so outside the timed
                         region here): per-shape vision tower, our decode loop, incremental planner
  pageray-unconstrained  the same with `decoder.constrained = False` (plain argmax)

Every configuration runs exactly `new_tokens` decode steps: `eos_token_id=None` for `generate`,
`decoder.fixed_steps` for the loop. A row whose JSON has closed keeps decoding and the
constrained decoder ignores it, so the device work is the baseline's; `json_tokens` counts the
constrained steps. Each run is `run(pages, new_tokens) -> stats`; `measure` times one.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable

import numpy as np

from pageray.extractors.answer_fields import answer_fields
from pageray.extractors.decoding.rows import ConstrainedBatch
from pageray.extractors.extractor import ExtractFields, ExtractSettings
from pageray.extractors.vision.encoder import CROPS_PER_CALL
from pageray.pipeline.datamodel import Status
from pageray.pipeline.bench.busy import UtilizationSampler, profiled_busy
from pageray.pipeline.bench.pages import page_batch, pil_image, processor_inputs


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_extractor(bench, schema, batch_size: int, new_tokens: int) -> ExtractFields:
    """pageray's ExtractFields around the already loaded model; its budget is `new_tokens`. Its
    batches go through DecodeLoop (engine "static"): these rows decode exactly `new_tokens` steps
    (`fixed_steps`), which the continuous engine does not; bench.batching times the engine."""
    from pageray.extractors.model.loading import ModelSpec

    settings = ExtractSettings(batch_size=batch_size, max_new_tokens=new_tokens, page_time_limit_s=None,
                               engine="static")
    return ExtractFields(ModelSpec(model=bench.label), schema, settings,
                         loaded=(bench.model, bench.pageray_processor, bench.device))


def _error(status: str, error: str | None) -> str:
    return f"{status}: {error or ''}"[:200]


def _stats(**values) -> dict:
    return {"generated": 0, "host_prep_s": 0.0, "host_step_s": 0.0, "steps": 0, **values}


def _to_device(inputs, device: str, dtype):
    inputs = inputs.to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    sync(device)  # a copy from pageable memory holds the host until it is done
    return inputs


def run_baseline(bench, prompt: str) -> Callable:
    """The Idefics2 model card's loop: one page per processor call and per `generate`."""
    import torch

    processor, model, device = bench.baseline_processor, bench.model, bench.device
    pad = processor.tokenizer.pad_token_id

    def run(pages: list[dict], new_tokens: int) -> dict:
        stats = _stats()
        for page in pages:
            t0 = time.perf_counter()
            inputs = _to_device(processor(text=prompt, images=[pil_image(page)], return_tensors="pt"),
                                device, model.dtype)
            stats["host_prep_s"] += time.perf_counter() - t0
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                                     eos_token_id=None, pad_token_id=pad)
            new = out[:, inputs["input_ids"].shape[1]:]
            stats["generated"] += new.numel()
            processor.batch_decode(new, skip_special_tokens=True)
        return stats
    return run


class TodaysBatch(ConstrainedBatch):
    """Today's logits processor: the re-parsing forcing planner, with its host time per step
    measured. The device is synchronized before the clock starts: waiting for the forward pass
    is not host work (the processor's own `tolist()` would wait for it at the same point)."""

    def __init__(self, grammar, rows: int, budget: int, device: str):
        super().__init__(grammar, rows, budget, None)
        self.states = grammar.new_rows(rows, budget, None, incremental=False)
        self.device, self.host_s, self.calls = device, 0.0, 0

    def __call__(self, input_ids, scores):
        sync(self.device)
        t0 = time.perf_counter()
        out = super().__call__(input_ids, scores)
        self.host_s += time.perf_counter() - t0
        self.calls += 1
        return out


def run_generate(ex: ExtractFields, batch_size: int) -> Callable:
    """Today's extractor: the processor on each padded batch, `generate` with the constrained
    logits processor, then each row parsed and coerced as the actor does."""
    import torch

    tok = ex.processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else ex.stop_ids[0]

    def run(pages: list[dict], new_tokens: int) -> dict:
        stats = _stats(json_tokens=0, ok=0, errors=set())
        for start in range(0, len(pages), batch_size):
            chunk = pages[start:start + batch_size]
            t0 = time.perf_counter()
            inputs = _to_device(processor_inputs(ex.processor, ex.prompt, chunk), ex.device, ex.model.dtype)
            stats["host_prep_s"] += time.perf_counter() - t0
            constrained = TodaysBatch(ex.grammar, len(chunk), new_tokens, ex.device)
            with torch.inference_mode():
                out = ex.model.generate(**inputs, logits_processor=[constrained], max_new_tokens=new_tokens,
                                        do_sample=False, eos_token_id=None, pad_token_id=pad)
            stats["generated"] += out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1])
            stats["host_step_s"] += constrained.host_s
            stats["steps"] += constrained.calls
            for res in constrained.results():
                fields = answer_fields(res, ex.answers, ex.settings.page_time_limit_s)
                stats["json_tokens"] += res.output_tokens
                stats["ok"] += fields["status"] == Status.OK
                if fields["status"] != Status.OK:
                    stats["errors"].add(_error(fields["status"], fields.get("error")))
        return stats
    return run


class _DecodeTap:
    """Stands in for `ex.decoder` during a run and keeps each call's DecodeStats and rows."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, features, *args, **kwargs):
        results, stats = self.inner(features, *args, **kwargs)
        self.calls.append((int(features.shape[0]), stats))
        return results, stats


def run_pageray(ex: ExtractFields, constrained: bool) -> Callable:
    """`ExtractFields.__call__` on prepared rows (pixels + crop_shapes), exactly `new_tokens` steps."""
    def run(pages: list[dict], new_tokens: int) -> dict:
        decoder = ex.decoder
        decoder.fixed_steps, decoder.constrained = new_tokens, constrained
        ex.decoder = tap = _DecodeTap(decoder)
        try:
            rows = ex(page_batch(pages)).to_pylist()
        finally:
            ex.decoder, decoder.fixed_steps, decoder.constrained = decoder, None, True
        stats = _stats(wait_s=0.0, errors={_error(r["status"], r["error"]) for r in rows if r["status"] != Status.OK})
        if constrained:  # unconstrained rows are never advanced: their text is the empty document's closing
            stats.update(json_tokens=sum(r["output_tokens"] or 0 for r in rows),
                         ok=sum(r["status"] == Status.OK for r in rows))
        for n, s in tap.calls:
            stats["generated"] += n * s.steps
            stats["steps"] += s.steps
            stats["host_step_s"] += s.host_s
            stats["wait_s"] += s.wait_s
        return stats
    return run


def stage_crops(ex: ExtractFields, chunk: list[dict]) -> list:
    """The actor's host work before the vision tower, step for step as `ExtractFields._run` and
    `PageEncoder.__call__` / `_encode` do it (keep in step with extractors/vision/encoder.py): unpack each
    row's crops (zero-copy views), group them by shape, stack each group straight into a
    page-locked buffer (CUDA) and launch its upload. Returns the device tensors (uploads may be in flight)."""
    import torch

    flat = [c for r in chunk for c in ex._crops(r)]
    groups: dict[tuple, list[int]] = {}
    for i, crop in enumerate(flat):
        groups.setdefault(crop.shape[:2], []).append(i)
    out, cuda = [], ex.device.startswith("cuda")
    for indices in groups.values():
        for start in range(0, len(indices), CROPS_PER_CALL):
            crops = [flat[i] for i in indices[start:start + CROPS_PER_CALL]]
            host = torch.empty((len(crops),) + crops[0].shape, dtype=torch.uint8, pin_memory=cuda)
            np.stack(crops, out=host.numpy())
            out.append(host.to(ex.device, non_blocking=True))
    return out


def staging_ms_per_page(ex: ExtractFields, prepared: list[dict], batch_size: int) -> float:
    """Host milliseconds per page of `stage_crops` over the prepared pages, after one warm-up batch."""
    chunks = [prepared[i:i + batch_size] for i in range(0, len(prepared), batch_size)]
    stage_crops(ex, chunks[0])
    sync(ex.device)
    host = 0.0
    for chunk in chunks:
        t0 = time.perf_counter()
        staged = stage_crops(ex, chunk)
        host += time.perf_counter() - t0
        sync(ex.device)
        del staged
    return 1e3 * host / len(prepared)


def measure(run: Callable, pages: list[dict], new_tokens: int, device: str, warmup: list[dict] | None = None,
            busy: str = "nvml", profile_pages: list[dict] | None = None, warmup_tokens: int = 8) -> dict:
    """A short warm-up run (kernels, allocator, Triton's mask kernel), then one timed run over
    all pages (peak memory reset first, GPU busy sampled during it with `busy="nvml"`), or with
    `busy="profiler"` a separate profiled run over `profile_pages`."""
    import torch

    cuda = device.startswith("cuda")
    if warmup:
        run(warmup, min(new_tokens, warmup_tokens))
    sync(device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sampler = UtilizationSampler() if cuda and busy == "nvml" else nullcontext()
    t0, c0 = time.perf_counter(), time.process_time()
    with sampler:
        stats = run(pages, new_tokens)
        sync(device)
    stats["wall_s"], stats["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    stats["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
    stats["gpu_busy"] = sampler.fraction if isinstance(sampler, UtilizationSampler) else None
    if isinstance(sampler, UtilizationSampler) and sampler.error:
        stats["busy_error"] = sampler.error
    if cuda and busy == "profiler" and profile_pages:
        try:
            stats["gpu_busy"] = profiled_busy(lambda: run(profile_pages, new_tokens))
        except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the timings
            stats["busy_error"] = f"{type(exc).__name__}: {exc}"
    return stats
