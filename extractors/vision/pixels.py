"""Idefics2's image preprocessing, split in two: uint8 crops on the CPU workers, float math on the device.

Why: the Idefics2 processor (transformers' `Idefics2ImageProcessorPil`) spends 70-380 ms of
single-threaded fp32 numpy per page, and it ran on the GPU actor, which waited for it. The work
falls apart cleanly. Splitting into quarters and the PIL BILINEAR resize act on uint8 pixels and
give uint8 pixels, so they run where the page is rendered (`model_crops`, `PreparePixels`) and
travel as one bytes cell per page (`pack_crops`). Rescale and normalize are elementwise, so the
GPU actor does them on the device (`normalize`) in the processor's exact float
order: float64 multiply, float32 cast, float32 (x - mean) / std. The result is bit for bit the
processor's `pixel_values`; tests/test_pixels.py proves it against the real processor on real pages.

What this reproduces is a fixed processor configuration (BILINEAR, convert-rgb/resize/rescale/
normalize on, size == PROCESSOR_SIZE); `check_processor` refuses any other with ModelLoadError
rather than let a fine-tune's different config silently get different pixels.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from pageray.extractors.model.loading import PROCESSOR_SIZE
from pageray.pipeline.datamodel import batch_to_rows
from pageray.pipeline.errors import ModelLoadError

BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, the only resample model_crops implements
_INDEX_CHUNK_ELEMENTS = 1 << 26  # bounds normalize's int64 index temporary to 512 MiB

# Idefics2's processor scales the longest side to 980 px and its crops to half that; a page
# thinner than this ratio rounds to 0 px there (ZeroDivisionError). Such strips are padded.
MAX_MODEL_ASPECT = 40
MIN_MODEL_SIDE_PX = 28


def model_canvas(width: int, height: int) -> tuple[int, int]:
    """The smallest canvas (width, height) >= the image that the model's processor can take:
    no side below MIN_MODEL_SIDE_PX and no aspect ratio beyond MAX_MODEL_ASPECT."""
    floor = max(MIN_MODEL_SIDE_PX, math.ceil(max(width, height) / MAX_MODEL_ASPECT))
    return max(int(width), floor), max(int(height), floor)


def model_canvas_image(image: np.ndarray) -> np.ndarray:
    """The page as the processor can take it: a hair-thin strip is padded with white, bottom/right
    (what extractor._model_image did with PIL); any other page is returned as it is."""
    h, w = image.shape[:2]
    cw, ch = model_canvas(w, h)
    if (cw, ch) == (w, h):
        return image
    canvas = np.full((ch, cw, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = image
    return canvas


def resize_output_size(height: int, width: int, longest: int = PROCESSOR_SIZE["longest_edge"],
                       shortest: int = PROCESSOR_SIZE["shortest_edge"]) -> tuple[int, int]:
    """(height, width) after Idefics2's resize: transformers' idefics2 get_resize_output_image_size,
    int() truncation included. Kept here so the render workers need not import transformers."""
    aspect = width / height
    if width >= height and width > longest:
        width = longest
        height = int(width / aspect)
    elif height > width and height > longest:
        height = longest
        width = int(height * aspect)
    return max(height, shortest), max(width, shortest)


def _resize(crop: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = crop.shape[:2]
    new_h, new_w = resize_output_size(h, w)
    if (new_h, new_w) == (h, w):  # PIL's resize to the same size is a copy
        return np.array(crop, order="C")  # an own, writable copy: torch.from_numpy takes it without a warning
    resized = Image.fromarray(np.ascontiguousarray(crop), "RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.array(resized)


def model_crops(image: np.ndarray, split: bool) -> list[np.ndarray]:
    """The processor's images for one RGB page (H, W, 3) uint8, before rescale: with `split` the
    four quarters (top-left, top-right, bottom-left, bottom-right; halves rounded down) then the
    whole page, each split *before* resizing, as the processor does. Each is HWC uint8, C-contiguous,
    writable and its own memory."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    image = model_canvas_image(image)
    if not split:
        return [_resize(image)]
    h, w = image.shape[:2]
    mh, mw = h // 2, w // 2
    parts = [image[:mh, :mw], image[:mh, mw:], image[mh:, :mw], image[mh:, mw:], image]
    return [_resize(p) for p in parts]


def pack_crops(crops: Sequence[np.ndarray]) -> tuple[bytes, list[list[int]]]:
    """One page's crops as one bytes value (concatenated HWC uint8) and their [[h, w], ...]."""
    shapes = [[int(c.shape[0]), int(c.shape[1])] for c in crops]
    return b"".join(memoryview(np.ascontiguousarray(c)).cast("B") for c in crops), shapes


