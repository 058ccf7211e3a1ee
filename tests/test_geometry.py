"""pageray.pipeline.render.geometry: page and image sizes in, pixel sizes out, within both limits."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pageray.pipeline.render.geometry import fit_image, image_scale, pixel_size, render_scale

EDGE = 1960


def rendered(width_pt: float, height_pt: float, edge: int = EDGE, max_pixels: int = EDGE * EDGE):
    return pixel_size(width_pt, height_pt, render_scale(width_pt, height_pt, edge, max_pixels))


@pytest.mark.parametrize(
    ("name", "size_pt", "expected_px"),
    [
        ("letter", (612, 792), (1515, 1960)),
        ("A4", (595, 842), (1386, 1960)),
        ("letter landscape", (792, 612), (1960, 1515)),
        ("A4 landscape", (842, 595), (1960, 1386)),
        ("200in x 200in", (14400, 14400), (1960, 1960)),
        ("1pt x 5000pt strip", (1, 5000), (1, 1960)),
        ("5000pt x 1pt strip", (5000, 1), (1960, 1)),
        ("tiny receipt 58mm x 100mm", (164.4, 283.5), (1137, 1960)),
    ],
)
def test_pages_render_with_longest_side_1960(name, size_pt, expected_px):
    assert rendered(*size_pt) == expected_px, name


def test_small_pages_are_scaled_up_to_the_full_edge():
    assert render_scale(100, 30) == pytest.approx(19.6)


def test_pixel_budget_reduces_the_scale():
    width, height = rendered(612, 792, max_pixels=1_000_000)
    assert width * height <= 1_000_000
    assert width * height > 0.99 * 1_000_000  # reduced only as far as needed
    assert width / height == pytest.approx(612 / 792, rel=0.01)


def test_pixel_budget_of_one_pixel_gives_one_pixel():
    assert rendered(612, 792, max_pixels=1) == (1, 1)


@pytest.mark.parametrize("bad", [0, -1, -0.0, math.nan, math.inf, -math.inf, "612", None, True])
def test_degenerate_page_sizes_raise(bad):
    with pytest.raises(ValueError, match="width"):
        render_scale(bad, 792)
    with pytest.raises(ValueError, match="height"):
        render_scale(612, bad)
    with pytest.raises(ValueError):
        pixel_size(bad, 792, 1.0)


@pytest.mark.parametrize("bad_scale", [0, -1.0, math.nan, math.inf])
def test_bad_scales_raise(bad_scale):
    with pytest.raises(ValueError, match="scale"):
        pixel_size(612, 792, bad_scale)


@pytest.mark.parametrize(("edge", "max_pixels"), [(0, 100), (100, 0), (-5, 100)])
def test_bad_limits_raise(edge, max_pixels):
    with pytest.raises(ValueError, match="must be >= 1"):
        render_scale(612, 792, edge, max_pixels)


def test_absurd_page_sizes_still_give_a_positive_scale():
    scale = render_scale(1e300, 1e300)
    assert scale > 0
    assert pixel_size(1e300, 1e300, scale) == (EDGE, EDGE)


def test_images_are_downscaled_but_never_upscaled():
    assert fit_image(4000, 3000) == (1960, 1470)
    assert fit_image(3000, 4000) == (1470, 1960)
    assert fit_image(100, 50) == (100, 50)
    assert fit_image(1, 1) == (1, 1)
    assert image_scale(100, 50) == 1.0


def test_image_pixel_budget():
    width, height = fit_image(1960, 1960, max_pixels=1_000_000)
    assert width * height <= 1_000_000
    assert width == height


sizes = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(width=sizes, height=sizes, edge=st.integers(1, 8192), max_pixels=st.integers(1, 8192 * 8192))
def test_rendered_size_is_always_within_both_limits(width, height, edge, max_pixels):
    w_px, h_px = rendered(width, height, edge, max_pixels)
    assert 1 <= w_px <= edge and 1 <= h_px <= edge
    assert w_px * h_px <= max_pixels
    if max_pixels >= edge * edge:
        # the pixel budget cannot bind, so the longest side is exactly the edge
        assert max(w_px, h_px) == edge


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 50_000), height=st.integers(1, 50_000), edge=st.integers(1, 8192),
       max_pixels=st.integers(1, 8192 * 8192))
def test_fitted_images_are_within_limits_and_never_larger(width, height, edge, max_pixels):
    w_px, h_px = fit_image(width, height, edge, max_pixels)
    assert 1 <= w_px <= min(width, edge) and 1 <= h_px <= min(height, edge)
    assert w_px * h_px <= max(max_pixels, 1)
