"""The render step: planned documents in, page rows out (CPU tasks in the Ray pipeline).

Reads each document's bytes (never the driver), hashes them, rasterizes the pages and yields
them a few at a time so that a 2,000-page document never sits in memory whole. Every failure
that belongs to the document becomes a row; none escapes.

Rows leave as rendered (`image`), or, given `prepare` (the model side's per-document step,
extractors.inputs.ModelInputs, which the driver hands in), as whatever it makes of each
document's pages: the model's crops, a short document as one bundle row.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Iterable, Iterator, Mapping, Protocol

from pageray.pipeline.datamodel import (PAGE_COLUMNS, PIXEL_COLUMNS, Status, batch_to_rows, document_row, page_row,
                                        rows_to_columns)
from pageray.pipeline.errors import describe
from pageray.pipeline.render.limits import RenderLimits
from pageray.pipeline.storage import read_bytes

# A batch leaves the step once it holds `images_per_batch` page images (up to 4 x 11.5 MB: the
# memory a render actor holds), or this many rows: a file claiming 100,000 pages yields ~98,000
# image-less `page_skipped` rows, and flushed a few at a time they would make ~25,000 tiny
# blocks that take minutes to move. Ray Data merges what the step yields into blocks of up to ~128 MiB.
IMAGES_PER_OUTPUT_BATCH = 4
ROWS_PER_OUTPUT_BATCH = 8192


def _doc_error(status: Status, error: str, started: float) -> dict:
    return document_row(status, error, render_ms=(time.perf_counter() - started) * 1000.0)


class Prepare(Protocol):
    """What the render step asks of `prepare` (extractors.inputs.ModelInputs)."""
    columns: tuple[str, ...]  # the columns it adds to a page row

    def __call__(self, pages: Iterable[dict]) -> Iterator[dict]: ...  # one document's rows

    def images(self, row: dict) -> int: ...  # the page images a row holds


class RenderPages:
    """Callable step: a batch of plan rows (doc_id, source_uri, size) -> batches of page rows,
    each document's rows passed through `prepare` where one is given (see above)."""

    def __init__(self, run_id: str, limits: RenderLimits, renderer=None, images_per_batch: int = IMAGES_PER_OUTPUT_BATCH,
                 prepare: Prepare | None = None):
        self.run_id = run_id
        self.prepare = prepare
        # one set of columns for every batch of this step (Ray Data joins them into blocks)
        self.columns = PAGE_COLUMNS + (prepare.columns if prepare is not None else ())
        self.limits = limits
        self.images_per_batch = images_per_batch
        if renderer is None:
            from pageray.pipeline.render.isolation import IsolatedRenderer

            renderer = IsolatedRenderer(limits)
        self.renderer = renderer

    def __call__(self, batch: Mapping[str, Any]) -> Iterator[dict[str, list]]:
        # Image-less rows (skipped pages, error rows) are held apart and sent after the images: on
        # GPU, Ray Data cuts blocks into --batch-size rows, and rows mixed in would leave the
        # model's batches part empty.
        with_image: list[dict] = []
        without: list[dict] = []
        images = 0
        for doc in batch_to_rows(batch):
            for page in self._units(doc):
                if any(page.get(column) is not None for column in PIXEL_COLUMNS):
                    with_image.append(page)
                    images += self.prepare.images(page) if self.prepare is not None else 1
                    if images >= self.images_per_batch:
                        yield rows_to_columns(with_image, self.columns)
                        with_image, images = [], 0
                else:
                    without.append(page)
                    if len(without) >= ROWS_PER_OUTPUT_BATCH:
                        yield rows_to_columns(without, self.columns)
                        without = []
        for rows in (with_image, without):
            if rows:
                yield rows_to_columns(rows, self.columns)

    def _units(self, doc: Mapping[str, Any]) -> Iterator[dict]:
        """The document's page rows, through `prepare` where one is given."""
        return self.prepare(self.pages(doc)) if self.prepare is not None else self.pages(doc)

    def pages(self, doc: Mapping[str, Any]) -> Iterator[dict]:
        started = time.perf_counter()
        size = doc.get("doc_size")
        base = {"run_id": self.run_id, "doc_id": doc["doc_id"], "source_uri": doc["source_uri"], "doc_sha256": None,
                "doc_size": size, "doc_mtime_ns": doc.get("doc_mtime_ns")}

        def failed(status: Status, error: str) -> dict:
            return page_row(**base, **_doc_error(status, error, started))
        if size is not None and size > self.limits.max_file_bytes:
            yield failed(Status.FILE_TOO_LARGE, f"file is {size:,} bytes, over max_file_bytes="
                         f"{self.limits.max_file_bytes:,}")
            return
        try:
            data = read_bytes(doc["source_uri"], self.limits.max_file_bytes)
        except OverflowError as exc:
            yield failed(Status.FILE_TOO_LARGE, str(exc))
            return
        except OSError as exc:
            yield failed(Status.READ_ERROR, f"cannot read file: {describe(exc)}")
            return
        base["doc_sha256"] = hashlib.sha256(data).hexdigest()
        name = doc["source_uri"].rsplit("/", 1)[-1]
        committed = doc.get("done_pages")  # pages an earlier, interrupted run already committed
        done = {int(p) for p in committed} if committed is not None else set()
        # Matched on the whole URI ("2024/*.pdf"), so here and not in the child, which has only the name.
        # Renderers that take no passwords (tests' stand-ins) are called as before when there are none.
        passwords = self.limits.passwords.for_document(doc["source_uri"])
        pages = self.renderer(data, name, passwords=passwords) if passwords else self.renderer(data, name)
        for page in pages:
            if page["page_index"] not in done:
                yield page_row(**base, **page)
