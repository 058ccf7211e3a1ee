"""Static vs continuous batching (`extractors.decoding.engine`) on a mixed-answer-length workload.

The workload (`Workload`): pages cycled from the bench's pages, optionally downscaled (on a CPU
the tiny model's vision tower would otherwise be most of the cost, and continuous batching saves
decode steps, not vision), each with its own output budget drawn from a lognormal (seeded; the
median and 95th percentile are stated in the output), so answers end at very different steps, as
blank and dense pages or invoices with 3 and 40 line items do. A budget below the schema's closing
reserve is forced closed at once: a short answer of a few tokens, like a blank page's.

Both refills run the same engine on the same pages and choose the same tokens: "static" admits a
batch only when every row of the last one is done, and done rows keep their slot until then (what
DecodeLoop does); "continuous" refills a slot as soon as its row ends. Equal work, so the ratio of
their pages/s is the gain. `tokens_match_reference`: both give every page the text and token count
that DecodeLoop gives it alone, and the same tokens as each other.

Occupancy (live rows / slots, averaged over decode steps) counts the whole run, the end included:
once the queue is empty the last long answers decode with few rows live. In a run of thousands of
pages per actor that drain happens once; in a benchmark of `pages` pages it is a visible share,
largest when a long answer is admitted late (the seed decides), so `pages` should be many times
`slots`.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.6448536269514722  # the standard normal's 95th percentile


@dataclass(frozen=True)
class Workload:
    pages: int = 96                   # pages through each refill (the bench's pages, cycled)
    slots: int = 8                    # decode slots; static batching: pages per batch
    median: float = 64.0              # the budgets' median, tokens
    p95: float = 256.0                # the budgets' 95th percentile, tokens
    seed: int = 0
    longest_edge: int | None = 490    # downscale pages to this longest side (None: as given)
    repeats: int = 3                  # timed static/continuous pairs (one process; the spread is reported)
    reference: bool = True            # also decode every page alone (DecodeLoop) and compare

    def __post_init__(self) -> None:
        for name in ("pages", "slots", "repeats"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"bench batching {name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not 0 < self.median < self.p95:
            raise ValueError(f"bench answer median and p95 must satisfy 0 < median < p95, "
                             f"got {self.median} and {self.p95}")

    def budgets(self) -> list[int]:
        return lognormal_budgets(self.pages, self.median, self.p95, self.seed)

    def describe(self) -> dict:
        return {**asdict(self), "budgets": f"lognormal, median {self.median:g}, p95 {self.p95:g}, seed {self.seed}"}


def lognormal_budgets(n: int, median: float, p95: float, seed: int = 0) -> list[int]:
    """`n` budgets, lognormal with this median and 95th percentile, at least 1 token."""
    sigma = math.log(p95 / median) / Z95
    draws = median * np.exp(sigma * np.random.default_rng(seed).standard_normal(n))
    return [max(1, int(round(x))) for x in draws]


def _percentile(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "each": [round(v, 3) for v in values]}


def _timed(engine, items, sync) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    results, stats = engine(items)
    sync()
    return results, stats, time.perf_counter() - wall, time.process_time() - cpu


def compare(extractor, crops: list, budgets: list[int], slots: int, reference: bool = True, repeats: int = 1,
            sync=lambda: None) -> dict:
    """Run `crops[i]` (one page's crops each) with `budgets[i]` through both refills of `slots`
    slots, `repeats` times, alternating which goes first; one dict of figures (module docstring)."""
    from pageray.extractors.decoding.engine import Engine, EngineItem

    prompt = extractor.prompts.ids()
    items = [EngineItem(c, prompt, b) for c, b in zip(crops, budgets)]
    Engine(extractor.decoder, extractor.encoder, slots)(items[:slots])  # warm-up: first calls' allocations
    runs: dict[str, list] = {"static": [], "continuous": []}
    for r in range(repeats):
        for refill in (("static", "continuous") if r % 2 == 0 else ("continuous", "static")):
            runs[refill].append(_timed(Engine(extractor.decoder, extractor.encoder, slots, refill), items, sync))
    tokens = [[t for _, t in run[0]] for refill in runs.values() for run in refill]
    equal = all(t == tokens[0] for t in tokens)
    same = equal
    continuous = runs["continuous"][0][0]
    if reference:
        for item, (ours, _) in zip(items, continuous):
            [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, prompt_ids=[item.prompt_ids])
            same = same and (alone.text, alone.output_tokens) == (ours.text, ours.output_tokens)
    lengths = [r.output_tokens for r, _ in continuous]
    n = len(items)
    out = {"pages": n, "slots": slots, "repeats": repeats, "answer_lengths": lengths,
           "answer_tokens": {"median": _percentile(lengths, 50), "p95": _percentile(lengths, 95),
                             "min": min(lengths), "max": max(lengths)},
           "tokens_match_reference": same if reference else None, "tokens_static_equal_continuous": equal}
    for refill, done in runs.items():
        stats = done[0][1]  # the same work every repeat: the engine is deterministic
        walls, cpus = [d[2] for d in done], [d[3] for d in done]
        out[refill] = {"occupancy": round(stats.occupancy, 4), "decode_steps": stats.steps,
                       "decode_steps_per_page": round(stats.steps / n, 2), "prefills": stats.prefills,
                       "wall_s": _spread(walls), "cpu_s": _spread(cpus),
                       "pages_per_s": round(n / statistics.median(walls), 3),
                       "pages_per_cpu_s": round(n / statistics.median(cpus), 3)}
    # pages/s at equal work, each repeat's pair as one ratio (the pair ran back to back, so the
    # machine's load is as alike as it gets). On a shared CPU the process-time ratio is the one to
    # read (other processes' load makes wall time noise); on a GPU, wall time is the figure.
    for key, slot in (("pages_per_s", 2), ("pages_per_cpu_s", 3)):
        ratios = [s[slot] / c[slot] for s, c in zip(runs["static"], runs["continuous"])]
        out[f"{key}_continuous_over_static"] = _spread(ratios)
    out["steps_static_over_continuous"] = round(out["static"]["decode_steps"] / out["continuous"]["decode_steps"], 3)
    return out
