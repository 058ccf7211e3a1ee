"""Static vs continuous batching (`extractors.engine`) on a mixed-answer-length workload.

The workload: pages rendered from the sample documents (`bench.pages`), page scope, each with its
own output budget drawn from a lognormal (seeded; the median and 95th percentile are stated in the
output), so answers end at very different steps, as blank and dense pages or invoices with 3 and
40 line items do. A budget below the schema's closing reserve is forced closed at once: a short
answer of a few tokens, like a blank page's.

Both refills run the same engine on the same pages and choose the same tokens: "static" admits a
batch only when every row of the last one is done, and done rows keep their slot until then (what
DecodeLoop does today); "continuous" refills a slot as soon as its row ends. `tokens_match_reference`:
both give every page the tokens, text and count that DecodeLoop gives it alone.
"""
from __future__ import annotations

import math
import time

import numpy as np

Z95 = 1.6448536269514722  # the standard normal's 95th percentile


def lognormal_budgets(n: int, median: float, p95: float, seed: int = 0) -> list[int]:
    """`n` budgets, lognormal with this median and 95th percentile, at least 1 token."""
    sigma = math.log(p95 / median) / Z95
    draws = median * np.exp(sigma * np.random.default_rng(seed).standard_normal(n))
    return [max(1, int(round(x))) for x in draws]


def _percentile(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def compare(extractor, crops: list, budgets: list[int], slots: int, reference: bool = True) -> dict:
    """Run `crops[i]` (one page's crops each) with `budgets[i]` through both refills of `slots`
    slots; one dict of figures (see the module's docstring)."""
    from pageray.extractors.decoding.engine import Engine, EngineItem

    prompt = extractor.prompts.ids()
    items = [EngineItem(c, prompt, b) for c, b in zip(crops, budgets)]
    Engine(extractor.decoder, extractor.encoder, slots)(items[:1])  # warm-up: first calls' allocations
    runs = {}
    for refill in ("static", "continuous"):
        engine = Engine(extractor.decoder, extractor.encoder, slots, refill)
        wall, cpu = time.perf_counter(), time.process_time()
        results, stats = engine(items)
        runs[refill] = (results, stats, time.perf_counter() - wall, time.process_time() - cpu)
    equal = [t for _, t in runs["static"][0]] == [t for _, t in runs["continuous"][0]]
    same = equal
    if reference:
        for item, (ours, _) in zip(items, runs["continuous"][0]):
            [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, prompt_ids=[item.prompt_ids])
            same = same and (alone.text, alone.output_tokens) == (ours.text, ours.output_tokens)
    lengths = [r.output_tokens for r, _ in runs["continuous"][0]]
    out = {"pages": len(items), "slots": slots,
           "answer_tokens": {"median": _percentile(lengths, 50), "p95": _percentile(lengths, 95),
                             "min": min(lengths), "max": max(lengths)},
           "tokens_match_reference": same if reference else None, "tokens_static_equal_continuous": equal}
    for refill, (_, stats, wall, cpu) in runs.items():
        out[refill] = {"occupancy": round(stats.occupancy, 4), "decode_steps": stats.steps,
                       "decode_steps_per_page": round(stats.steps / len(items), 2), "prefills": stats.prefills,
                       "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "pages_per_s": round(len(items) / wall, 3),
                       "pages_per_cpu_s": round(len(items) / cpu, 3)}
    # pages/s at equal work; the CPU-time ratio is the one to read on a shared machine, where
    # other processes' load makes wall time noise (on a GPU, wall time is the figure)
    for key in ("pages_per_s", "pages_per_cpu_s"):
        out[f"{key}_continuous_over_static"] = round(out["continuous"][key] / out["static"][key], 3)
    out["steps_static_over_continuous"] = round(out["static"]["decode_steps"] / out["continuous"]["decode_steps"], 3)
    return out
