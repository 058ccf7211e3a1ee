"""Greedy constrained decoding in a loop of our own around the text model's forward pass.

`generate` with a logits processor runs everything in series: the forward pass, then on the host
the mask for the step (waiting for the logits), then two device syncs to read the token and its
log-probability. Here one step is: mask and pick on the device, copy the tokens out (the only
sync), launch the next forward pass, and only then, while the device runs it, accept the tokens
in the grammar matchers and fill the next step's masks (`extractors.decoding.RowStates`). The
log-probabilities stay on the device until the batch ends.

Every prompt of a batch has the same length, with its image tokens at the same positions (one
prompt per schema and variant, the same number of crops per page; the extractor batches pages by
prompt length), so there is no padding and no attention mask: position ids come from the cache.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass

import torch

from pageray.extractors.decoding.rows import JsonGrammar, apply_plan, chosen_logprobs


@dataclass
class DecodeStats:
    steps: int = 0
    host_s: float = 0.0     # matcher and forcing work: hidden behind the forward pass on GPU
    wait_s: float = 0.0     # waiting for the chosen tokens to reach the host


def _new_cache(text_config):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=text_config)
    except TypeError:  # older transformers
        return DynamicCache()


class DecodeLoop:
    """`__call__(features, budget, deadline)`: image features (pages, image tokens, hidden) from
    `extractors.vision.PageEncoder` -> one RowResult per page, and the loop's DecodeStats."""

    def __init__(self, model, grammar: JsonGrammar, prompt_ids: list[int], image_token_id: int, device: str):
        self.model, self.grammar, self.device = model, grammar, device
        self.text = model.model.text_model
        self.embed = self.text.get_input_embeddings()
        self.prompt = torch.tensor([prompt_ids], device=device)
        self.image_token_id = image_token_id
        self.image_positions = (self.prompt[0] == image_token_id).nonzero()[:, 0]
        # transformers renamed past_key_values to `cache`; pass whichever this version takes
        params = inspect.signature(self.text.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # benchmarks only: run exactly `fixed_steps` steps (done rows ignored); unconstrained: plain argmax
        self.fixed_steps: int | None = None
        self.constrained = True

    def forward(self, embeds: torch.Tensor, cache, **inputs) -> torch.Tensor:
        """The last position's logits; `inputs`: a padding mask and position ids (extractors.engine)."""
        out = self.text(inputs_embeds=embeds, use_cache=True, **inputs, **{self._cache_kw: cache})
        return self.model.lm_head(out.last_hidden_state[:, -1])

    def prompt_tokens(self) -> int:
        return int(self.prompt.shape[1])

    def _prompt(self, rows: int, prompt_ids: list[list[int]] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, length) prompt ids and the image token positions they share."""
        if prompt_ids is None:
            return self.prompt.expand(rows, -1), self.image_positions
        prompt = torch.tensor(prompt_ids, device=self.device)  # equal lengths, or this raises
        images = prompt == self.image_token_id
        if prompt.shape[0] != rows or not bool((images == images[:1]).all()):
            raise ValueError("every prompt of a batch must have its image tokens at the same positions")
        return prompt, images[0].nonzero()[:, 0]

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor, budget: int, deadline: float | None = None,
                 prompt_ids: list[list[int]] | None = None):
        """`prompt_ids`: one prompt per row, all of one length (default: the constructor's for all)."""
        rows = features.shape[0]
        prompt, image_positions = self._prompt(rows, prompt_ids)
        if features.shape[1] != image_positions.numel():
            raise ValueError(f"{features.shape[1]} image features per row for {image_positions.numel()} "
                             "image tokens in the prompt")
        states = self.grammar.new_rows(rows, budget, deadline)
        stats = DecodeStats()
        embeds = self.embed(prompt)
        embeds[:, image_positions] = features.to(embeds.dtype)
        cache = _new_cache(self.model.config.text_config)
        logits = self.forward(embeds, cache)
        cuda = self.device.startswith("cuda")
        host_tokens = torch.empty(rows, dtype=torch.long, pin_memory=cuda)
        logprobs = []
        steps = self.fixed_steps or states.max_new_tokens
        for step in range(steps):
            t0 = time.perf_counter()
            plan = states.plan(step) if self.constrained else None
            t1 = time.perf_counter()
            scores = apply_plan(logits.float(), plan, self.grammar.vocab_size) if plan else logits.float()
            tokens = scores.argmax(dim=-1)
            logprobs.append(chosen_logprobs(scores, tokens))
            host_tokens.copy_(tokens, non_blocking=cuda)
            copied = torch.cuda.Event() if cuda else None
            if copied is not None:
                copied.record()
            if step + 1 < steps:  # queued behind the copy: runs while the host works
                logits = self.forward(self.embed(tokens[:, None]), cache)
            t2 = time.perf_counter()
            if copied is not None:
                copied.synchronize()
            t3 = time.perf_counter()
            if self.constrained:
                states.advance(host_tokens.tolist())
            else:
                host_tokens.tolist()
            stats.host_s += (t1 - t0) + (time.perf_counter() - t3)
            stats.wait_s += t3 - t2
            stats.steps += 1
            if states.finished and self.fixed_steps is None:
                break
        return states.results(torch.stack(logprobs) if logprobs else None), stats
