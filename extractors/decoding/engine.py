"""Continuous batching: a fixed number of decode slots, refilled as soon as a row finishes.

A static batch decodes until its longest answer ends, and a row that finished early keeps its
slot idle until then; answer lengths vary a lot (a blank page ends in ten tokens, a dense one in
a thousand). Here, after each decode step the rows that finished leave the batch, and waiting
pages are encoded (vision tower), prefilled together (one forward per prompt length) and join
it, so every step runs over as many live rows as there are slots while pages wait.

The parts are DecodeLoop's: its forward pass, the per-row grammar state (`RowStates`: masks,
the forced shortest completion, per-row budgets and time limits), `apply_plan` and the confidence
read from the constrained distribution. Each row has its own one-row `RowStates`, as its steps
and budget are its own. Rows at different lengths share one cache (`extractors.slot_cache`: why
left padding, and why the sliding window stays exact). A failure raises: the caller halves and
retries as it does for DecodeLoop, so a page that cannot be read still becomes a model_error row.

Pages can arrive while it runs (`arrivals`, polled before each step: several callers' batches in
one engine, `extractors.decoding.feeder`), and each item is handed on as soon as it ends
(`on_done`), so a caller whose pages are all done need not wait for the others'.

`refill="static"` is today's batching with the same code (a batch is admitted only when every
row of the last one is done, and done rows keep computing until then): the benchmark's baseline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from pageray.extractors.decoding.rows import RowResult, RowStates, StepPlan, apply_plan, chosen_logprobs
from pageray.extractors.decoding.slot_cache import SlotCache


@dataclass
class EngineItem:
    """A page (or a bundle's pages) waiting for a slot: its crops, its prompt's ids (`<image>`
    expanded), its output budget and its time limit, counted from when it takes a slot."""
    crops: list[np.ndarray]
    prompt_ids: list[int]
    budget: int
    time_limit_s: float | None = None


@dataclass
class Job:
    """An item for the engine and where its answer goes (a page row, or a bundle's page rows):
    the item is made only when the job runs, inside the caller's failure handling."""
    lead: dict                                   # the row that carries the decode counters
    pages: int                                   # pages it stands for: its share of the time
    item: Callable[[], EngineItem]
    record: Callable[[RowResult, float], None]   # (its result, ms per page)
    fail: Callable[[BaseException], None]


@dataclass
class EngineStats:
    slots: int
    steps: int = 0          # decode steps (forward passes over the live rows)
    row_steps: int = 0      # live rows (not done) summed over decode steps
    slot_steps: int = 0     # slots that items given so far could fill (at most all), summed over decode steps
    prefills: int = 0       # prefill forward passes

    @property
    def occupancy(self) -> float:
        """Live rows / slots, averaged over decode steps."""
        return self.row_steps / (self.steps * self.slots) if self.steps else 0.0

    def minus(self, other: "EngineStats") -> "EngineStats":
        return EngineStats(self.slots, *(getattr(self, k) - getattr(other, k)
                                         for k in ("steps", "row_steps", "slot_steps", "prefills")))


@dataclass
class _Row:
    item: int
    slot: int                       # fixed for the row's life: its line of the log-probability table
    states: RowStates | None        # None: unconstrained (plain argmax until a stop token or the budget)
    budget: int
    tokens: list[int] = field(default_factory=list)
    done: bool = False


class Engine:
    """`__call__(items)` -> (per item, in order, its RowResult and its token ids; EngineStats).
    `arrivals()`: more items, polled before each step; `on_done(index, result)`: as each item ends;
    `stats`: counters to add to (a caller's, kept across calls), else new ones."""

    def __init__(self, loop, encoder, slots: int, refill: str = "continuous"):
        if refill not in ("continuous", "static"):
            raise ValueError(f"refill must be 'continuous' or 'static', not {refill!r}")
        self.loop, self.encoder, self.slots, self.refill = loop, encoder, int(slots), refill
        self.grammar = loop.grammar
        self.constrained = True

    @torch.inference_mode()
    def __call__(self, items: list[EngineItem], arrivals: Callable[[], list[EngineItem]] | None = None,
                 on_done: Callable[[int, tuple], None] | None = None, stats: EngineStats | None = None):
        items = list(items)
        waiting = list(range(len(items)))
        free = list(range(self.slots))
        logprob_table = self._table(items, None)
        results: list = [None] * len(items)
        stats = stats if stats is not None else EngineStats(self.slots)
        kv, rows, logits = SlotCache(self.loop.device), [], None
        while True:
            new = arrivals() if arrivals is not None else []
            if new:
                waiting += range(len(items), len(items) + len(new))
                items += new
                results += [None] * len(new)
                logprob_table = self._table(items, logprob_table)
            if not (waiting or rows):
                break
            if waiting and free and (self.refill == "continuous" or not rows):
                take, waiting = waiting[:len(free)], waiting[len(free):]
                new, new_logits = self._admit(items, take, [free.pop(0) for _ in take], kv, stats)
                rows += new
                logits = new_logits if logits is None else torch.cat([logits, new_logits])
            tokens = self._choose(logits, rows, logprob_table)
            stats.steps += 1
            stats.row_steps += sum(not r.done for r in rows)
            stats.slot_steps += min(self.slots, len(items))
            logits = self.loop.forward(self.loop.embed(tokens[:, None]), kv.cache, **kv.step_inputs())
            for row, tok in zip(rows, tokens.tolist()):
                self._advance(row, tok)
            if self.refill == "static" and not all(r.done for r in rows):
                continue
            finished = [i for i, r in enumerate(rows) if r.done]
            for i in finished:
                results[rows[i].item] = self._result(rows[i], logprob_table)
                free.append(rows[i].slot)
                if on_done is not None:
                    on_done(rows[i].item, results[rows[i].item])
            if finished:
                keep = [i for i, r in enumerate(rows) if not r.done]
                rows = [rows[i] for i in keep]
                kv.keep(keep)
                logits = logits[keep] if keep else None
        return results, stats

    def _table(self, items: list[EngineItem], table: torch.Tensor | None) -> torch.Tensor:
        """Each slot's line of chosen log-probabilities, as wide as the largest budget given
        (widened, its lines kept, when a larger one arrives)."""
        width = max((it.budget for it in items), default=0) + self.grammar.reserve + 1
        if table is not None and table.shape[1] >= width:
            return table
        wider = torch.zeros((self.slots, width), dtype=torch.float32, device=self.loop.device)
        if table is not None:
            wider[:, :table.shape[1]] = table
        return wider

    def _admit(self, items, take: list[int], slots: list[int], kv: SlotCache, stats: EngineStats):
        """Encode and prefill the pages `take` (one forward per prompt length: no padding in a
        prefill, as in DecodeLoop) and join them to the batch."""
        by_crops: dict[int, list[int]] = {}
        for i in take:
            by_crops.setdefault(len(items[i].crops), []).append(i)
        features = {}
        for group in by_crops.values():
            for i, f in zip(group, self.encoder([items[i].crops for i in group])):
                features[i] = f
        by_length: dict[int, list[int]] = {}
        for i in take:
            by_length.setdefault(len(items[i].prompt_ids), []).append(i)
        slot_of = dict(zip(take, slots))
        rows, logits = [], []
        for group in by_length.values():
            cache = _full_cache()
            logits.append(self.loop.forward(self._embeds(items, group, features), cache))
            kv.join(cache, [len(items[i].prompt_ids) for i in group])
            stats.prefills += 1
            rows += [self._new_row(items[i], i, slot_of[i]) for i in group]
        return rows, torch.cat(logits)

    def _embeds(self, items, group: list[int], features: dict) -> torch.Tensor:
        prompt = torch.tensor([items[i].prompt_ids for i in group], device=self.loop.device)
        embeds = self.loop.embed(prompt)
        for row, i in enumerate(group):
            where = (prompt[row] == self.loop.image_token_id).nonzero()[:, 0]
            if where.numel() != features[i].shape[0]:
                raise ValueError(f"{features[i].shape[0]} image features for {where.numel()} image tokens")
            embeds[row, where] = features[i].to(embeds.dtype)
        return embeds

    def _new_row(self, item: EngineItem, index: int, slot: int) -> _Row:
        deadline = time.monotonic() + item.time_limit_s if item.time_limit_s else None
        states = self.grammar.new_rows(1, item.budget, deadline) if self.constrained else None
        return _Row(index, slot, states, item.budget)

    def _choose(self, logits: torch.Tensor, rows: list[_Row], table: torch.Tensor) -> torch.Tensor:
        """Each live row's plan at its own step, one masked argmax over the batch, and the
        chosen log-probabilities written into the rows' lines of `table` (read when a row ends)."""
        scores = logits.float()
        if self.constrained:
            free, forced = [], {}
            bitmask = None
            for b, row in enumerate(rows):
                if row.done:
                    continue
                plan = row.states.plan(len(row.tokens))
                if plan.free:
                    if bitmask is None:
                        bitmask = plan.bitmask.new_zeros((len(rows),) + tuple(plan.bitmask.shape[1:]))
                    bitmask[b] = plan.bitmask[0]
                    free.append(b)
                forced.update({b: tok for tok in plan.forced.values()})
            scores = apply_plan(scores, StepPlan(free, forced, bitmask), self.grammar.vocab_size)
        tokens = scores.argmax(dim=-1)
        live = [b for b, r in enumerate(rows) if not r.done]
        if live:
            index = torch.tensor(live, device=scores.device)
            slots = torch.tensor([rows[b].slot for b in live], device=scores.device)
            steps = torch.tensor([len(rows[b].tokens) for b in live], device=scores.device)
            table[slots, steps] = chosen_logprobs(scores[index], tokens[index])
        return tokens

    def _advance(self, row: _Row, tok: int) -> None:
        if row.done:
            return
        row.tokens.append(tok)
        if row.states is not None:
            row.states.advance([tok])  # at the hard cap (a reserve too small) `results` closes the text
            row.done = row.states.finished or len(row.tokens) >= row.states.max_new_tokens
        else:
            row.done = tok in self.grammar.stop_token_ids or len(row.tokens) >= row.budget

    def _result(self, row: _Row, table: torch.Tensor) -> tuple[RowResult, list[int]]:
        logprobs = table[row.slot, :len(row.tokens)].clone()[:, None]
        if row.states is not None:
            return row.states.results(logprobs)[0], row.tokens
        text = b"".join(self.grammar.token_bytes[t] for t in row.tokens).decode("utf-8", errors="replace")
        confidence = float(logprobs.float().mean().exp()) if row.tokens else None
        return RowResult(text, False, False, len(row.tokens), confidence), row.tokens


def _full_cache():
    """A cache whose layers keep every token: the sliding window is the mask's (extractors.slot_cache)."""
    from transformers import DynamicCache

    return DynamicCache()
