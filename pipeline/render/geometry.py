"""Pure size arithmetic for rendering pages and images: points in, pixel sizes out.

Idefics2 with image splitting sees a page as four quadrants plus the whole page, each
capped at 980 px on its longest edge, so the page is worth rendering at 2 x 980 = 1960
px on its longest side and never more. Everything here is a pure function of numbers so
it can be tested exhaustively without a renderer.
"""
from __future__ import annotations

import math
import numbers

DEFAULT_LONGEST_EDGE_PX = 1960
DEFAULT_MAX_PIXELS = DEFAULT_LONGEST_EDGE_PX * DEFAULT_LONGEST_EDGE_PX
MAX_LONGEST_EDGE_PX = 8192  # a configurable limit may not go past this (8192^2 RGB = 192 MiB)

# MuPDF rounds a transformed page box outwards but first pulls each edge in by a small
# epsilon, so float noise such as 1960.00003 does not cost a whole extra pixel column.
# We mirror that with a tolerance well below its epsilon, which can only over-estimate
# MuPDF's result: what we promise about pixel counts then holds for the real pixmap.
_ROUNDING_TOLERANCE = 1e-6


def _check_dimensions(width: float, height: float) -> None:
    for label, value in (("width", width), ("height", height)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ValueError(f"{label} must be a number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{label} must be a finite number > 0, got {value!r}")


def _check_limits(longest_edge_px: int, max_pixels: int) -> None:
    if longest_edge_px < 1:
        raise ValueError(f"longest_edge_px must be >= 1, got {longest_edge_px!r}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels!r}")


def pixel_length(length: float, scale: float) -> int:
    """Pixels MuPDF gives a box edge of `length` points at `scale`: rounded up, at least 1."""
    return max(1, math.ceil(length * scale - _ROUNDING_TOLERANCE))


def pixel_size(width_pt: float, height_pt: float, scale: float) -> tuple[int, int]:
    """(width, height) in whole pixels of a width_pt x height_pt box drawn at `scale`."""
    _check_dimensions(width_pt, height_pt)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return pixel_length(width_pt, scale), pixel_length(height_pt, scale)


def _pixel_budget_scale(width: float, height: float, max_pixels: int) -> float:
    """Largest scale we can prove keeps the rounded-up pixel count within max_pixels."""
    # Square roots taken separately so absurd sizes (1e300 pt) cannot overflow to inf.
    exact = math.sqrt(max_pixels) / math.sqrt(width) / math.sqrt(height)
    w_px, h_px = pixel_length(width, exact), pixel_length(height, exact)
    if w_px * h_px <= max_pixels:
        return exact
    # Rounding up adds less than one pixel per edge, so (w*s + 1) * (h*s + 1) <= max_pixels
    # is sufficient; solve that quadratic in s for its positive root.
    a, b, c = width * height, width + height, 1 - max_pixels
    safe = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    if not math.isfinite(safe):
        safe = 0.0
    # 1 / longest side always yields a 1 x 1 image, which fits any budget >= 1.
    return max(safe, 1 / max(width, height))


def render_scale(
    width_pt: float,
    height_pt: float,
    longest_edge_px: int = DEFAULT_LONGEST_EDGE_PX,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> float:
    """Scale (pixels per point) that puts the longest side at `longest_edge_px`.

    The scale is reduced further when needed so that the rendered image, after MuPDF's
    rounding, has at most `max_pixels` pixels. Vector pages may be scaled up: a small
    receipt still gets the full 1960 px. Raises ValueError for zero, negative, NaN or
    infinite sizes, which only a broken document can produce.
    """
    _check_dimensions(width_pt, height_pt)
    _check_limits(longest_edge_px, max_pixels)
    edge_scale = longest_edge_px / max(width_pt, height_pt)
    return min(edge_scale, _pixel_budget_scale(width_pt, height_pt, max_pixels))


def image_scale(
    width_px: int,
    height_px: int,
    longest_edge_px: int = DEFAULT_LONGEST_EDGE_PX,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> float:
    """Like render_scale for a raster image, but never above 1: upscaling adds no detail."""
    return min(1.0, render_scale(width_px, height_px, longest_edge_px, max_pixels))


def fit_image(
    width_px: int,
    height_px: int,
    longest_edge_px: int = DEFAULT_LONGEST_EDGE_PX,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Target (width, height) of an image frame: within both limits, never upscaled."""
    scale = image_scale(width_px, height_px, longest_edge_px, max_pixels)
    if scale == 1.0:
        return int(width_px), int(height_px)
    return pixel_size(width_px, height_px, scale)
