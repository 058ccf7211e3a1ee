"""Raster images (PNG, JPEG, TIFF) as documents: sniffing, decoding and downscaling frames.

Scans often arrive as image files rather than PDFs. Each frame becomes one page: EXIF
orientation applied, flattened to 8-bit RGB, and shrunk (never enlarged) to the same
limits PDF pages are rendered to. Rows are built by pipeline.render.pages; this module only
turns bytes into pixels or raises.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from pageray.pipeline.render.geometry import fit_image

IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
# PIL's format names; anything else is refused even if PIL could decode it, because the
# accepted formats are a promise in the docs and the error message.
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class PageTooLarge(ValueError):
    """A page or frame that cannot be brought within the pixel limits safely."""


class ImageUnreadable(ValueError):
    """Bytes that do not decode as one of the accepted image formats."""


def sniff_image_format(data: bytes) -> str | None:
    """'png', 'jpeg' or 'tiff' from the leading magic bytes, else None."""
    for magic, fmt in IMAGE_MAGIC:
        if data.startswith(magic):
            return fmt
    return None


def _bomb_limit() -> int | None:
    # Read, never set: PIL's limit is process-wide and other code may rely on it.
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * limit


def open_image(data: bytes) -> Image.Image:
    """Open lazily (header only). Raises PageTooLarge for decompression bombs."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PageTooLarge(f"{exc} (limit: {_bomb_limit():,} pixels)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable(str(exc) or type(exc).__name__) from exc
    if image.format not in _PIL_FORMATS:
        image.close()
        raise ImageUnreadable(f"decoded as {image.format}, which is not PNG, JPEG or TIFF")
    return image


def frame_count(image: Image.Image) -> int:
    """Pages in the image: every TIFF frame counts, other formats give their first frame."""
    if image.format != "TIFF":
        return 1
    return int(getattr(image, "n_frames", 1))


def _check_bomb(width: int, height: int) -> None:
    # Image.open only checks the first frame; a later TIFF frame can be the bomb.
    limit = _bomb_limit()
    if limit is not None and width * height > limit:
        raise PageTooLarge(
            f"image frame is {width} x {height} = {width * height:,} pixels, over the "
            f"decompression-bomb limit of {limit:,} pixels"
        )


def _to_8bit_gray(frame: Image.Image) -> Image.Image:
    # PIL's convert() clips 16-bit samples to 255, which turns a 16-bit scan white.
    samples = np.asarray(frame)
    if samples.dtype.kind in "iu" and samples.size and samples.max() > 255:
        samples = samples >> 8
    return Image.fromarray(np.clip(samples, 0, 255).astype(np.uint8), "L")


def _to_rgb(frame: Image.Image) -> Image.Image:
    if frame.mode in _HIGH_BIT_DEPTH_MODES:
        frame = _to_8bit_gray(frame)
    has_alpha = frame.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        frame.mode == "P" and "transparency" in frame.info
    )
    if not has_alpha:
        return frame.convert("RGB")
    # Dropping alpha exposes whatever colour transparent pixels store (often black, which
    # makes black text vanish); a page is white underneath, so composite onto white.
    rgba = frame.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def render_frame(
    image: Image.Image, index: int, longest_edge_px: int, max_pixels: int
) -> tuple[bytes, int, int]:
    """Frame `index` as (RGB bytes, width, height) within the limits, upright per EXIF."""
    image.seek(index)
    _check_bomb(*image.size)
    # Orientation swaps width and height but not the longest edge or the pixel count, so
    # the target computed on the stored frame is right for the upright frame too.
    target = fit_image(image.size[0], image.size[1], longest_edge_px, max_pixels)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less memory and time for
    # big photos. draft() is a no-op for other formats.
    image.draft("RGB", target)
    frame = ImageOps.exif_transpose(image)
    frame = _to_rgb(frame)
    size = fit_image(frame.size[0], frame.size[1], longest_edge_px, max_pixels)
    if size != frame.size:
        frame = frame.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return frame.tobytes(), frame.size[0], frame.size[1]
