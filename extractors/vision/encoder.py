"""Page crops to image features: the vision tower and connector, one call per crop shape.

The processor pads every crop of a batch to the batch's largest crop, so one landscape page makes
every portrait crop 980 x 980 and forces a masked attention kernel (2.8x slower on the CPU probe
in docs/BENCHMARKS.md; on GPU sdpa with a mask cannot use the flash kernel). Here crops of equal
shape are stacked and encoded together, unpadded, and the features are put back in page order.
Crops arrive as uint8 (a quarter of fp32 to move) and are normalized on the device
(`extractors.pixels.normalize`, the processor's float math bit for bit).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pageray.extractors.batching import CROPS_PER_CALL
from pageray.extractors.vision.pixels import check_processor, normalize, processor_constants


class PageEncoder:
    """`__call__(pages)`: per page its list of HWC uint8 crops -> features (pages, crops x latents, hidden)."""

    def __init__(self, model, processor, device: str, split: bool):
        check_processor(processor, split)
        self.rescale, self.mean, self.std, _ = processor_constants(processor)
        self.vision = model.model.vision_model
        self.connector = model.model.connector
        self.patch = model.config.vision_config.patch_size
        self.dtype = model.dtype
        self.device = device

    @torch.inference_mode()
    def __call__(self, pages: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
        n_crops = len(pages[0])
        if any(len(p) != n_crops for p in pages):
            raise ValueError("every page of a batch must have the same number of crops")
        groups: dict[tuple[int, int], list[int]] = {}
        flat = [c for p in pages for c in p]
        for i, crop in enumerate(flat):
            groups.setdefault(crop.shape[:2], []).append(i)
        features: torch.Tensor | None = None
        for indices in groups.values():
            for start in range(0, len(indices), CROPS_PER_CALL):
                part = indices[start:start + CROPS_PER_CALL]
                out = self._encode([flat[i] for i in part])
                if features is None:
                    features = out.new_empty((len(flat),) + tuple(out.shape[1:]))
                features[torch.tensor(part, device=out.device)] = out
        return features.view(len(pages), -1, features.shape[-1])

    def _encode(self, crops: list[np.ndarray]) -> torch.Tensor:
        n, (h, w) = len(crops), crops[0].shape[:2]
        # one copy, straight into page-locked memory on GPU, so the upload is asynchronous
        host = torch.empty((n, h, w, 3), dtype=torch.uint8, pin_memory=self.device.startswith("cuda"))
        np.stack(crops, out=host.numpy())
        pixels = normalize(host.to(self.device, non_blocking=True), self.rescale, self.mean, self.std, self.dtype)
        # Every patch is real: the tower drops an all-true mask and takes the unmasked kernel.
        patches = torch.ones((n, h // self.patch, w // self.patch), dtype=torch.bool, device=pixels.device)
        hidden = self.vision(pixel_values=pixels, patch_attention_mask=patches).last_hidden_state
        return self.connector(hidden, attention_mask=patches.view(n, -1))
