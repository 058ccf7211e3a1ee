"""The batching rows of the bench: one mixed-answer-length workload (bench.continuous.Workload)
through four configurations, the same pages and the same per-row stop steps in each:

  generate-batch        the Idefics2 model card's `model.generate` on the processor's inputs, `slots`
                        pages a batch, unconstrained, each row stopped at the step where pageray's
                        answer for that page ended (a per-row stopping criterion; eos ignored): how
                        transformers batches, statically
  static-batching       pageray's engine, a batch admitted only when the last one is done
  continuous-batching   pageray's engine, a slot refilled as soon as its row ends
  continuous-graphs     the same with the decode step captured as a CUDA graph, where the engine has
                        that mode and the device is a GPU; otherwise a row that says why it was skipped
"""
from __future__ import annotations

import inspect
import time

from pageray.pipeline.bench.continuous import Workload, compare
from pageray.pipeline.bench.pages import pil_image, processor_inputs

NO_GRAPHS = ("the engine has no CUDA-graph mode: its shared cache (extractors/decoding/slot_cache.py) "
             "changes shape as rows join and leave, and a captured graph needs static shapes")


def shrink(page: dict, longest_edge: int | None) -> dict:
    """The page downscaled so its longest side is at most `longest_edge` (as a render at that size,
    within resampling); the page itself when it is already that small or `longest_edge` is None."""
    from PIL import Image

    w, h = page["image_width"], page["image_height"]
    if longest_edge is None or max(w, h) <= longest_edge:
        return page
    scale = longest_edge / max(w, h)
    image = pil_image(page).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    return {**page, "image": image.tobytes(), "image_width": image.width, "image_height": image.height}


def workload_pages(pages: list[dict], workload: Workload) -> list[dict]:
    """`workload.pages` pages cycled from `pages`, each distinct page downscaled once."""
    small = {id(p): shrink(p, workload.longest_edge) for p in pages}
    return [small[id(pages[i % len(pages)])] for i in range(workload.pages)]


def page_crops(pages: list[dict], split: bool) -> list:
    import numpy as np

    from pageray.extractors.vision.pixels import model_crops

    crops = {}
    for page in pages:
        if id(page) not in crops:
            image = np.frombuffer(page["image"], np.uint8).reshape(page["image_height"], page["image_width"], 3)
            crops[id(page)] = model_crops(image, split=split)
    return [crops[id(p)] for p in pages]


