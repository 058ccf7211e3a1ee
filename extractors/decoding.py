"""Schema-constrained decoding: xgrammar masks plus a forced, shortest valid ending.

Each row has a grammar matcher. While a row has budget, the model chooses among the tokens
the grammar allows. When what is left of the budget (or of the time limit) is only enough to
close the JSON, the row stops choosing: it is forced to spell the shortest valid completion
(`extractors.completion`) and then the stop token, so a truncated generation is still valid,
schema-conforming JSON. Rows forced this way are marked `truncated`.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from extractors.completion import max_completion_len, shortest_completion


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
        # Worst-case completion in bytes bounds it in tokens: every byte has a token.
        self.reserve = max_completion_len(gen_schema) + 1

    def spell(self, data: bytes) -> list[int]:
        """Token ids whose bytes concatenate to `data` (greedy longest match)."""
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

    def new_batch(self, rows: int, budget: int, deadline: float | None = None) -> "ConstrainedBatch":
        return ConstrainedBatch(self, rows, budget, deadline)


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
    logprob_sum: float = 0.0
    scored: int = 0


class ConstrainedBatch(LogitsProcessor):
    """A transformers logits processor for one `generate` call over `rows` pages."""

    def __init__(self, grammar: JsonGrammar, rows: int, budget: int, deadline: float | None):
        self.g = grammar
        self.budget = budget
        self.deadline = deadline
        self.rows = [_Row(xgr.GrammarMatcher(grammar.compiled)) for _ in range(rows)]
        self.bitmask = xgr.allocate_token_bitmask(rows, grammar.vocab_size)
        self.prompt_len: int | None = None
        self._logprobs: torch.Tensor | None = None

    @property
    def max_new_tokens(self) -> int:
        return self.budget + self.g.reserve

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            self._advance(input_ids[:, -1])
        step = input_ids.shape[1] - self.prompt_len
        self._plan_forcing(step)
        free = [i for i, r in enumerate(self.rows) if not r.done and r.forced is None]
        if free:
            self.g.batch_matcher.batch_fill_next_token_bitmask(
                [self.rows[i].matcher for i in free], self.bitmask, indices=free)
            xgr.apply_token_bitmask_inplace(
                scores, self.bitmask.to(scores.device, non_blocking=True),
                vocab_size=self.g.vocab_size, indices=free)
        for i, r in enumerate(self.rows):
            if not r.done and r.forced:
                scores[i].fill_(-math.inf)
                scores[i, r.forced[0]] = 0.0
        # Confidence is read from the constrained distribution the model actually chose from.
        self._logprobs = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _advance(self, last: torch.Tensor) -> None:
        chosen = last.tolist()
        logp = self._logprobs[torch.arange(len(chosen), device=self._logprobs.device), last.to(
            self._logprobs.device)].tolist()
        for r, tok, lp in zip(self.rows, chosen, logp):
            if r.done:
                continue
            r.tokens += 1
            if r.forced:
                r.forced.popleft()
            elif math.isfinite(lp):
                r.logprob_sum += lp
                r.scored += 1
            if tok in self.g.stop_token_ids:
                r.done = True
                continue
            if not r.matcher.accept_token(tok):  # cannot happen while masks are applied
                raise RuntimeError(f"grammar rejected token {tok}")
            r.data += self.g.token_bytes[tok]

    def _plan_forcing(self, step: int) -> None:
        remaining = self.budget - step
        timed_out = self.deadline is not None and time.monotonic() > self.deadline
        if remaining > self.g.reserve and not timed_out:
            return
        for r in self.rows:
            if r.done or r.forced is not None:
                continue
            tail = shortest_completion(self.g.schema, bytes(r.data))
            plan = self.g.spell(tail) + [self.g.stop_token_ids[0]]
            if timed_out or len(plan) >= remaining:
                r.forced = deque(plan)
                r.truncated = bool(tail)
                r.timed_out = timed_out

    def results(self) -> list[RowResult]:
        """Per-row outcome after `generate` returns. Rows that hit the hard cap are closed here."""
        out = []
        for r in self.rows:
            data = bytes(r.data)
            truncated = r.truncated
            if not r.done:  # only if the reserve was too small: close the text itself
                tail = shortest_completion(self.g.schema, data)
                data, truncated = data + tail, truncated or bool(tail)
            conf = math.exp(r.logprob_sum / r.scored) if r.scored else None
            # xgrammar admits encoded surrogates (ED A0..BF); they must not break the row.
            out.append(RowResult(data.decode("utf-8", errors="replace"), truncated, r.timed_out, r.tokens, conf))
        return out
