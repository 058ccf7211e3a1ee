"""A document's pages made into the model's inputs, on the CPU worker that rendered them.

Each page's image becomes the model's uint8 crops (`vision.pixels.PreparePixels`: why there and
not on the GPU actor is told in that module), and with `multi_image_pages` (--document-mode
multi_image) a short document whose pages all rendered becomes one bundle row (`bundle`).

Why inside the render step (it is handed a `ModelInputs` and calls it per document) rather than
as a Ray Data stage of its own: a bundle needs all of a document's pages together, and only the
render step sees them so (Ray Data cuts blocks by rows, see `bundle`); a stage of its own would
also move every raw page image (up to 11.5 MB) through the object store once more.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from pageray.extractors import bundle
from pageray.extractors.vision.pixels import PreparePixels
from pageray.pipeline.datamodel import Status
from pageray.pipeline.errors import describe


class ModelInputs:
    """One document's page rows (`image`) -> the rows the extractor reads (`pixels`, `crop_shapes`),
    a short document perhaps as one bundle row. `columns`: the columns it adds to a page row."""

    def __init__(self, split: bool, multi_image_pages: int | None = None):
        self.pixels = PreparePixels(split)
        self.multi_image_pages = multi_image_pages
        # one set of columns for every batch of the render step (Ray Data joins them into blocks)
        self.columns: tuple[str, ...] = (bundle.COLUMN,) if multi_image_pages else ()

    def __call__(self, pages: Iterable[dict]) -> Iterator[dict]:
        prepared = (self._page(p) if p.get("image") is not None else p for p in pages)
        return bundle.bundle_pages(prepared, self.multi_image_pages) if self.multi_image_pages else prepared

    @staticmethod
    def images(row: dict) -> int:
        """The page images a row holds (what the render step's memory bound counts)."""
        if bundle.is_bundle(row):
            return bundle.page_count(row)
        return int(row.get("pixels") is not None or row.get("image") is not None)

    def _page(self, page: dict) -> dict:
        """The page as the model's crops; one that cannot be cut is a row, not a dead render task."""
        try:
            return self.pixels.page(page)
        except Exception as exc:  # noqa: BLE001 - whatever fails here belongs to this page
            return {**page, "image": None, "status": Status.RENDER_ERROR.value,
                    "error": f"page {page.get('page_index', 0) + 1}: preparing it for the model failed: {describe(exc)}"}