def unpack_crops(buf: Any, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Zero-copy (read-only) HWC uint8 views of packed crops; `buf` is bytes, a memoryview or a pyarrow Buffer."""
    sizes = [int(h) * int(w) * 3 for h, w in shapes]
    total = len(memoryview(buf).cast("B"))
    if total != sum(sizes):
        raise ValueError(f"packed crops hold {total} bytes but their shapes {[list(s) for s in shapes]} "
                         f"need {sum(sizes)}")
    out, offset = [], 0
    for (h, w), size in zip(shapes, sizes):
        out.append(np.frombuffer(buf, np.uint8, count=size, offset=offset).reshape(int(h), int(w), 3))
        offset += size
    return out


class PreparePixels:
    """CPU step: page rows with `image` (raw RGB bytes) in, rows with `pixels` + `crop_shapes` out."""

    def __init__(self, split: bool):
        self.split = bool(split)

    def page(self, row: Mapping[str, Any]) -> dict:
        if row.get("image") is None:
            return dict(row)
        w, h = int(row["image_width"]), int(row["image_height"])
        data = row["image"]
        if len(memoryview(data).cast("B")) != w * h * 3:
            raise ValueError(f"page image holds {len(memoryview(data).cast('B'))} bytes, not {w}x{h}x3")
        image = np.frombuffer(data, np.uint8).reshape(h, w, 3)
        pixels, shapes = pack_crops(model_crops(image, self.split))
        out = {k: v for k, v in row.items() if k != "image"}
        out.update(pixels=pixels, crop_shapes=shapes)
        return out

    def __call__(self, batch):
        """A list of row dicts gives a list of rows; a column batch (dict of lists or a pyarrow
        Table) gives a dict of lists with `image` swapped for `pixels` and `crop_shapes`."""
        if isinstance(batch, list):
            return [self.page(r) for r in batch]
        names = [n for n in (batch.column_names if hasattr(batch, "column_names") else batch.keys()) if n != "image"]
        rows = [self.page(r) for r in batch_to_rows(batch)]
        return {n: [r.get(n) for r in rows] for n in names + ["pixels", "crop_shapes"]}


def processor_constants(processor) -> tuple[float, tuple[float, float, float], tuple[float, float, float], int]:
    """(rescale_factor, mean, std, resample) of a loaded processor or image processor."""
    ip = getattr(processor, "image_processor", processor)

    def three(v) -> tuple[float, float, float]:
        values = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * 3
        if len(values) != 3:
            raise ModelLoadError(f"image processor mean/std {v!r} is not 3 channels")
        return tuple(values)

    return float(ip.rescale_factor), three(ip.image_mean), three(ip.image_std), ip.resample


def check_processor(processor, split: bool | None = None) -> None:
    """Refuse (ModelLoadError, naming the setting) a processor whose pixels model_crops would not reproduce."""
    ip = getattr(processor, "image_processor", processor)
    problems = []
    try:
        bilinear = int(ip.resample) == BILINEAR
    except (TypeError, ValueError):
        bilinear = False
    if not bilinear:
        problems.append(f"resample={ip.resample!r} (only BILINEAR={BILINEAR} is supported)")
    for name in ("do_convert_rgb", "do_resize", "do_rescale", "do_normalize"):
        if not getattr(ip, name, False):
            problems.append(f"{name}={getattr(ip, name, None)!r} (must be True)")
    size = {k: v for k, v in dict(ip.size or {}).items() if v is not None}
    if size != PROCESSOR_SIZE:
        problems.append(f"size={size} (must be {PROCESSOR_SIZE})")
    if split is not None and bool(getattr(ip, "do_image_splitting", False)) != bool(split):
        problems.append(f"do_image_splitting={getattr(ip, 'do_image_splitting', None)!r} (the crops are split={split})")
    if problems:
        raise ModelLoadError(f"image processor {type(ip).__name__} differs from what pageray's CPU preprocessing "
                             f"(extractors.pixels) reproduces: {'; '.join(problems)}. Use a checkpoint with the "
                             "Idefics2 processor defaults.")


def normalize(crops_u8, rescale_factor: float, mean, std, dtype=None):
    """(N, H, W, 3) uint8 -> (N, 3, H, W): the processor's float math bit for bit, on the tensor's
    device: float64 x * rescale_factor, cast to float32, (x - mean) / std in float32, then `dtype`.
    A uint8 has 256 values, so that math runs once per value and channel (a 3 x 256 table) and each
    pixel is a lookup: the same numbers, 2.6x faster on CPU than running it per pixel."""
    import torch

    n, h, w, c = crops_u8.shape
    dev = crops_u8.device
    dtype = dtype or torch.float32
    m = torch.tensor(mean, dtype=torch.float32, device=dev).view(c, 1)
    s = torch.tensor(std, dtype=torch.float32, device=dev).view(c, 1)
    values = (torch.arange(256, dtype=torch.float64, device=dev) * float(rescale_factor)).to(torch.float32)
    table = ((values.view(1, 256) - m) / s).to(dtype)  # (channel, value)
    out = torch.empty((n, c, h, w), dtype=dtype, device=dev)
    step = max(1, _INDEX_CHUNK_ELEMENTS // max(1, h * w))
    for i in range(0, n, step):
        for k in range(c):
            out[i:i + step, k] = table[k][crops_u8[i:i + step, :, :, k].long()]
    return out
