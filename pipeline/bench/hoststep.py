"""Host milliseconds per decode step, without a model: `RowStates` driven over the real vocabulary.

What the decoder's host side does per step, and nothing else: `plan(step)` (xgrammar fills the
free rows' masks; inside the reserve window the forcing planner asks every open row for the bytes
that would close it) and `advance(tokens)` (each row's matcher accepts its token). The device is
replaced by a random pick: each free row takes a uniformly random token its mask allows, each
forced row its forced token. The pick is made outside the timed region, from a generator seeded
per batch size, so today's planner (`incremental=False`: `shortest_completion` re-parses each
row's whole output at every step of its reserve window) and the new one (`incremental=True`)
see the same token sequences; `same_text` says whether they also closed every row identically.

The budget should be long enough that the reserve window (the schema's worst-case completion in
tokens, 159 for the invoice) is a good part of the run: with budget 256 it is the last 159 steps.
"""
from __future__ import annotations

import random
import time

import numpy as np

BATCHES = (8, 32, 64)


def allowed_tokens(bitmask_row, vocab_size: int) -> np.ndarray:
    """Token ids one row of an xgrammar bitmask (int32 words, bit i of word w = token 32w+i) allows."""
    bits = np.unpackbits(bitmask_row.numpy().view(np.uint8), bitorder="little")[:vocab_size]
    return np.flatnonzero(bits)


def drive(grammar, rows: int, budget: int, incremental: bool, seed: int = 0) -> dict:
    """One batch of `rows` generations to the end; per-step host seconds of plan + advance."""
    rng = random.Random(seed)
    states = grammar.new_rows(rows, budget, None, incremental=incremental)
    window_start = budget - grammar.reserve
    times, in_window = [], []
    for step in range(states.max_new_tokens):
        if states.finished:
            break
        t0 = time.perf_counter()
        plan = states.plan(step)
        t1 = time.perf_counter()
        tokens = [0] * rows  # a done row's token is ignored
        for i in plan.free:
            choices = allowed_tokens(plan.bitmask[i], grammar.vocab_size)
            tokens[i] = int(choices[rng.randrange(len(choices))])
        for i, tok in plan.forced.items():
            tokens[i] = tok
        t2 = time.perf_counter()
        states.advance(tokens)
        times.append((t1 - t0) + (time.perf_counter() - t2))
        in_window.append(step >= window_start)
    texts = [r.text for r in states.results(None)]
    return {"times": times, "in_window": in_window, "texts": texts}


def _ms(values: list[float]) -> float | None:
    return 1e3 * sum(values) / len(values) if values else None


def host_step_rows(grammar, budget: int = 256, batches=BATCHES, log=lambda msg: None) -> list[dict]:
    """One row per batch size: today's planner against the new one, ms per step (all steps, and
    the steps inside the reserve window), and whether both closed every row the same way."""
    out = []
    for rows in batches:
        log(f"host per step: batch {rows}, budget {budget}")
        runs = {name: drive(grammar, rows, budget, incremental, seed=rows)
                for name, incremental in (("old", False), ("new", True))}
        row = {"name": f"host-step-b{rows}", "device": "cpu (host only)", "batch": rows, "budget": budget,
               "reserve": grammar.reserve, "vocab": grammar.vocab_size,
               "same_text": runs["old"]["texts"] == runs["new"]["texts"]}
        for name, run in runs.items():
            window = [t for t, w in zip(run["times"], run["in_window"]) if w]
            row[f"{name}_steps"] = len(run["times"])
            row[f"{name}_ms_per_step"] = _ms(run["times"])
            row[f"{name}_ms_per_window_step"] = _ms(window)
        row["host_ms_per_step"] = row["new_ms_per_step"]
        row["note"] = (f"ms/step today {row['old_ms_per_step']:.3f} -> new {row['new_ms_per_step']:.3f}; "
                       f"in the reserve window ({grammar.reserve} tokens) {row['old_ms_per_window_step']:.3f} -> "
                       f"{row['new_ms_per_window_step']:.3f}; {row['new_steps']} steps; "
                       f"same text: {row['same_text']}")
        out.append(row)
    return out
