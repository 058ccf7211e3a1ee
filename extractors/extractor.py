"""The extraction step: a callable class a Ray actor holds, one model per actor.

`__init__` loads the model, processor, prompt and compiled grammar once; `__call__(batch)` turns
a batch of rendered pages into output rows. Works on a plain dict batch without Ray.

The actor does little more than the device work: pages arrive as uint8 crops made on the CPU
workers (`extractors.vision.pixels.PreparePixels`, in the render step), the vision tower runs once per
crop shape (`extractors.vision.encoder`), and decoding is a loop of our own that overlaps the
grammar's host work with the forward pass (`extractors.decoding`). A row that carries only its `image`
(a caller without the render step) has its crops made here.

In document scope each page's prompt says it is page k of n (`page_prompts`). A bundle row (a
short document's pages in one row, `extractors.bundle`) is read in one multi-image prompt
(`extractors.multi_image`) and leaves as its page rows. With the continuous engine (the default)
pages and bundles of any prompt lengths share its decode slots as `Job`s; with `engine="static"`
pages are batched by prompt length, since the static decode loop does not pad.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Mapping

import pyarrow as pa

from pageray.extractors.answer_fields import answer_fields
from pageray.extractors.batching import resolve_batch_size
from pageray.extractors.bundle import is_bundle, unbundle
from pageray.extractors.decoding.loop import DecodeLoop
from pageray.extractors.decoding.rows import JsonGrammar, RowResult
from pageray.extractors.decoding.engine import Engine, EngineItem, Job
from pageray.extractors.grounding import ground
from pageray.extractors.model.loading import ModelSpec, load_model
from pageray.extractors.multi_image import MultiImage
from pageray.extractors.vision.pixels import PreparePixels, unpack_crops
from pageray.extractors.prompts import PromptBook
from pageray.extractors.settings import ExtractSettings
from pageray.extractors.vision.encoder import PageEncoder
from pageray.pipeline.datamodel import (DECODE_COLUMNS, Status, batch_to_rows, output_schema, rows_to_table,
                                        with_decode_counts)
from pageray.pipeline.errors import describe
from pageray.schemas import ExtractionSchema, arrow_type, generation_schema
from pageray.schemas.answer import AnswerReader


def _worker_name() -> str:
    import os

    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    except ImportError:
        node = "local"
    return f"{node}:{os.getpid()}"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class ExtractFields:
    def __init__(self, spec: ModelSpec, schema: ExtractionSchema, settings: ExtractSettings = ExtractSettings(),
                 loaded: tuple | None = None):
        """`loaded`: (model, processor, device) already in memory, as the benchmark holds them;
        by default `spec` is loaded (once per actor)."""
        if settings.max_new_tokens is None:  # a run hands on its resolved budget; a caller may leave it to the schema
            settings, _ = settings.for_schema(schema)
        self.spec, self.schema, self.settings = spec, schema, settings
        self.model, self.processor, self.device = loaded if loaded is not None else load_model(spec)
        self.out_schema = output_schema(arrow_type(schema))
        self.answers = AnswerReader(schema)
        self.prompts = PromptBook(self.processor, schema)
        self.prompt = self.prompts.text()
        tok = self.processor.tokenizer
        stops = [tok.convert_tokens_to_ids("<end_of_utterance>"), tok.eos_token_id]
        self.stop_ids = [s for s in stops if s is not None and s >= 0]
        vocab = self.model.get_output_embeddings().weight.shape[0]
        self.grammar = JsonGrammar(tok, generation_schema(schema), vocab, self.stop_ids)
        self.pixels = PreparePixels(spec.split_images)
        self.encoder = PageEncoder(self.model, self.processor, self.device, spec.split_images)
        self.decoder = DecodeLoop(self.model, self.grammar, self.prompts.ids(), self.model.config.image_token_id,
                                  self.device)
        self.batch_size = resolve_batch_size(settings.batch_size, self.model, self.device,
                                             self.decoder.prompt_tokens(), settings.max_new_tokens)
        # the encoder looked up at each call: a caller (a test) may swap self.encoder
        self.engine = Engine(self.decoder, lambda crops: self.encoder(crops), self.batch_size) \
            if settings.engine == "continuous" else None
        self.multi_image = MultiImage(self)
        self.worker = _worker_name()

    def __call__(self, batch: Mapping[str, Any]) -> pa.Table:
        """One batch, on the caller's thread (`extractors.actor` takes several at once)."""
        if not self.engine:
            return self.static(batch)
        jobs, rows = self.jobs(batch)
        if jobs:  # pages and bundles in one engine call; a failure halves it as a batch
            self._run_with_backoff(jobs, self._run_jobs, self._fail_jobs)
        return self.table(rows)

    @staticmethod
    def _todo(pages: list[dict]) -> list[dict]:
        return [r for r in pages if r.get("status") == Status.OK.value
                and (r.get("pixels") is not None or r.get("image") is not None)]

    def jobs(self, batch: Mapping[str, Any]) -> tuple[list[Job], list[dict]]:
        """The batch's engine jobs (its pages to read, its bundles) and its output rows, which
        the jobs fill in."""
        rows = batch_to_rows(batch)
        pages = [r for r in rows if not is_bundle(r)]
        docs = [(b, unbundle(b)) for b in rows if is_bundle(b)]
        jobs = [self._page_job(r) for r in self._todo(pages)] + [self.multi_image.job(doc) for doc in docs]
        return jobs, pages + [page for _, doc_pages in docs for page in doc_pages]

    def static(self, batch: Mapping[str, Any]) -> pa.Table:
        """`engine="static"`: batches of one prompt length, each decoded to its longest answer."""
        rows = batch_to_rows(batch)
        pages = [r for r in rows if not is_bundle(r)]
        for chunk in self._chunks(self._todo(pages)):
            self._run_with_backoff(chunk, self._run, self._failed)
        return self.table(pages + self.multi_image([r for r in rows if is_bundle(r)]))

    def table(self, rows: list[dict]) -> pa.Table:
        now = datetime.now(timezone.utc)
        for r in rows:
            r.setdefault("created_at", now)
            r.update(schema_name=self.schema.name, schema_id=self.schema.id,
                     schema_version=self.schema.version, model_id=self.spec.model, worker=self.worker)
        return with_decode_counts(rows_to_table(rows, self.out_schema), rows)

    def _prompt_ids(self, row: dict | None = None) -> list[int]:
        """A page's prompt as the model sees it (`<image>` expanded into its crops' tokens)."""
        count = (row or {}).get("page_count")
        page = (int(row["page_index"]), int(count)) if self.settings.page_prompts and count else None
        return self.prompts.ids(page=page)

    def _chunks(self, todo: list[dict]) -> list[list[dict]]:
        """Model batches of at most batch_size pages, each of one prompt length ("page 9 of 12"
        and "page 10 of 12" differ by a token), in page order within a length."""
        by_length: dict[int, list[dict]] = {}
        for r in todo:
            by_length.setdefault(len(self._prompt_ids(r)), []).append(r)
        size = self.batch_size
        return [rows[i:i + size] for rows in by_length.values() for i in range(0, len(rows), size)]

    def _run_with_backoff(self, chunk: list, run, failed) -> None:
        """On any failure halve the batch: an out-of-memory then fits, and a page the model cannot
        take (e.g. 1 px high) is cornered in O(log n) calls. A single item that still fails is
        handed to `failed` (it becomes a model_error row)."""
        try:
            run(chunk)
        except Exception as exc:  # noqa: BLE001 - every failure of a page must become a row
            if _is_oom(exc):
                self._free_memory()
            if len(chunk) > 1:
                half = len(chunk) // 2
                self._run_with_backoff(chunk[:half], run, failed)
                self._run_with_backoff(chunk[half:], run, failed)
                return
            failed(chunk, exc)

    @staticmethod
    def _failed(chunk: list[dict], exc: BaseException) -> None:
        for r in chunk:
            r.update(status=Status.MODEL_ERROR.value, error=describe(exc), valid=False)

    def _free_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _crops(self, row: dict) -> list:
        if row.get("pixels") is None:
            row.update(self.pixels.page(row))
        return unpack_crops(row["pixels"], row["crop_shapes"])

    def _run(self, chunk: list[dict]) -> None:
        t0 = time.perf_counter()
        features = self.encoder([self._crops(r) for r in chunk])
        limit = self.settings.page_time_limit_s
        deadline = time.monotonic() + limit if limit else None
        prompts = [self._prompt_ids(r) for r in chunk]
        base = self.prompts.ids()  # page scope: every row's, already on the device in the loop
        results, stats = self.decoder(features, self.settings.max_new_tokens, deadline,
                                      prompt_ids=None if all(p is base for p in prompts) else prompts)
        # a row is live for as many steps as it chose tokens (its stop token included)
        self.count_decode(chunk[0], stats.steps, sum(r.output_tokens for r in results), stats.steps * len(chunk))
        self._record(chunk, results, prompts, (time.perf_counter() - t0) * 1000.0 / len(chunk))

    def engine_item(self, crops: list, prompt_ids: list[int]) -> EngineItem:
        """The page time limit counts from when the item takes its slot."""
        return EngineItem(crops, prompt_ids, self.settings.max_new_tokens, self.settings.page_time_limit_s)

    def _page_job(self, row: dict) -> Job:
        ids = self._prompt_ids(row)
        return Job(row, 1, lambda: self.engine_item(self._crops(row), ids),
                   lambda res, ms: self._record([row], [res], [ids], ms), lambda exc: self._failed([row], exc))

    def _run_jobs(self, jobs: list[Job]) -> None:
        t0 = time.perf_counter()
        results, stats = self.engine([job.item() for job in jobs])
        self.count_decode(jobs[0].lead, stats.steps, stats.row_steps, stats.slot_steps)
        per_page_ms = (time.perf_counter() - t0) * 1000.0 / sum(job.pages for job in jobs)
        for job, (res, _) in zip(jobs, results):
            job.record(res, per_page_ms)

    @staticmethod
    def _fail_jobs(jobs: list[Job], exc: BaseException) -> None:
        for job in jobs:
            job.fail(exc)

    @staticmethod
    def count_decode(row: dict, steps: int, row_steps: int, slot_steps: int) -> None:
        """A model batch's decode counters (pipeline.datamodel.DECODE_COLUMNS), added to `row`,
        its first: over its `steps`, `slot_steps` rows could have decoded (slots beyond the
        pages given could not have been filled: not counted as idle); `row_steps` did."""
        for name, value in zip(DECODE_COLUMNS, (steps, row_steps, slot_steps)):
            row[name] = (row.get(name) or 0) + value

    def _record(self, chunk: list[dict], results: list[RowResult], prompts: list[list[int]], per_page_ms: float):
        for r, res, ids in zip(chunk, results, prompts):
            r.update(answer_fields(res, self.answers, self.settings.page_time_limit_s), input_tokens=len(ids), output_tokens=res.output_tokens,
                     confidence=res.confidence, extract_ms=per_page_ms, method="page")
            r.update(ground(self.schema.json_schema, r.get("fields"), r.get("text_layer")))
