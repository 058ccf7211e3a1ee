"""Continuous batching (extractors.engine) gives each page exactly the tokens it gets alone.

More pages than slots, so slots are refilled mid-run; pages of three shapes (letter, landscape,
receipt) and prompts of three lengths (a page alone, "page 1 of 2", "page 10 of 12"), so rows
join a batch whose cache is wider or narrower than their prompt; budgets differ, so rows finish
at different steps. The references are one page at a time: DecodeLoop with the grammar (itself
checked against `generate` with the logits processor in test_decode_loop) and `generate` itself
without it, fed the same image features.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pageray.extractors.decoding.engine import Engine, EngineItem
from pageray.extractors.extractor import ExtractFields, ExtractSettings
from pageray.extractors.model.loading import ModelSpec
from pageray.extractors.vision.pixels import model_crops
from pageray.pipeline.render.pages import RenderLimits, render_document
from pageray.schemas import load_schema


@pytest.fixture(scope="module")
def extractor(tiny_model):
    # the table schema's reserve is 39 tokens: budgets above it let rows choose, then close them
    return ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("table"),
                         ExtractSettings(batch_size=2, max_new_tokens=70))


@pytest.fixture(scope="module")
def pages(samples):
    out = []
    for name in ["invoice.pdf", "rotated_table.pdf", "receipt.pdf"]:
        [page] = render_document((samples / name).read_bytes(), name, RenderLimits())
        image = np.frombuffer(page["image"], np.uint8).reshape(page["image_height"], page["image_width"], 3)
        out.append(model_crops(image, split=True))
    assert len({c[0].shape for c in out}) == 3
    return out


def _items(extractor, pages, budgets):
    variants = [None, (0, 2), (9, 12)]
    items = [EngineItem(pages[i % 3], extractor.prompts.ids(page=variants[(i // 3 + i) % 3]), b)
             for i, b in enumerate(budgets)]
    assert len({len(it.prompt_ids) for it in items}) == 3
    return items


def test_engine_with_the_grammar_equals_decoding_each_page_alone(extractor, pages):
    items = _items(extractor, pages, [45, 75, 41, 60, 52, 40, 66])
    results, stats = Engine(extractor.decoder, extractor.encoder, slots=3)(items)
    for item, (ours, tokens) in zip(items, results):
        [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, prompt_ids=[item.prompt_ids])
        assert (ours.text, ours.truncated, ours.timed_out, ours.output_tokens) == \
            (alone.text, alone.truncated, alone.timed_out, alone.output_tokens)
        assert ours.confidence == pytest.approx(alone.confidence, rel=1e-4)
        assert len(tokens) == ours.output_tokens
    assert len({r.output_tokens for r, _ in results}) >= 4  # rows end at different steps
    # refilled: fewer steps than one static batch after another
    lengths = [r.output_tokens for r, _ in results]
    assert stats.steps < sum(max(lengths[i:i + 3]) for i in range(0, len(lengths), 3))
    assert stats.prefills >= 4 and stats.row_steps == sum(lengths)


def _generate_alone(extractor, item) -> list[int]:
    """The model card's `generate`, greedy, on this page alone, with the engine's image features."""
    loop = extractor.decoder
    prompt = torch.tensor([item.prompt_ids])
    with torch.inference_mode():
        embeds = loop.embed(prompt)
        embeds[0, prompt[0] == loop.image_token_id] = extractor.encoder([item.crops])[0]
        out = extractor.model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(prompt),
                                       max_new_tokens=item.budget, do_sample=False,
                                       eos_token_id=extractor.stop_ids, pad_token_id=extractor.stop_ids[0])
    tokens = out[0].tolist()
    return tokens[:tokens.index(extractor.stop_ids[0]) + 1] if extractor.stop_ids[0] in tokens else tokens


@pytest.mark.parametrize("window", [None, 160])
def test_engine_without_the_grammar_equals_generate_and_static(extractor, pages, window):
    """`window`: a sliding window shorter than every prompt (Mistral's is 4,096), so that padded
    rows must see exactly the window they would alone."""
    config = extractor.decoder.text.config
    before = config.sliding_window
    config.sliding_window = window or before
    try:
        items = _items(extractor, pages, [6, 14, 3, 9, 12, 4, 8])
        engines = {refill: Engine(extractor.decoder, extractor.encoder, slots=3, refill=refill)
                   for refill in ("continuous", "static")}
        runs = {}
        for refill, engine in engines.items():
            engine.constrained = False
            runs[refill] = engine(items)
        for item, (ours, tokens) in zip(items, runs["continuous"][0]):
            assert tokens == _generate_alone(extractor, item)
        assert [t for _, t in runs["static"][0]] == [t for _, t in runs["continuous"][0]]
        continuous, static = runs["continuous"][1], runs["static"][1]
        assert continuous.steps < static.steps and continuous.occupancy > static.occupancy
    finally:
        config.sliding_window = before


def test_bench_budgets_have_the_stated_median_and_p95():
    from pageray.pipeline.bench.continuous import lognormal_budgets

    budgets = lognormal_budgets(20000, median=24, p95=120, seed=1)
    assert np.percentile(budgets, 50) == pytest.approx(24, rel=0.05)
    assert np.percentile(budgets, 95) == pytest.approx(120, rel=0.05)
    assert budgets == lognormal_budgets(20000, median=24, p95=120, seed=1) and min(budgets) >= 1


def test_extractor_with_the_continuous_engine_writes_the_static_rows(extractor, samples, tmp_path):
    """`ExtractSettings(engine="continuous")`: the same output rows as today's batches, in document
    scope (prompts of different lengths in one engine) with more pages than slots; both count
    their decode steps and live rows for the run record."""
    import pyarrow.parquet as pq

    from pageray.pipeline.datamodel import DECODE_COLUMNS, output_schema, rows_to_columns
    from pageray.pipeline.driver.decode_counts import DecodeCounts
    from pageray.pipeline.ledger.commit import CommitPages
    from pageray.schemas import arrow_type

    rows = []
    for name in ["invoice.pdf", "rotated_table.pdf", "form_two_pages.pdf", "receipt.pdf"]:
        for page in render_document((samples / name).read_bytes(), name, RenderLimits()):
            rows.append({**page, "run_id": "r", "doc_id": name, "source_uri": name, "doc_sha256": "x",
                         "doc_size": 1, "doc_mtime_ns": 1})
    assert len(rows) == 5 and {r["page_count"] for r in rows} == {1, 2}
    rows[0].update(page_index=9, page_count=12)  # as if the 10th page of 12: a longer prompt
    tables, figures = {}, {}
    for engine in ("static", "continuous"):
        settings = ExtractSettings(batch_size=2, max_new_tokens=48, page_prompts=True, engine=engine)
        step = ExtractFields(extractor.spec, extractor.schema, settings,
                             loaded=(extractor.model, extractor.processor, extractor.device))
        table = step(rows_to_columns([dict(r) for r in rows]))
        # as the driver counts them: from CommitPages' summary, which leaves them out of the file
        summary = CommitPages(str(tmp_path / engine), "r", output_schema(arrow_type(extractor.schema)))(table)
        counted = DecodeCounts(engine)
        counted.add(summary.to_pydict())
        figures[engine] = counted.summary()
        assert not set(DECODE_COLUMNS) & set(pq.read_table(tmp_path / engine / "data").column_names)
        tables[engine] = table.to_pylist()
    assert len({r["input_tokens"] for r in tables["static"]}) == 2
    decode = {engine: {c: sum(r.pop(c) for r in rows) for c in DECODE_COLUMNS} for engine, rows in tables.items()}
    for engine, counts in decode.items():
        assert figures[engine] == {"engine": engine, "steps": counts["decode_steps"],
                                   "occupancy": round(counts["decode_row_steps"] / counts["decode_slot_steps"], 4),
                                   "steps_per_page": round(counts["decode_steps"] / 5, 2)}
        steps, live, slots = (counts[c] for c in DECODE_COLUMNS)
        # each row is live for the steps it chose a token in, with either engine
        assert live == sum(r["output_tokens"] for r in tables[engine]) and 0 < live <= slots <= 2 * steps
        assert steps >= max(r["output_tokens"] for r in tables[engine])
    assert decode["continuous"]["decode_slot_steps"] == 2 * decode["continuous"]["decode_steps"]  # 2 slots
    for ours, theirs in zip(tables["continuous"], tables["static"]):
        assert ours.pop("confidence") == pytest.approx(theirs.pop("confidence"), rel=1e-4)
        for key in ("extract_ms", "created_at"):
            ours.pop(key), theirs.pop(key)
        assert ours == theirs
    with pytest.raises(ValueError, match="engine must be"):
        ExtractSettings(engine="dynamic")


def test_engine_time_limit_closes_rows_as_decode_loop_does(extractor, pages):
    import time

    items = _items(extractor, pages, [60, 66, 70, 64])
    for item in items:
        item.time_limit_s = 1e-9  # past before the first step: every row is closed at once
    results, _ = Engine(extractor.decoder, extractor.encoder, slots=2)(items)
    for item, (ours, _) in zip(items, results):
        [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, time.monotonic() - 1,
                                       prompt_ids=[item.prompt_ids])
        assert ours.timed_out and (ours.text, ours.output_tokens) == (alone.text, alone.output_tokens)
        assert ours.output_tokens < item.budget


@pytest.mark.parametrize("as_actor", [False, True], ids=["sync", "ray-actor"])
def test_continuous_extractor_halves_on_out_of_memory_then_records_the_page(extractor, samples, as_actor):
    """`as_actor`: the async step Ray runs (extractors.actor), whose engine run halves the same way."""
    import asyncio

    from pageray.extractors import actor as ray_actor
    from pageray.pipeline.datamodel import Status, rows_to_columns

    step = (ray_actor.ExtractFields if as_actor else ExtractFields)(
        extractor.spec, extractor.schema, ExtractSettings(batch_size=2, max_new_tokens=45, engine="continuous"),
        loaded=(extractor.model, extractor.processor, extractor.device))
    call = (lambda batch: asyncio.run(step(batch))) if as_actor else step
    rows = []
    for name in ["invoice.pdf", "receipt.pdf", "rotated_table.pdf"]:
        for page in render_document((samples / name).read_bytes(), name, RenderLimits()):
            rows.append({**page, "run_id": "r", "doc_id": name, "source_uri": name, "doc_sha256": "x",
                         "doc_size": 1, "doc_mtime_ns": 1})
    real, calls = step.engine.encoder, []

    def encoder_that_fits_one(crops):  # stands in for a GPU that fits one page at a time
        calls.append(len(crops))
        if len(crops) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(crops)

    step.engine.encoder = encoder_that_fits_one
    out = call(rows_to_columns([dict(r) for r in rows])).to_pylist()
    assert calls[0] == 2 and [r["status"] for r in out] == [Status.OK.value] * 3

    def never_fits(crops):
        raise torch.OutOfMemoryError("CUDA out of memory")

    step.engine.encoder = never_fits
    out = call(rows_to_columns([dict(r) for r in rows])).to_pylist()
    assert [r["status"] for r in out] == [Status.MODEL_ERROR.value] * 3
    assert all("out of memory" in r["error"] for r in out)


def test_multi_image_bundles_share_the_engine_with_single_pages(extractor, pages):
    """A bundle (a short document's pages in one prompt) is one item: its pages' crops and the
    n-image prompt; it decodes next to single pages exactly as it does alone."""
    two = extractor.prompts.ids(pages=2)
    items = [EngineItem(pages[0] + pages[1], two, 50), EngineItem(pages[2], extractor.prompts.ids(), 42),
             EngineItem(pages[2] + pages[0], two, 44), EngineItem(pages[1], extractor.prompts.ids(page=(0, 2)), 47)]
    results, stats = Engine(extractor.decoder, extractor.encoder, slots=2)(items)
    for item, (ours, _) in zip(items, results):
        [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, prompt_ids=[item.prompt_ids])
        assert (ours.text, ours.truncated, ours.output_tokens) == (alone.text, alone.truncated, alone.output_tokens)
    assert results[0][0].text != results[2][0].text  # the bundles' pages are read


def test_pages_that_arrive_mid_run_join_the_slots_and_get_their_own_tokens(extractor, pages):
    """`arrivals`: pages handed in while the engine runs (another caller's batch) take slots as
    they free up; each page's answer is handed on (`on_done`) as it ends, exactly as alone."""
    items = _items(extractor, pages, [45, 70, 41, 60, 52])
    later, polls, done = items[2:], [], []

    def arrivals():  # the other batch arrives after the first batch's third step
        polls.append(1)
        return later if len(polls) == 4 else []

    results, stats = Engine(extractor.decoder, extractor.encoder, slots=3)(items[:2], arrivals=arrivals,
                                                                           on_done=lambda i, r: done.append(i))
    assert sorted(done) == list(range(5)) and len(results) == 5
    assert done.index(0) < done.index(4) or done.index(1) < done.index(4)  # handed on before the run ends
    for item, (ours, _) in zip(items, results):
        [alone], _ = extractor.decoder(extractor.encoder([item.crops]), item.budget, prompt_ids=[item.prompt_ids])
        assert (ours.text, ours.truncated, ours.output_tokens) == (alone.text, alone.truncated, alone.output_tokens)
    assert stats.row_steps == sum(r.output_tokens for r, _ in results)
    assert stats.slot_steps == 3 * (stats.steps - 3) + 2 * 3  # two slots' worth until the others came


def test_two_batches_at_once_share_one_actors_engine(extractor, samples):
    """Ray Data hands the actor a second batch while the first decodes (`max_concurrency`): the
    two share the engine's slots (fewer decode steps than one after the other) and each call
    returns its own rows, the same as each batch run alone."""
    import asyncio
    import threading

    from pageray.extractors import actor as ray_actor
    from pageray.pipeline.datamodel import DECODE_COLUMNS, rows_to_columns

    def batch(names):
        rows = []
        for name in names:
            for page in render_document((samples / name).read_bytes(), name, RenderLimits()):
                rows.append({**page, "run_id": "r", "doc_id": name, "source_uri": name, "doc_sha256": "x",
                             "doc_size": 1, "doc_mtime_ns": 1})
        return rows_to_columns(rows)

    batches = [batch(["invoice.pdf", "receipt.pdf"]), batch(["rotated_table.pdf", "invoice.pdf"])]
    settings = ExtractSettings(batch_size=4, max_new_tokens=70, engine="continuous")
    loaded = (extractor.model, extractor.processor, extractor.device)
    alone = [ExtractFields(extractor.spec, extractor.schema, settings, loaded=loaded)(b).to_pylist() for b in batches]
    actor = ray_actor.ExtractFields(extractor.spec, extractor.schema, settings, loaded=loaded)
    gate = threading.Event()
    actor.feeder.thread.submit(gate.wait)  # the model thread busy until both batches are handed in

    async def both():
        calls = [asyncio.ensure_future(actor(b)) for b in batches]
        while len(actor.feeder.pending) < 2:
            await asyncio.sleep(0)
        gate.set()
        return [t.to_pylist() for t in await asyncio.gather(*calls)]

    together = asyncio.run(both())
    steps = {name: sum(r["decode_steps"] or 0 for table in tables for r in table)
             for name, tables in (("alone", alone), ("together", together))}
    assert 0 < steps["together"] < steps["alone"]
    for ours_table, theirs_table in zip(together, alone):
        assert len(ours_table) == len(theirs_table) == 2
        for ours, theirs in zip(ours_table, theirs_table):
            for key in ("extract_ms", "created_at", *DECODE_COLUMNS):
                ours.pop(key), theirs.pop(key)
            assert ours.pop("confidence") == pytest.approx(theirs.pop("confidence"), rel=1e-4)
            assert ours == theirs


def test_the_actor_with_the_static_engine_writes_the_sync_rows(extractor, samples):
    """`--engine static` through Ray's async actor: its batches handed whole to the model thread."""
    import asyncio

    from pageray.extractors import actor as ray_actor
    from pageray.pipeline.datamodel import rows_to_columns

    [page] = render_document((samples / "receipt.pdf").read_bytes(), "receipt.pdf", RenderLimits())
    batch = rows_to_columns([{**page, "run_id": "r", "doc_id": "d", "source_uri": "d", "doc_sha256": "x",
                              "doc_size": 1, "doc_mtime_ns": 1}])
    settings = ExtractSettings(batch_size=2, max_new_tokens=45, engine="static")
    loaded = (extractor.model, extractor.processor, extractor.device)
    step = ray_actor.ExtractFields(extractor.spec, extractor.schema, settings, loaded=loaded)
    assert step.engine is None
    [ours] = asyncio.run(step(batch)).to_pylist()
    [theirs] = ExtractFields(extractor.spec, extractor.schema, settings, loaded=loaded)(batch).to_pylist()
    for key in ("extract_ms", "created_at"):
        ours.pop(key), theirs.pop(key)
    assert ours == theirs and ours["output_tokens"] > 0


@pytest.mark.slow
def test_ray_hands_one_actor_two_blocks_at_once_into_one_engine(ray_local, extractor, samples):
    """Through Ray Data as the run's stage declares it (pipeline.driver.stages): one actor, two
    blocks, each returned whole; the second's pages decode in the first's engine run."""
    import pyarrow as pa

    from pageray.extractors import actor as ray_actor
    from pageray.extractors.settings import CONCURRENT_BATCHES
    from pageray.pipeline.datamodel import rows_to_columns

    def block(names):
        rows = [{**page, "run_id": "r", "doc_id": name, "source_uri": name, "doc_sha256": "x", "doc_size": 1,
                 "doc_mtime_ns": 1}
                for name in names for page in render_document((samples / name).read_bytes(), name, RenderLimits())]
        return pa.table(rows_to_columns(rows))

    blocks = [block(["invoice.pdf", "receipt.pdf"]), block(["rotated_table.pdf", "invoice.pdf"])]
    settings = ExtractSettings(batch_size=4, max_new_tokens=70)
    kwargs = {"spec": extractor.spec, "schema": extractor.schema, "settings": settings}
    loaded = (extractor.model, extractor.processor, extractor.device)
    alone = [ExtractFields(**kwargs, loaded=loaded)(b.to_pydict()) for b in blocks]
    pool = ray_local.data.ActorPoolStrategy(size=1, max_concurrent_calls_per_actor=CONCURRENT_BATCHES)
    refs = ray_local.data.from_arrow(blocks).map_batches(
        ray_actor.ExtractFields, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=None,
        compute=pool, num_cpus=0.5).to_arrow_refs()
    together = [ray_local.get(r) for r in refs]

    def steps(tables):
        return sum(s or 0 for t in tables for s in t["decode_steps"].to_pylist())

    assert sorted(len(t) for t in together) == [2, 2]
    assert 0 < steps(together) < steps(alone)
    ours = {(r["doc_id"], r["page_index"]): r["raw_text"] for t in together for r in t.to_pylist()}
    assert ours == {(r["doc_id"], r["page_index"]): r["raw_text"] for t in alone for r in t.to_pylist()}
