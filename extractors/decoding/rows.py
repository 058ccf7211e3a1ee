"""Schema-constrained decoding, host side: xgrammar masks plus a forced, shortest valid ending.

Each row has a grammar matcher. While a row has budget, the model chooses among the tokens
the grammar allows. When what is left of the budget (or of the time limit) is only enough to
close the JSON, the row stops choosing: it is forced to spell the shortest valid completion
(`extractors.closer`, kept current byte by byte) and then the stop token, so a truncated
generation is still valid, schema-conforming JSON. Rows forced this way are marked `truncated`.

`RowStates` is the whole host-side state of one batch, with no tensor in it except the bitmask:
`extractors.decode_loop` drives it around the model's forward pass, and `ConstrainedBatch` adapts
it to a transformers `LogitsProcessor` for `generate` (the reference the loop is tested against).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from pageray.extractors.closing.closer import Closer
from pageray.extractors.closing.completion import max_completion_len, shortest_completion


class JsonGrammar:
    """Everything per (tokenizer, schema) that a batch of rows shares; built once per actor."""

    def __init__(self, tokenizer, gen_schema: dict, vocab_size: int, stop_token_ids: list[int]):
        self.schema = gen_schema
        self.stop_token_ids = list(stop_token_ids)
        self.vocab_size = vocab_size
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_token_ids)
        # No whitespace outside strings: bounded (zero) whitespace, and fewer tokens per page.
        self.compiled = xgr.GrammarCompiler(self.info).compile_json_schema(
            gen_schema, any_whitespace=False, separators=(",", ":"))
        self.batch_matcher = xgr.BatchGrammarMatcher()
        special = set(self.info.special_token_ids) | set(self.stop_token_ids)
        self.token_bytes: list[bytes] = [
            b"" if i in special else bytes(b) for i, b in enumerate(self.info.decoded_vocab)]
        self._spelling: dict[bytes, int] = {}
        for i, b in enumerate(self.token_bytes):
            if b and len(b) <= 16:
                self._spelling.setdefault(b, i)
        self._longest = max((len(b) for b in self._spelling), default=1)
        self._spelled: dict[bytes, tuple[int, ...]] = {}
        # Worst-case completion in bytes bounds it in tokens: every byte has a token.
        self.reserve = max_completion_len(gen_schema) + 1

    def spell(self, data: bytes) -> tuple[int, ...]:
        """Token ids whose bytes concatenate to `data` (greedy longest match). Memoized: rows in
        their reserve window ask for the same few closing tails at every step."""
        cached = self._spelled.get(data)
        if cached is None:
            if len(self._spelled) >= 4096:
                self._spelled.clear()
            cached = self._spelled[data] = tuple(self._spell(data))
        return cached

    def _spell(self, data: bytes) -> list[int]:
        out, i = [], 0
        while i < len(data):
            for n in range(min(self._longest, len(data) - i), 0, -1):
                tok = self._spelling.get(data[i:i + n])
                if tok is not None:
                    out.append(tok)
                    i += n
                    break
            else:
                raise ValueError(f"byte {data[i]:#x} has no token in this vocabulary")
        return out

    def new_rows(self, rows: int, budget: int, deadline: float | None = None,
                 incremental: bool = True) -> "RowStates":
        return RowStates(self, rows, budget, deadline, incremental)


@dataclass
class RowResult:
    text: str
    truncated: bool
    timed_out: bool
    output_tokens: int
    confidence: float | None


@dataclass
class _Row:
    matcher: xgr.GrammarMatcher
    data: bytearray = field(default_factory=bytearray)
    forced: deque | None = None
    truncated: bool = False
    timed_out: bool = False
    done: bool = False
    tokens: int = 0
    closer: Closer | None = None  # made when the row enters its reserve window, then fed each token


@dataclass
class StepPlan:
    """What the device must do at one step: mask the rows in `free` with `bitmask` (their rows),
    and emit `forced[i]` for each forced row i. Rows in neither are done."""
    free: list[int]
    forced: dict[int, int]
    bitmask: torch.Tensor | None


class RowStates:
    """Host-side state of one batch of `rows` constrained generations of at most `budget` tokens
    (plus the reserve that closes them). Per step: `plan(step)`, then the device picks tokens,
    then `advance(tokens)`. The confidence of a row is the mean log-probability of the tokens it
    chose freely, read from the constrained distribution; the caller gathers those on the device
    and hands them to `results` once, so a step costs one device-to-host copy (the tokens)."""

    def __init__(self, grammar: JsonGrammar, rows: int, budget: int, deadline: float | None,
                 incremental: bool = True):
        """`incremental=False` re-parses each row's whole output at every step of its reserve
        window (`shortest_completion`): the reference, and what the benchmark compares against."""
        self.g = grammar
        self.budget = budget
        self.deadline = deadline
        self.incremental = incremental
        self.rows = [_Row(xgr.GrammarMatcher(grammar.compiled)) for _ in range(rows)]
        self.bitmask = xgr.allocate_token_bitmask(rows, grammar.vocab_size)
        self.scored: list[list[int]] = []  # per step, the rows that chose their token freely

    @property
    def max_new_tokens(self) -> int:
        return self.budget + self.g.reserve

    @property
    def finished(self) -> bool:
        return all(r.done for r in self.rows)

    def plan(self, step: int) -> StepPlan:
        self._plan_forcing(step)
        free = [i for i, r in enumerate(self.rows) if not r.done and r.forced is None]
        if free:
            self.g.batch_matcher.batch_fill_next_token_bitmask(
                [self.rows[i].matcher for i in free], self.bitmask, indices=free)
        self.scored.append(free)
        forced = {i: r.forced[0] for i, r in enumerate(self.rows) if not r.done and r.forced}
        return StepPlan(free, forced, self.bitmask if free else None)

    def advance(self, tokens: list[int]) -> None:
        """The tokens chosen at the last planned step, one per row (done rows' are ignored)."""
        stops = self.g.stop_token_ids
        for r, tok in zip(self.rows, tokens):
            if r.done:
                continue
            r.tokens += 1
            if r.forced:
                r.forced.popleft()
            if tok in stops:
                r.done = True
                continue
            if not r.matcher.accept_token(tok):  # cannot happen while masks are applied
                raise RuntimeError(f"grammar rejected token {tok}")
            r.data += self.g.token_bytes[tok]
            if r.closer is not None:
                r.closer.feed(self.g.token_bytes[tok])

    def _plan_forcing(self, step: int) -> None:
        remaining = self.budget - step
        timed_out = self.deadline is not None and time.monotonic() > self.deadline
        if remaining > self.g.reserve and not timed_out:
            return
        for r in self.rows:
            if r.done or r.forced is not None:
                continue
            tail = self._tail(r)
            plan = self.g.spell(tail)
            if timed_out or len(plan) + 1 >= remaining:
                r.forced = deque(plan + (self.g.stop_token_ids[0],))
                r.truncated = bool(tail)
                r.timed_out = timed_out

    def _tail(self, r: _Row) -> bytes:
        if not self.incremental:
            return shortest_completion(self.g.schema, bytes(r.data))
        if r.closer is None:  # once per row: what it wrote so far; later tokens are fed as they come
            r.closer = Closer(self.g.schema)
            r.closer.feed(bytes(r.data))
        return r.closer.tail()

    def results(self, logprobs: torch.Tensor | None) -> list[RowResult]:
        """Per-row outcome. `logprobs[s, i]`: log-probability of row i's token at step s (only
        the steps in `self.scored` are read). Rows that hit the hard cap are closed here."""
        sums, counts = self._confidence_sums(logprobs)
        out = []
        for i, r in enumerate(self.rows):
            data = bytes(r.data)
            truncated = r.truncated
            if not r.done:  # only if the reserve was too small: close the text itself
                tail = shortest_completion(self.g.schema, data)
                data, truncated = data + tail, truncated or bool(tail)
            conf = math.exp(sums[i] / counts[i]) if counts[i] else None
            # xgrammar admits encoded surrogates (ED A0..BF); they must not break the row.
            out.append(RowResult(data.decode("utf-8", errors="replace"), truncated, r.timed_out, r.tokens, conf))
        return out

    def _confidence_sums(self, logprobs: torch.Tensor | None) -> tuple[list[float], list[int]]:
        n = len(self.rows)
        if logprobs is None or not self.scored:
            return [0.0] * n, [0] * n
        steps = min(len(self.scored), logprobs.shape[0])
        chosen = torch.zeros(steps, n, dtype=torch.bool)
        for s in range(steps):
            chosen[s, self.scored[s]] = True
        lp = logprobs[:steps].float().cpu()
        chosen &= torch.isfinite(lp)
        sums = torch.where(chosen, lp, torch.zeros_like(lp)).sum(0)
        return sums.tolist(), chosen.sum(0).tolist()


def apply_plan(scores: torch.Tensor, plan: StepPlan, vocab_size: int) -> torch.Tensor:
    """Mask `scores` in place as `plan` says: grammar masks for free rows, one allowed token for
    forced rows (one indexed write for all of them, not two kernels per row)."""
    if plan.free:
        xgr.apply_token_bitmask_inplace(scores, plan.bitmask.to(scores.device, non_blocking=True),
                                        vocab_size=vocab_size, indices=plan.free)
    if plan.forced:
        rows = torch.tensor(list(plan.forced), dtype=torch.long).to(scores.device, non_blocking=True)
        toks = torch.tensor(list(plan.forced.values()), dtype=torch.long).to(scores.device, non_blocking=True)
        scores[rows] = -math.inf
        scores[rows, toks] = 0.0
    return scores


def chosen_logprobs(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(scores)[tokens], without writing a full-vocabulary log-softmax."""
    scores = scores.float()
    return scores.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(scores, dim=-1)


class ConstrainedBatch(LogitsProcessor):
    """`RowStates` as a transformers logits processor for one `generate` call: the model card's
    decoding loop with pageray's constraints (two host syncs per step, no overlap)."""

    def __init__(self, grammar: JsonGrammar, rows: int, budget: int, deadline: float | None):
        self.states = RowStates(grammar, rows, budget, deadline)
        self.prompt_len: int | None = None
        self._scores: torch.Tensor | None = None
        self._logprobs: list[torch.Tensor] = []

    @property
    def max_new_tokens(self) -> int:
        return self.states.max_new_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            last = input_ids[:, -1]
            self._logprobs.append(chosen_logprobs(self._scores, last.to(self._scores.device)))
            self.states.advance(last.tolist())
        plan = self.states.plan(input_ids.shape[1] - self.prompt_len)
        apply_plan(scores, plan, self.states.g.vocab_size)
        self._scores = scores.clone()  # `generate` may reuse the buffer for the next step's logits
        return scores

    def results(self) -> list[RowResult]:
        return self.states.results(torch.stack(self._logprobs) if self._logprobs else None)
