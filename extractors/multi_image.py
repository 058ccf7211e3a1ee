"""The multi-image path: a short document's pages in one prompt, one document-level answer.

Why: Idefics2 takes several images in one prompt, so a short document (up to
--multi-image-max-pages, extractors.prompts.multi_image_page_limit) can be read whole: one user
turn with its n page images and the schema's prompt for "these n pages", decoded with the same
grammar and loop as pages, so the answer is schema-valid by construction (truncated too).

What the page rows hold (they stay the ledger's unit: exactly once, resume, retry): every page
of the document gets its row (size, text layer, render time) with `method` = "multi_image" and
the status of the document's answer. The document's answer (`fields`, `raw_text`, `valid`,
`truncated`, `confidence`, tokens, and grounding against the text of all its pages) is on the row
of its first page; the other pages' `fields` are null. The document row is made from them like
any other (pipeline.ledger.documents), with method "multi_image", so it can always be made again.
A model error marks every page (all are redone by the next run, in one prompt again).

With the continuous engine (the default) a document is one `Job` beside single pages, in the
engine's slots (`job`). With the static engine, documents with the same page count share a model
batch (the same prompt: no padding), at most batch_size // n of them, since each holds n pages' tokens.
"""
from __future__ import annotations

import time

from pageray.extractors.answer_fields import answer_fields
from pageray.extractors.bundle import METHOD, page_count, unbundle
from pageray.extractors.decoding.engine import Job
from pageray.extractors.grounding import ground
from pageray.pipeline.datamodel import Status
from pageray.pipeline.errors import describe


class MultiImage:
    def __init__(self, extractor):
        # the ExtractFields that holds this (not imported: it imports this module); its model
        # parts, settings and batching are used as they are
        self.ex = extractor

    def __call__(self, bundles: list[dict]) -> list[dict]:
        """Bundle rows -> their documents' page rows, extracted."""
        docs = [(b, unbundle(b)) for b in bundles]
        groups: dict[tuple[int, int], list[tuple[dict, list[dict]]]] = {}
        for doc in docs:
            groups.setdefault((page_count(doc[0]), len(doc[0]["crop_shapes"])), []).append(doc)
        for (n, _), group in groups.items():
            size = max(1, self.ex.batch_size // n)
            for start in range(0, len(group), size):
                self.ex._run_with_backoff(group[start:start + size], self._run, self._failed)
        return [page for _, pages in docs for page in pages]

    def job(self, doc: tuple[dict, list[dict]]):
        """A document as one item of the extractor's engine: its pages' crops, the n-image prompt."""
        bundle, pages = doc
        ids = self.ex.prompts.ids(pages=len(pages))
        return Job(pages[0], len(pages), lambda: self.ex.engine_item(self.ex._crops(bundle), ids),
                   lambda res, ms: self._record(pages, res, len(ids), ms), lambda exc: self._failed([doc], exc))

    def _run(self, chunk: list[tuple[dict, list[dict]]]) -> None:
        ex = self.ex
        t0 = time.perf_counter()
        features = ex.encoder([ex._crops(b) for b, _ in chunk])  # (docs, n pages x crops x latents, hidden)
        ids = ex.prompts.ids(pages=len(chunk[0][1]))
        limit = ex.settings.page_time_limit_s
        deadline = time.monotonic() + limit if limit else None
        results, stats = ex.decoder(features, ex.settings.max_new_tokens, deadline, prompt_ids=[ids] * len(chunk))
        ex.count_decode(chunk[0][1][0], stats.steps, sum(r.output_tokens for r in results),
                        stats.steps * len(chunk))
        per_page_ms = (time.perf_counter() - t0) * 1000.0 / sum(len(pages) for _, pages in chunk)
        for (_, pages), res in zip(chunk, results):
            self._record(pages, res, len(ids), per_page_ms)

    def _record(self, pages: list[dict], res, input_tokens: int, per_page_ms: float) -> None:
        ex = self.ex
        answer = answer_fields(res, ex.answers, ex.settings.page_time_limit_s)
        lead = pages[0]
        text = "\n".join(p["text_layer"] for p in pages if p.get("text_layer") and p["text_layer"].strip())
        lead.update(answer, method=METHOD, input_tokens=input_tokens, output_tokens=res.output_tokens,
                    confidence=res.confidence, extract_ms=per_page_ms)
        lead.update(ground(ex.schema.json_schema, lead.get("fields"), text or None))
        for page in pages[1:]:
            page.update(status=answer["status"], error=answer.get("error"), valid=answer["valid"],
                        method=METHOD, extract_ms=per_page_ms)

    @staticmethod
    def _failed(chunk: list[tuple[dict, list[dict]]], exc: BaseException) -> None:
        for _, pages in chunk:
            for page in pages:
                page.update(status=Status.MODEL_ERROR.value, error=describe(exc), valid=False, method=METHOD)
