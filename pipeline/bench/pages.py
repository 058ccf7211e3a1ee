"""Benchmark pages and the CPU stage: PyMuPDF rendering, and the preprocessing before the model,
today's (the Idefics2 processor, in the extractor's batches) against the new one (`PreparePixels`:
uint8 crops, on the render workers).

The pages are the letter and A4 documents of `pipeline.samples` (an invoice with a table, a
paper's first page, a rotated landscape table, a scanned invoice, a two-page form), cycled to
the requested count and rendered exactly as the pipeline renders them (1960 px longest side).
They can also be read back from PNG files written by `save_pages` (lossless: the same bytes),
which is how a machine without PyMuPDF gets them (benchmarks/pages/, benchmarks/device_bench.py).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from pageray.pipeline.datamodel import Status, rows_to_columns

# Letter and A4 only: the receipt is neither, and the corrupt / encrypted samples give no page.
BENCH_DOCUMENTS = ("invoice.pdf", "paper_first_page.pdf", "rotated_table.pdf",
                   "scanned_invoice.pdf", "form_two_pages.pdf")
INDEX = "pages.json"


def load_documents() -> list[tuple[str, bytes]]:
    from pageray.pipeline.samples import write_samples

    with tempfile.TemporaryDirectory(prefix="pageray-bench-") as tmp:
        paths = {p.name: p for p in write_samples(Path(tmp))}
        return [(name, paths[name].read_bytes()) for name in BENCH_DOCUMENTS]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict:
    wall, cpu = _clock()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def render_pages(n: int, documents: list[tuple[str, bytes]] | None = None) -> tuple[list[dict], dict]:
    """Render whole documents, cycling through them, until `n` pages are ok. Only the first
    page of each distinct (document, page) is kept; the rest are the same pixels and are
    referenced again, so 64 pages cost 6 page images of memory. Returns (pages, timing)."""
    from pageray.pipeline.render.pages import RenderLimits, iter_render

    documents = documents or load_documents()
    limits, kept, pages = RenderLimits(), {}, []
    next(iter_render(documents[0][1], documents[0][0], limits))  # warm-up: fonts, MuPDF's caches
    start, i = _clock(), 0
    while len(pages) < n:
        name, data = documents[i % len(documents)]
        i += 1
        for row in iter_render(data, name, limits):
            if len(pages) >= n:
                break  # rendering is lazy: stop before the next page is drawn
            if row["status"] != Status.OK.value:
                continue
            key = (name, row["page_index"])
            kept.setdefault(key, {**row, "run_id": "bench", "doc_id": Path(name).stem, "source_uri": name,
                                  "doc_sha256": None, "doc_size": len(data), "doc_mtime_ns": 0})
            pages.append(kept[key])
        if i > 10 * max(n, 1) + len(documents):
            raise RuntimeError("the sample documents rendered no ok page")
    return pages, _since(start)


def distinct(pages: list[dict]) -> list[dict]:
    """The distinct page objects of a cycled list, in first-seen order."""
    return list({id(p): p for p in pages}.values())


def save_pages(pages: list[dict], folder: Path) -> list[Path]:
    """Each distinct page as a PNG, with its row's other columns in pages.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index, written = [], []
    for k, page in enumerate(distinct(pages)):
        name = f"{k:02d}-{page['doc_id']}-p{page['page_index']}.png"
        pil_image(page).save(folder / name, compress_level=9)
        index.append({"file": name, **{c: v for c, v in page.items() if c != "image"}})
        written.append(folder / name)
    (folder / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return written


def load_pages(n: int, folder: Path) -> list[dict]:
    """`n` pages cycled from a folder written by `save_pages` (no PyMuPDF needed)."""
    from PIL import Image

    folder = Path(folder)
    kept = []
    for entry in json.loads((folder / INDEX).read_text()):
        meta = {k: v for k, v in entry.items() if k != "file"}
        with Image.open(folder / entry["file"]) as im:
            image = im.convert("RGB").tobytes()
        if (meta["image_width"], meta["image_height"]) != im.size:
            raise ValueError(f"{entry['file']} is {im.size}, its index says "
                             f"{(meta['image_width'], meta['image_height'])}")
        kept.append({**meta, "image": image})
    if not kept:
        raise ValueError(f"{folder / INDEX} lists no page")
    return [kept[i % len(kept)] for i in range(n)]


def page_batch(pages: list[dict]) -> dict:
    """The column batch the Ray pipeline hands the extractor (see tests/test_extractor.py)."""
    return rows_to_columns(pages)


def pil_image(page: dict):
    from PIL import Image

    return Image.frombuffer("RGB", (page["image_width"], page["image_height"]), page["image"], "raw", "RGB", 0, 1)


def processor_inputs(processor, prompt: str, chunk: list[dict]):
    """Today's preprocessing of one model batch: PIL from raw bytes, then the processor on a padded batch."""
    return processor(text=[prompt] * len(chunk), images=[[pil_image(p)] for p in chunk],
                     padding=True, return_tensors="pt")


def time_processor(processor, prompt: str, pages: list[dict], batch_size: int) -> dict:
    """Today's CPU preprocessing (the processor, in the extractor's batches), timed."""
    processor_inputs(processor, prompt, pages[:1])  # warm-up
    start = _clock()
    for i in range(0, len(pages), batch_size):
        inputs = processor_inputs(processor, prompt, pages[i:i + batch_size])
    return {**_since(start), "padded_shape": tuple(inputs["pixel_values"].shape[-2:])}


def prepare_pages(pages: list[dict], split: bool) -> tuple[list[dict], dict]:
    """The new CPU preprocessing (`PreparePixels.page`, as the render step runs it), over every
    page, timed. Returns the prepared rows (a repeated page object gives the same prepared row)."""
    from pageray.extractors.vision.pixels import PreparePixels

    prepare = PreparePixels(split)
    prepare.page(pages[0])  # warm-up
    start, done = _clock(), {}
    for page in pages:
        done[id(page)] = prepare.page(page)
    return [done[id(p)] for p in pages], _since(start)


def cpu_stage_rows(n_pages: int, render: dict | None, old: dict | None, new: dict, processor_name: str) -> list[dict]:
    """Render, each preprocessing, and render + each, per core (process CPU time) and per
    process (wall time). `render` is None when the pages were read from PNG files."""
    def row(name: str, parts: list[dict], note: str) -> dict:
        wall, cpu = sum(p["wall_s"] for p in parts), sum(p["cpu_s"] for p in parts)
        return {"name": name, "device": "cpu (1 process)", "pages": n_pages,
                "pages_per_s": n_pages / wall if wall else None,
                "pages_per_cpu_s": n_pages / cpu if cpu else None, "wall_s": wall, "note": note}

    rows = []
    if render is not None:
        rows.append(row("cpu-render", [render], "PyMuPDF, 1960 px longest side, RGB"))
    if old is not None:
        rows.append(row("cpu-preprocess-today", [old], f"{processor_name} in the extractor's batches: split, "
                        f"resize, rescale, normalise, pad to {old['padded_shape']}, fp32"))
    rows.append(row("cpu-preprocess-new", [new], "PreparePixels: split + resize, uint8 crops packed per page"))
    if render is not None:
        if old is not None:
            rows.append(row("cpu-stage-today", [render, old], "render + the processor (ran on the GPU actor)"))
        rows.append(row("cpu-stage-new", [render, new], "render + PreparePixels (the render workers)"))
    return rows
