"""pageray.pipeline.render.pages: documents in, one row per page out, whatever the input looks like."""
from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from corpus import CLAIMED_PAGES, broken_middle_page, build_corpus
from pageray.pipeline.datamodel import PAGE_COLUMNS, Status
from pageray.pipeline.render.geometry import pixel_size, render_scale
from pageray.pipeline.render.pages import RenderLimits, detect_format, iter_render, render_document

DEFAULTS = RenderLimits()
# Small renders for sweeps: what is under test there is the status, not the pixels.
QUICK = RenderLimits(longest_edge_px=256, max_page_pixels=256 * 256, max_pages_per_doc=10)
REALWORLD = Path(__file__).parent / "data" / "realworld"
REALWORLD_ENCRYPTED = {"encryption-r2-user-password.pdf", "encryption-r6-user-password.pdf",
                       "libreoffice-writer-password.pdf"}
ROW_KEYS = {"page_index", "page_count", "status", "error", "image", "image_width", "image_height",
            "text_layer", "text_layer_chars", "render_ms"}
STATUSES = {status.value for status in Status}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


def corpus_rows(corpus, name: str, limits: RenderLimits = DEFAULTS) -> list[dict]:
    folder, _ = corpus
    return render_document((folder / name).read_bytes(), name, limits)


def pixels(row: dict) -> np.ndarray:
    assert len(row["image"]) == row["image_width"] * row["image_height"] * 3
    return np.frombuffer(row["image"], np.uint8).reshape(row["image_height"], row["image_width"], 3)


def pdf_bytes(*sizes: tuple[float, float], rotate: int = 0, text: str = "") -> bytes:
    with pymupdf.open() as doc:
        for width, height in sizes:
            page = doc.new_page(width=width, height=height)
            page.draw_rect(pymupdf.Rect(0, 0, 100, 100), color=None, fill=(0, 0, 0))  # top-left box
            if text:
                page.insert_text((120, 60), text)
            page.set_rotation(rotate)
        return doc.tobytes()


def dark_corners(image: np.ndarray) -> set[str]:
    h, w = image.shape[:2]
    corners = {"top-left": image[2, 2], "top-right": image[2, w - 3],
               "bottom-left": image[h - 3, 2], "bottom-right": image[h - 3, w - 3]}
    return {name for name, value in corners.items() if value.mean() < 64}


def test_limits_validate_themselves():
    assert DEFAULTS.longest_edge_px == 1960 and DEFAULTS.max_page_pixels == 1960 * 1960
    for bad in ({"longest_edge_px": 0}, {"longest_edge_px": 8193}, {"max_pages_per_doc": -1},
                {"max_file_bytes": 1.5}, {"max_page_pixels": True}, {"max_page_pixels": 8193 * 8193}):
        with pytest.raises(ValueError, match="RenderLimits"):
            RenderLimits(**bad)


@pytest.mark.parametrize(("size", "expected"), [((612, 792), (1515, 1960)), ((595, 842), (1386, 1960))])
def test_letter_and_a4_render_with_longest_side_1960(size, expected):
    [row] = render_document(pdf_bytes(size, text="Hello pageray"), "page.pdf", DEFAULTS)
    assert row["status"] == "ok" and row["error"] is None
    assert (row["image_width"], row["image_height"]) == expected
    assert pixels(row).shape == (expected[1], expected[0], 3)
    assert "Hello pageray" in row["text_layer"] and row["text_layer_chars"] == len(row["text_layer"])
    assert set(row) == ROW_KEYS and set(row) <= set(PAGE_COLUMNS)
    assert row["page_index"] == 0 and row["page_count"] == 1 and row["render_ms"] > 0


@pytest.mark.parametrize("size", [(612, 792), (595, 842), (1, 5000), (14400, 14400), (100, 30), (333.3, 777.7)])
def test_mupdf_pixmaps_match_the_geometry_module(size):
    [row] = render_document(pdf_bytes(size), "page.pdf", DEFAULTS)
    expected = pixel_size(*size, render_scale(*size, DEFAULTS.longest_edge_px, DEFAULTS.max_page_pixels))
    assert (row["image_width"], row["image_height"]) == expected


@pytest.mark.parametrize(("rotate", "corner"), [(0, "top-left"), (90, "top-right"), (180, "bottom-right"),
                                                (270, "bottom-left")])
def test_rotated_pages_come_out_as_a_viewer_shows_them(rotate, corner):
    [row] = render_document(pdf_bytes((400, 600), rotate=rotate), "rotated.pdf", DEFAULTS)
    landscape = rotate in (90, 270)
    assert (row["image_width"] > row["image_height"]) == landscape
    assert dark_corners(pixels(row)) == {corner}


