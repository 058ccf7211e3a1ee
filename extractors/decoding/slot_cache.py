"""The KV cache of rows at different lengths: left-padded, right-aligned, joined and trimmed.

Why this layout and not a static per-slot cache: transformers' Mistral (the text model of
Idefics2) takes a 2-D padding mask and per-row position ids with a plain `DynamicCache` on any
device, and builds the causal and sliding-window mask itself; a `StaticCache` would need one cache
position for all rows, and the continuous-batching `PagedAttentionCache` does not take image
embeddings. So rows live in one batch, each row's real tokens contiguous and ending at the last
column; every decode step appends one column to all of them.

Why the sliding window stays exact: transformers masks the window by cache index
(`kv_idx > q_idx - window`), not by position. A row's tokens are contiguous, so the distance in
cache index between two of its tokens is their distance in the page alone; padding columns are
masked out. The cache keeps every column (`DynamicCache()` without a config: no layer drops
tokens), so the mask alone decides what a row sees, exactly as for the page alone.

Why trimming: when rows leave, columns that are padding for every remaining row are cut, so a
long prompt that has left does not keep widening every later step.
"""
from __future__ import annotations

import torch


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    if width == 0:
        return t
    return torch.cat([t.new_zeros(t.shape[:2] + (width,) + t.shape[3:]), t], dim=2)


class SlotCache:
    """The live rows' cache (`cache`, for the forward pass) and each row's real length.
    `step_inputs()` before each decode forward; `keep(rows)` after rows leave; `join(...)` when
    prefilled rows arrive. Row order is the batch order."""

    def __init__(self, device: str):
        self.device = device
        self.cache = None
        self.lengths: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return max(self.lengths, default=0) if self.cache is None else self.cache.get_seq_length()

    def step_inputs(self) -> dict:
        """Padding mask over the columns plus the one being written, and each row's next position."""
        width = self.width + 1
        lengths = torch.tensor(self.lengths, device=self.device)
        mask = torch.arange(width, device=self.device)[None, :] >= (width - 1 - lengths)[:, None]
        self.lengths = [n + 1 for n in self.lengths]
        return {"attention_mask": mask, "position_ids": lengths[:, None]}

    def keep(self, rows: list[int]) -> None:
        """Only `rows` (batch indices, in this order) stay; all-padding columns are cut."""
        if not rows:
            self.cache, self.lengths = None, []
            return
        lengths = [self.lengths[i] for i in rows]
        cut = self.width - max(lengths)
        index = torch.tensor(rows, device=self.device)
        self.cache = _cache([(k[index, :, cut:], v[index, :, cut:]) for k, v in _layers(self.cache)])
        self.lengths = lengths

    def join(self, cache, lengths: list[int]) -> None:
        """Append the rows of `cache` (a prefill's: every row `lengths[i]` == its width, no padding)."""
        if self.cache is None:
            self.cache, self.lengths = cache, list(lengths)
            return
        width = max(self.width, cache.get_seq_length())
        ours, theirs = width - self.width, width - cache.get_seq_length()
        self.cache = _cache([
            (torch.cat([_pad_left(k, ours), _pad_left(k2, theirs)]),
             torch.cat([_pad_left(v, ours), _pad_left(v2, theirs)]))
            for (k, v), (k2, v2) in zip(_layers(self.cache), _layers(cache))])
        self.lengths += list(lengths)
