"""Render one input document (PDF or image file) into page rows for the model.

Inputs are untrusted: corrupt, encrypted, huge or not documents at all. Nothing here
raises for a bad document; every outcome is a row whose `status` says what happened, so
a batch of a million files never dies on one of them. Rows carry the render columns of
pipeline.datamodel.PAGE_COLUMNS; the caller adds run and document identity.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pymupdf

from pageray.pipeline.render import images as render_images
from pageray.pipeline.datamodel import Status, page_row
from pageray.pipeline.render.geometry import render_scale
from pageray.pipeline.render.images import ImageUnreadable, PageTooLarge
from pageray.pipeline.render.limits import RenderLimits
from pageray.pipeline.render.passwords import Candidates, PasswordBook, unlock

ACCEPTED_FORMATS = "PDF, PNG, JPEG, TIFF"

_EXTENSIONS = {
    "pdf": "pdf", "png": "png", "jpg": "jpeg", "jpeg": "jpeg", "tif": "tiff", "tiff": "tiff",
}
# The PDF spec asks for %PDF- at offset 0 but readers accept junk before it, and so do
# real files (mail gateways, broken uploaders); MuPDF finds the header within this window.
_PDF_HEADER_WINDOW = 1024

Pixels = tuple[bytes, int, int]
PageRenderer = Callable[[int], tuple[Pixels, str]]


def _row(page_index: int, page_count: int | None, status: Status, error: str | None = None,
         pixels: Pixels | None = None, text: str | None = None, render_ms: float = 0.0) -> dict[str, Any]:
    """Every render column, set: the page's own rows, before run and document identity are added."""
    image, width, height = pixels if pixels is not None else (None, None, None)
    return page_row(page_index=page_index, page_count=page_count, status=status, error=error, image=image,
                    image_width=width, image_height=height, text_layer=text,
                    text_layer_chars=None if text is None else len(text), render_ms=render_ms)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _document_error(status: Status, error: str, started: float, page_count: int | None = None) -> dict[str, Any]:
    return _row(0, page_count, status, error, render_ms=_ms_since(started))


def _describe(exc: BaseException) -> str:
    # PyMuPDF wraps MuPDF's specific reason ("no objects found") in a generic message
    # ("Failed to open stream"); the reason is what a user needs to see.
    cause = exc.__cause__
    return f"{exc} ({cause})" if cause is not None and str(cause) != str(exc) else str(exc)


def skipped_row(index: int, count: int, limits: RenderLimits) -> dict[str, Any]:
    message = f"page {index + 1} of {count} skipped: max_pages_per_doc={limits.max_pages_per_doc}"
    return _row(index, count, Status.PAGE_SKIPPED, message)


def _render_pages(count: int, limits: RenderLimits, render_page: PageRenderer, start: int) -> Iterator[dict]:
    """One row per page from `start`: rendered up to max_pages_per_doc, recorded as skipped beyond it."""
    for index in range(start, min(count, limits.max_pages_per_doc)):
        started = time.perf_counter()
        try:
            pixels, text = render_page(index)
        except PageTooLarge as exc:
            yield _row(index, count, Status.PAGE_TOO_LARGE, str(exc), render_ms=_ms_since(started))
        # Broad on purpose: a hostile page may raise anything from the native libraries,
        # and one bad page must not cost the document its other pages.
        except Exception as exc:  # noqa: BLE001
            message = f"page {index + 1} of {count}: {type(exc).__name__}: {_describe(exc)}"
            yield _row(index, count, Status.RENDER_ERROR, message, render_ms=_ms_since(started))
        else:
            yield _row(index, count, Status.OK, None, pixels, text, _ms_since(started))
    # Built without touching the document, so an absurd page count stays cheap.
    for index in range(max(start, limits.max_pages_per_doc), count):
        yield skipped_row(index, count, limits)


def _render_pdf_page(page: pymupdf.Page, limits: RenderLimits) -> tuple[Pixels, str]:
    # page.rect is the page as a viewer shows it (/Rotate applied), and get_pixmap draws it
    # that way too, so quarter-turned pages come out in landscape without extra work.
    rect = page.rect
    scale = render_scale(rect.width, rect.height, limits.longest_edge_px, limits.max_page_pixels)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), colorspace=pymupdf.csRGB, alpha=False)
    if pix.width < 1 or pix.height < 1:
        raise ValueError(f"MuPDF drew an empty {pix.width} x {pix.height} px image for page box {rect}")
    if pix.width * pix.height > limits.max_page_pixels or max(pix.width, pix.height) > limits.longest_edge_px:
        raise PageTooLarge(
            f"page rendered at {pix.width} x {pix.height} px, over longest_edge_px="
            f"{limits.longest_edge_px} / max_page_pixels={limits.max_page_pixels}"
        )
    return (pix.samples, pix.width, pix.height), page.get_text()