def test_samples_render_as_expected(samples):
    rows = {path.name: render_document(path.read_bytes(), path.name, DEFAULTS) for path in sorted(samples.iterdir())}
    statuses = {name: [row["status"] for row in page_rows] for name, page_rows in rows.items()}
    assert statuses == {
        "corrupt_truncated.pdf": ["render_error"], "encrypted_password_secret.pdf": ["encrypted"],
        "form_two_pages.pdf": ["ok", "ok"], "invoice.pdf": ["ok"], "paper_first_page.pdf": ["ok"],
        "receipt.pdf": ["ok"], "receipt.png": ["ok"], "rotated_table.pdf": ["ok"], "scanned_invoice.pdf": ["ok"],
    }
    assert "INV-2024-0117" in rows["invoice.pdf"][0]["text_layer"]
    assert "Quarterly shipments" in rows["rotated_table.pdf"][0]["text_layer"]
    table = rows["rotated_table.pdf"][0]
    assert table["image_width"] > table["image_height"]  # /Rotate 90 shows it as landscape
    scanned = rows["scanned_invoice.pdf"][0]
    assert scanned["text_layer"] == "" and scanned["text_layer_chars"] == 0
    assert pixels(scanned).min() < 100  # ...but the page is not blank
    assert "password" in rows["encrypted_password_secret.pdf"][0]["error"]


@pytest.mark.parametrize(("name", "status", "message"), [
    ("truncated_at_0200.pdf", "render_error", "cannot open"),
    ("garbage_random.pdf", "render_error", "no objects found"),
    ("garbage_random.bin", "render_error", "accepted: PDF, PNG, JPEG, TIFF"),
    ("html_named.pdf", "render_error", "not a PDF"),
    ("encrypted_user_password_aes256.pdf", "encrypted", "needs a password"),
    ("empty.pdf", "render_error", "empty (0 bytes)"),
    ("zero_pages.pdf", "empty_document", "no pages"),
    ("pages_100000_unpadded_xref.pdf", "render_error", "Invalid number of pages"),
    ("bomb_40000px.png", "page_too_large", "178956970"),
    ("bmp_named.png", "render_error", "BMP"),
])
def test_document_level_failures_are_one_row(corpus, name, status, message):
    [row] = corpus_rows(corpus, name)
    assert (row["status"], row["page_index"], row["image"]) == (status, 0, None)
    assert message in row["error"] and name in row["error"]


def test_owner_password_only_renders(corpus):
    assert [row["status"] for row in corpus_rows(corpus, "encrypted_owner_only_aes256.pdf", QUICK)] == ["ok"] * 3


def test_file_over_max_file_bytes_is_not_parsed():
    [row] = render_document(b"%PDF-1.7" + b"\0" * 2000, "big.pdf", RenderLimits(max_file_bytes=1000))
    assert row["status"] == "file_too_large"
    assert "2,008 bytes" in row["error"] and "max_file_bytes=1,000" in row["error"]


def test_one_broken_page_does_not_cost_the_others(corpus):
    rows = render_document(broken_middle_page(200), "mixed.pdf", QUICK)
    assert [row["status"] for row in rows] == ["ok", "render_error", "ok"]
    assert rows[1]["error"].startswith("page 2 of 3:") and rows[1]["image"] is None


def test_100000_page_document_is_cheap(corpus):
    folder, _ = corpus
    data = (folder / "pages_100000_shared_tree.pdf").read_bytes()
    assert len(data) < 4096
    counts, skipped, largest = Counter(), None, 0
    tracemalloc.start()
    try:
        for row in iter_render(data, "many.pdf", DEFAULTS):  # streamed: 2,000 full-size pages
            counts[row["status"]] += 1
            assert row["page_count"] == CLAIMED_PAGES
            largest = max(largest, len(row["image"] or b""))
            if row["page_index"] == 2000:
                skipped = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # cheap as work and memory, not as time (a wall clock fails on a busy machine): only the first
    # max_pages_per_doc pages are rendered, the rest are rows without pixels, and the images are
    # streamed (never more than a few pages' pixels held at once, not 2,000 of them)
    assert counts == {"ok": 2000, "page_skipped": CLAIMED_PAGES - 2000}
    assert largest > 0 and peak < 4 * largest, (peak, largest)
    assert skipped["error"] == "page 2001 of 100000 skipped: max_pages_per_doc=2000" and skipped["image"] is None