def generate_batch(bench, prompt: str, pages: list[dict], stops: list[int], slots: int, sync) -> dict:
    """The model card's batched `generate`, each row ending at its `stops` step; timed."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopAt(StoppingCriteria):
        def __init__(self, start: int, steps: list[int]):
            self.start, self.steps = start, torch.tensor(steps, device=bench.device)

        def __call__(self, input_ids, scores, **kwargs):
            return (input_ids.shape[1] - self.start) >= self.steps

    processor, model = bench.baseline_processor, bench.model
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"  # generate continues each row from its end
    wall, cpu, steps = time.perf_counter(), time.process_time(), 0
    try:
        for i in range(0, len(pages), slots):
            inputs = processor_inputs(processor, prompt, pages[i:i + slots]).to(bench.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            start, chunk = inputs["input_ids"].shape[1], stops[i:i + slots]
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=max(chunk), do_sample=False, eos_token_id=None,
                                     pad_token_id=tok.pad_token_id,
                                     stopping_criteria=StoppingCriteriaList([StopAt(start, chunk)]))
            steps += out.shape[1] - start
        sync()
    finally:
        tok.padding_side = side
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "decode_steps": steps,
            "occupancy": sum(stops) / (slots * steps) if steps else 0.0}


def _row(name: str, n: int, slots: int, wall: float, cpu: float, note: str, **extra) -> dict:
    return {"name": name, "pages": n, "batch": slots, "wall_s": wall, "pages_per_s": n / wall,
            "pages_per_cpu_s": n / cpu if cpu else None, "note": note, **extra}


def batching_rows(bench, schema, pages: list[dict], workload: Workload, log, baseline: bool = True) -> list[dict]:
    from pageray.extractors.decoding.engine import Engine
    from pageray.pipeline.bench.runs import make_extractor, sync

    budgets = workload.budgets()
    ex = make_extractor(bench, schema, workload.slots, max(budgets))
    timed_pages = workload_pages(pages, workload)
    crops = page_crops(timed_pages, ex.spec.split_images)
    device = "cpu" if not str(bench.device).startswith("cuda") else "gpu"
    log(f"batching: static vs continuous, {workload.describe()['budgets']}, {workload.pages} pages, "
        f"{workload.slots} slots, x{workload.repeats}")
    out = compare(ex, crops, budgets, workload.slots, workload.reference, workload.repeats,
                  lambda: sync(str(bench.device)))
    n, common = workload.pages, {"device": device, "workload": workload.describe()}
    rows = []
    if baseline:
        log("batching: generate-batch (the model card's generate, same pages and stop steps)")
        generate_batch(bench, ex.prompt, timed_pages[:workload.slots], out["answer_lengths"][:workload.slots],
                       workload.slots, lambda: None)  # warm-up
        base = generate_batch(bench, ex.prompt, timed_pages, out["answer_lengths"], workload.slots,
                              lambda: sync(str(bench.device)))
        rows.append(_row("generate-batch", n, workload.slots, base["wall_s"], base["cpu_s"],
                         "model card: processor + generate, unconstrained, per-row stop steps",
                         occupancy=base["occupancy"], decode_steps=base["decode_steps"], **common))
    for refill in ("static", "continuous"):
        r = out[refill]
        rows.append(_row(f"{refill}-batching", n, workload.slots, r["wall_s"]["median"], r["cpu_s"]["median"],
                         f"engine, refill={refill}; median of {workload.repeats}", occupancy=r["occupancy"],
                         decode_steps=r["decode_steps"], decode_steps_per_page=r["decode_steps_per_page"], **common))
    cont = rows[-1]
    ratio, cpu_ratio = out["pages_per_s_continuous_over_static"], out["pages_per_cpu_s_continuous_over_static"]
    cont.update(vs_static=ratio["median"], vs_static_spread=ratio, vs_static_cpu=cpu_ratio,
                tokens_match_reference=out["tokens_match_reference"],
                tokens_static_equal_continuous=out["tokens_static_equal_continuous"],
                answer_tokens=out["answer_tokens"], steps_static_over_continuous=out["steps_static_over_continuous"])
    cont["note"] += (f"; pages/s x static {ratio['min']}-{ratio['max']} wall, {cpu_ratio['min']}-{cpu_ratio['max']} "
                     f"CPU time; steps {out['static']['decode_steps']} -> {out['continuous']['decode_steps']}")
    rows.append(_graphs_row(Engine, device, n, workload.slots, common))
    return rows


def _graphs_row(engine_cls, device: str, n: int, slots: int, common: dict) -> dict:
    """Skipped until the engine can capture its decode step (a `cuda_graphs` argument) on a GPU."""
    if "cuda_graphs" not in inspect.signature(engine_cls).parameters:
        reason = NO_GRAPHS
    elif device != "gpu":
        reason = "CUDA graphs need a GPU"
    else:
        reason = "the engine has a cuda_graphs mode: this bench does not time it yet"
    return {"name": "continuous-graphs", "pages": n, "batch": slots, "skipped": reason, "note": f"skipped: {reason}",
            **common}


def batching_summary(rows: list[dict]) -> dict | None:
    """The issue's figures from the batching rows, or None when the bench ran none."""
    by = {r["name"]: r for r in rows}
    if "continuous-batching" not in by:
        return None
    cont, static = by["continuous-batching"], by["static-batching"]
    return {"workload": cont["workload"], "answer_tokens": cont["answer_tokens"],
            "occupancy": {"static": static["occupancy"], "continuous": cont["occupancy"],
                          "generate-batch": by.get("generate-batch", {}).get("occupancy")},
            "decode_steps": {"static": static["decode_steps"], "continuous": cont["decode_steps"],
                             "generate-batch": by.get("generate-batch", {}).get("decode_steps")},
            "pages_per_s_continuous_over_static": cont["vs_static_spread"],
            "pages_per_cpu_s_continuous_over_static": cont["vs_static_cpu"],
            "tokens_match_reference": cont["tokens_match_reference"],
            "continuous_graphs": by.get("continuous-graphs", {}).get("skipped") or "measured"}
