"""A short document's pages as one row, for the multi-image path (extractors.multi_image).

Why one row: Ray Data cuts and joins blocks by rows (on GPU into --batch-size rows), so the pages
of a document can reach the extractor in different batches. A row is never split: the render step
emits a document that is to be read in one prompt as one bundle row, holding all its pages' crops
(`pixels`, `crop_shapes`: page after page) and, in `doc_pages` (JSON text: one type whether or not
a batch holds bundles), what each page row needs (index, size, text layer, render time). The
extractor turns a bundle back into one page row per page, so pages stay the unit of the ledger.

A document is bundled only whole: every page rendered ok, none committed by an earlier run (a
resumed document is finished page by page), at most `max_pages` pages. Otherwise its page rows
go on as they are, and its document row is merged from them (pipeline.ledger.documents).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from pageray.pipeline.datamodel import Status, page_row

# a page row's `method` when the page was read in its document's multi-image prompt (here, not in
# extractors.multi_image, so the driver's ledger can name it without importing torch)
METHOD = "multi_image"

COLUMN = "doc_pages"
_DOC_KEYS = ("run_id", "doc_id", "source_uri", "doc_sha256", "doc_size", "doc_mtime_ns", "page_count")
_PAGE_KEYS = ("page_index", "image_width", "image_height", "text_layer", "text_layer_chars", "render_ms")


def bundleable(page: dict, max_pages: int) -> bool:
    count = page.get("page_count")
    return (page.get("status") == Status.OK.value and page.get("pixels") is not None
            and count is not None and 1 <= count <= max_pages)


def bundle_pages(pages: Iterable[dict], max_pages: int) -> Iterator[dict]:
    """One document's page rows (prepared: `pixels`) -> one bundle row, or the rows as they are.
    Holds at most `max_pages` pages: a longer document streams on as soon as that is known."""
    pages = iter(pages)
    held: list[dict] = []
    for page in pages:
        held.append(page)
        if not bundleable(page, max_pages) or len(held) > page["page_count"]:
            yield from held
            yield from pages
            return
    if held and len(held) == held[0]["page_count"] and len({p["page_index"] for p in held}) == len(held):
        yield bundle(held)
    else:  # pages an earlier run committed are missing: finish the rest page by page
        yield from held


def bundle(pages: list[dict]) -> dict:
    first = pages[0]
    meta = [{k: p.get(k) for k in _PAGE_KEYS} | {"crops": len(p["crop_shapes"])} for p in pages]
    return {**{k: first.get(k) for k in _DOC_KEYS}, "page_index": first["page_index"], "status": Status.OK.value,
            "pixels": b"".join(bytes(memoryview(p["pixels"]).cast("B")) for p in pages),
            "crop_shapes": [shape for p in pages for shape in p["crop_shapes"]],
            "image_width": first.get("image_width"), "image_height": first.get("image_height"),
            "render_ms": sum(p.get("render_ms") or 0.0 for p in pages), COLUMN: json.dumps(meta)}


def is_bundle(row: dict) -> bool:
    return row.get(COLUMN) is not None


def page_count(row: dict) -> int:
    return len(json.loads(row[COLUMN]))


def unbundle(row: dict) -> list[dict[str, Any]]:
    """The bundle's page rows (without pixels), in page order, each made by page_row."""
    doc = {k: row.get(k) for k in _DOC_KEYS}
    return [page_row(**doc, **{k: meta.get(k) for k in _PAGE_KEYS}, status=Status.OK)
            for meta in sorted(json.loads(row[COLUMN]), key=lambda m: m["page_index"])]
