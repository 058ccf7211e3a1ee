"""Benchmark pages and the CPU stage: rendering with PyMuPDF and Idefics2 preprocessing.

The pages are the letter and A4 documents of `pipeline.samples` (an invoice with a table, a
paper's first page, a rotated landscape table, a scanned invoice, a two-page form), cycled to
the requested count and rendered exactly as the pipeline renders them (1960 px longest side).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pipeline.datamodel import Status, rows_to_columns
from pipeline.render.pages import RenderLimits, iter_render

# Letter and A4 only: the receipt is neither, and the corrupt / encrypted samples give no page.
BENCH_DOCUMENTS = ("invoice.pdf", "paper_first_page.pdf", "rotated_table.pdf",
                   "scanned_invoice.pdf", "form_two_pages.pdf")


def load_documents() -> list[tuple[str, bytes]]:
    from pipeline.samples import write_samples

    with tempfile.TemporaryDirectory(prefix="pageray-bench-") as tmp:
        paths = {p.name: p for p in write_samples(Path(tmp))}
        return [(name, paths[name].read_bytes()) for name in BENCH_DOCUMENTS]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def render_pages(n: int, documents: list[tuple[str, bytes]] | None = None) -> tuple[list[dict], dict]:
    """Render whole documents, cycling through them, until `n` pages are ok. Only the first
    page of each distinct (document, page) is kept; the rest are the same pixels and are
    referenced again, so 64 pages cost 6 page images of memory. Returns (pages, timing)."""
    documents = documents or load_documents()
    limits, kept, pages = RenderLimits(), {}, []
    next(iter_render(documents[0][1], documents[0][0], limits))  # warm-up: fonts, MuPDF's caches
    wall0, cpu0 = _clock()
    i = 0
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
    wall1, cpu1 = _clock()
    return pages, {"wall_s": wall1 - wall0, "cpu_s": cpu1 - cpu0}


def page_batch(pages: list[dict]) -> dict:
    """The column batch the Ray pipeline hands the extractor (see tests/test_extractor.py)."""
    return rows_to_columns(pages)


def pil_image(page: dict):
    from PIL import Image

    return Image.frombuffer("RGB", (page["image_width"], page["image_height"]), page["image"], "raw", "RGB", 0, 1)


def crop_patches(pixel_attention_mask, patch_size: int) -> list[list[int]]:
    """Real patches of each image of each page, counted as the model's patch mask counts them
    (a patch is real when all its pixels are): (h // p) * (w // p). All-padding images are
    dropped, as the model drops them."""
    out = []
    for page in pixel_attention_mask:
        crops = []
        for mask in page:
            h, w = int(mask[:, 0].sum()), int(mask[0, :].sum())
            if h and w:
                crops.append((h // patch_size) * (w // patch_size))
        out.append(crops)
    return out


def preprocess_pages(processor, prompt: str, pages: list[dict], batch_size: int, patch_size: int) -> tuple[list, dict]:
    """Run the processor the way the extractor does (PIL from raw bytes, a batch of prompts and
    images, padded tensors) and time it. Returns ((crop patches, prompt tokens) per page, timing)."""
    geometry = []
    processor(text=[prompt], images=[[pil_image(pages[0])]], padding=True, return_tensors="pt")  # warm-up
    wall0, cpu0 = _clock()
    for start in range(0, len(pages), batch_size):
        chunk = pages[start:start + batch_size]
        inputs = processor(text=[prompt] * len(chunk), images=[[pil_image(p)] for p in chunk],
                           padding=True, return_tensors="pt")
        tokens = inputs["attention_mask"].sum(dim=1).tolist()
        geometry.extend(zip(crop_patches(inputs["pixel_attention_mask"], patch_size), tokens))
    wall1, cpu1 = _clock()
    return geometry, {"wall_s": wall1 - wall0, "cpu_s": cpu1 - cpu0,
                      "padded_shape": tuple(inputs["pixel_values"].shape[-2:])}


def cpu_stage_rows(n_pages: int, render: dict, preprocess: dict, processor_name: str) -> list[dict]:
    """Rows for the render, the preprocessing, and the two together, per core (process CPU
    time) and per process (wall time)."""
    def row(name: str, wall: float, cpu: float, note: str) -> dict:
        return {"name": name, "device": "cpu (1 process)", "pages": n_pages,
                "pages_per_s": n_pages / wall if wall else None,
                "pages_per_cpu_s": n_pages / cpu if cpu else None, "wall_s": wall, "note": note}

    both_wall = render["wall_s"] + preprocess["wall_s"]
    both_cpu = render["cpu_s"] + preprocess["cpu_s"]
    return [
        row("cpu-render", render["wall_s"], render["cpu_s"], "PyMuPDF, 1960 px longest side, RGB"),
        row("cpu-preprocess", preprocess["wall_s"], preprocess["cpu_s"],
            f"{processor_name}: split + resize + normalise + pad"),
        row("cpu-stage", both_wall, both_cpu,
            f"render + preprocess; render {100 * render['wall_s'] / both_wall:.0f}% of wall"),
    ]