def _render_pdf(data: bytes, name: str, limits: RenderLimits, started: float, start: int,
                passwords: Candidates) -> Iterator[dict]:
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - MuPDF reports corrupt input with assorted types
        yield _document_error(Status.RENDER_ERROR, f"cannot open {name!r} as PDF: {_describe(exc)}", started)
        return
    with doc:
        if not doc.is_pdf:
            # MuPDF sniffs content and will happily lay out HTML, XPS or plain text that
            # arrived under a .pdf name; we promise PDF and render nothing else.
            found = (doc.metadata or {}).get("format") or "an unknown format"
            message = f"{name!r} is not a PDF (MuPDF recognised {found}); accepted: {ACCEPTED_FORMATS}"
            yield _document_error(Status.RENDER_ERROR, message, started)
            return
        if not unlock(doc, passwords):  # before anything reads the page count: see unlock
            tried = f"none of {len(passwords)} tried opens it" if passwords else "none given: see --passwords"
            yield _document_error(Status.ENCRYPTED, f"{name!r} is encrypted and needs a password ({tried})", started)
            return
        try:
            count = doc.page_count
        except Exception as exc:  # noqa: BLE001 - a broken page tree fails here, not at open
            message = f"cannot count pages of {name!r}: {_describe(exc)}"
            yield _document_error(Status.RENDER_ERROR, message, started)
            return
        if count == 0 and doc.is_repaired:
            # MuPDF rebuilt a damaged file and found no page in it: that is corruption,
            # not a document that was written empty.
            message = f"{name!r} is damaged: MuPDF repaired it and found no pages"
            yield _document_error(Status.RENDER_ERROR, message, started)
            return
        if count == 0:
            yield _document_error(Status.EMPTY_DOCUMENT, f"{name!r} has no pages", started, 0)
            return
        yield from _render_pages(count, limits, lambda index: _render_pdf_page(doc[index], limits), start)


def _render_image(
    data: bytes, name: str, fmt: str, limits: RenderLimits, started: float, start: int
) -> Iterator[dict]:
    try:
        image = render_images.open_image(data)
    except PageTooLarge as exc:
        yield _document_error(Status.PAGE_TOO_LARGE, f"{name!r}: {exc}", started)
        return
    except ImageUnreadable as exc:
        yield _document_error(Status.RENDER_ERROR, f"cannot read {name!r} as {fmt}: {exc}", started)
        return
    with image:
        try:
            count = render_images.frame_count(image)
        except Exception as exc:  # noqa: BLE001 - a broken IFD chain fails while counting
            message = f"cannot count frames of {name!r}: {exc}"
            yield _document_error(Status.RENDER_ERROR, message, started)
            return

        def render_frame(index: int) -> tuple[Pixels, str]:
            edge, max_pixels = limits.longest_edge_px, limits.max_page_pixels
            return render_images.render_frame(image, index, edge, max_pixels), ""

        yield from _render_pages(count, limits, render_frame, start)


def detect_format(data: bytes, name: str) -> str | None:
    """'pdf', 'png', 'jpeg' or 'tiff' by magic bytes, then by file extension; else None."""
    # Image magic is anchored at offset 0 and so is checked first: "%PDF-" may legitimately
    # appear inside an image's first kilobyte (a text chunk, EXIF), never the other way round.
    sniffed = render_images.sniff_image_format(data)
    if sniffed is not None:
        return sniffed
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return "pdf"
    basename = name.replace("\\", "/").rsplit("/", 1)[-1]
    extension = basename.rsplit(".", 1)[-1].lower() if "." in basename else ""
    return _EXTENSIONS.get(extension)


def iter_render(data: bytes, name: str, limits: RenderLimits, start: int = 0,
                passwords: Candidates = Candidates()) -> Iterator[dict]:
    """Page rows one at a time, so a 2,000-page document is never held in memory whole.
    Pages before `start` are not rendered (a retry picks up where a crashed attempt stopped).
    An encrypted PDF is tried with the empty password, then `passwords` (pipeline.render.passwords).

    Never raises for bad input. `name` only picks the format (after the magic bytes)
    and labels messages; it is never opened. Document-level failures are one row with
    page_index 0; see pipeline.datamodel.Status for what each status means.
    """
    started = time.perf_counter()
    if len(data) > limits.max_file_bytes:
        message = f"{name!r} is {len(data):,} bytes, over max_file_bytes={limits.max_file_bytes:,}"
        yield _document_error(Status.FILE_TOO_LARGE, message, started)
        return
    if not data:
        yield _document_error(Status.RENDER_ERROR, f"{name!r} is empty (0 bytes)", started)
        return
    fmt = detect_format(data, name)
    if fmt == "pdf":
        yield from _render_pdf(data, name, limits, started, start, passwords)
    elif fmt is not None:
        yield from _render_image(data, name, fmt, limits, started, start)
    else:
        message = (f"{name!r} is not a supported format (accepted: {ACCEPTED_FORMATS}; "
                   "detected by magic bytes, then by file extension)")
        yield _document_error(Status.RENDER_ERROR, message, started)


def render_document(data: bytes, name: str, limits: RenderLimits) -> list[dict]:
    """All page rows of one document as a list (see iter_render, which streams them)."""
    return list(iter_render(data, name, limits))