def test_lying_page_count_renders_what_exists(corpus):
    rows = corpus_rows(corpus, "pages_100000_lying_count.pdf", QUICK)
    assert len(rows) == CLAIMED_PAGES
    assert [row["status"] for row in rows[:3]] == ["ok", "render_error", "render_error"]
    assert Counter(row["status"] for row in rows)["page_skipped"] == CLAIMED_PAGES - QUICK.max_pages_per_doc


def test_huge_page_renders_within_max_page_pixels(corpus):
    [row] = corpus_rows(corpus, "page_200in_square.pdf")
    assert (row["image_width"], row["image_height"]) == (1960, 1960)
    limits = RenderLimits(max_page_pixels=1_000_000)
    [row] = corpus_rows(corpus, "page_200in_square.pdf", limits)
    assert row["status"] == "ok" and row["image_width"] * row["image_height"] <= 1_000_000
    [row] = corpus_rows(corpus, "huge_embedded_image_8000px.pdf")
    assert row["status"] == "ok" and max(row["image_width"], row["image_height"]) == 1960


def test_multi_frame_tiff_gives_one_row_per_frame(corpus):
    rows = corpus_rows(corpus, "multi_frame.tiff")
    assert [(row["status"], row["page_index"], row["page_count"]) for row in rows] == [("ok", i, 3) for i in range(3)]
    assert [int(pixels(row).mean()) for row in rows] == [0, 128, 255]
    assert all(row["text_layer"] == "" for row in rows)


def test_exif_orientation_is_applied(corpus):
    [row] = corpus_rows(corpus, "photo_exif_rotated.jpg")
    assert (row["image_width"], row["image_height"]) == (200, 300)
    assert dark_corners(pixels(row)) == {"top-right"}


def test_images_are_downscaled_never_upscaled_and_flattened(corpus):
    [wide] = corpus_rows(corpus, "wide_4000x1000.png")
    assert (wide["image_width"], wide["image_height"]) == (1960, 490)
    [dot] = corpus_rows(corpus, "one_pixel.png")
    assert (dot["image_width"], dot["image_height"], dot["image"]) == (1, 1, b"\xff\x00\x00")
    [clear] = corpus_rows(corpus, "rgba_transparent.png")
    assert pixels(clear).min() == 255  # transparent is white paper, not black
    [deep] = corpus_rows(corpus, "gray_16bit.png")
    assert int(pixels(deep).mean()) == 40_000 >> 8  # 16-bit samples scaled, not clipped


def test_format_is_sniffed_before_the_extension_is_trusted(corpus):
    png = (corpus[0] / "scan.png").read_bytes()
    assert detect_format(png, "report.pdf") == "png"
    assert detect_format(b"junk", "scan.JPG") == "jpeg" and detect_format(b"junk", "a/b.tif") == "tiff"
    assert detect_format(b"junk", "notes.txt") is None
    assert render_document(png, "report.pdf", QUICK)[0]["status"] == "ok"


def test_name_is_never_opened(tmp_path):
    real = tmp_path / "real.pdf"
    real.write_bytes(pdf_bytes((612, 792)))
    [row] = render_document(b"", str(real), DEFAULTS)
    assert row["status"] == "render_error" and "empty" in row["error"]


def test_every_corpus_file_yields_rows_with_valid_statuses(corpus):
    folder, expected = corpus
    assert len(expected) >= 40
    assert sum(path.stat().st_size for path in folder.iterdir()) < 20 * 1024 * 1024
    for name, status in expected.items():
        rows = corpus_rows(corpus, name, QUICK)
        assert rows, name
        assert rows[0]["status"] == status, (name, rows[0]["error"])
        for row in rows:
            assert set(row) == ROW_KEYS and row["status"] in STATUSES, name
            assert (row["status"] == "ok") == (row["image"] is not None), name
            if row["status"] == "ok":
                assert len(row["image"]) == row["image_width"] * row["image_height"] * 3
                assert row["image_width"] * row["image_height"] <= QUICK.max_page_pixels
            else:
                assert row["error"], name


@pytest.mark.parametrize("path", sorted(REALWORLD.glob("*.pdf")), ids=lambda path: path.name)
def test_realworld_pdfs_render_and_are_documented(path):
    assert f"`{path.name}`" in (REALWORLD / "SOURCES.md").read_text()  # origin and licence
    rows = render_document(path.read_bytes(), path.name, QUICK)
    if path.name in REALWORLD_ENCRYPTED:
        assert [row["status"] for row in rows] == ["encrypted"]
    else:
        assert {row["status"] for row in rows} <= {"ok", "page_skipped"}
        assert rows[0]["status"] == "ok" and rows[0]["page_count"] == len(rows)
