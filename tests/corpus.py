"""A corpus of broken, encrypted, huge and odd input files, built at test time.

Each file is made here (raw PDF bytes where PyMuPDF would refuse to write the oddity) and
comes with the status the first row of `render_document` must carry. The expectations
record what MuPDF 1.28 and Pillow actually do with each file, so a library upgrade that
changes behaviour shows up as a test failure rather than a silent change in output.
About 0.4 MB in all; it builds in a fraction of a second.
"""
from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pymupdf
from PIL import Image

OK, ERROR, ENCRYPTED, EMPTY, TOO_LARGE = "ok", "render_error", "encrypted", "empty_document", "page_too_large"
CLAIMED_PAGES = 100_000
CRASH_NAME = "crash_me"  # a document named so aborts its render child where the crash hook is set


def raw_pdf(objects: list[bytes], xref_size: int | None = None) -> bytes:
    """PDF bytes from object bodies (object i+1 is objects[i], object 1 the catalog).

    With xref_size, the cross-reference is a compressed stream padded with free entries up
    to that size: MuPDF refuses a page count above the xref length, and a padded xref
    stream is how a small file can legitimately claim 100,000 pages.
    """
    out, offsets = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    if xref_size is None:
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    else:
        entries = b"\x00\x00\x00\x00\x00\xff\xff" + b"".join(
            b"\x01" + struct.pack(">I", offset) + b"\x00\x00" for offset in offsets + [xref_at])
        entries += b"\x00" * 7 * (xref_size - len(objects) - 2)
        packed = zlib.compress(entries, 9)
        out += b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode " \
               b"/Length %d >>\nstream\n%s\nendstream\nendobj\n" % (len(objects) + 1, xref_size, len(packed), packed)
    return bytes(out + b"startxref\n%d\n%%%%EOF\n" % xref_at)


def stream(content: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(content), extra, content)


def one_page(page_extra: bytes = b"/MediaBox [0 0 612 792]", content: bytes = b"0 0 1 rg 50 50 100 100 re f",
             resources: bytes = b"", more: list[bytes] = ()) -> bytes:
    """A one-page raw PDF: catalog 1, pages 2, page 3, contents 4, then `more` objects."""
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
                    b"<< /Type /Page /Parent 2 0 R %s /Contents 4 0 R /Resources << %s >> >>"
                    % (page_extra, resources), stream(content), *more])


def claimed_pages(shared_tree: bool, padded: bool) -> bytes:
    """A page tree claiming 100,000 pages in a couple of KB.

    shared_tree: five levels of /Pages nodes, each listing the next level ten times, so
    100,000 leaves resolve to one page object. Otherwise the root just lies: /Count 100000
    over a single kid.
    """
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    levels = 5 if shared_tree else 1
    for level in range(levels):
        fan = 10 if shared_tree else 1
        count = 10 ** (levels - level) if shared_tree else CLAIMED_PAGES
        kids = b" ".join([b"%d 0 R" % (3 + level)] * fan)  # object 2 + level is this node
        objects.append(b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, kids))
    leaf = len(objects) + 1
    objects.append(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 200 100] /Contents %d 0 R >>" % (leaf - 1, leaf + 1))
    objects.append(stream(b"0 0 1 rg 10 10 50 50 re f"))
    return raw_pdf(objects, xref_size=CLAIMED_PAGES + 10 if padded else None)


def nested_forms(depth: int, cyclic: bool = False) -> bytes:
    """Form XObjects each drawing the next, `depth` deep; cyclic: the last draws the first."""
    forms = []
    for level in range(depth):
        innermost = level == depth - 1
        target = 5 if innermost else 6 + level  # the form at `level` is object 5 + level
        inner = b"0 0 1 rg 0 0 10 10 re f" if innermost and not cyclic else b"/Fx Do"
        forms.append(stream(b"q 0.99 0 0 0.99 1 1 cm %s Q" % inner,
                            b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                            b"/Resources << /XObject << /Fx %d 0 R >> >>" % target))
    return one_page(content=b"/Fx Do", resources=b"/XObject << /Fx 5 0 R >>", more=forms)


def broken_middle_page(depth: int = 200) -> bytes:
    """Three pages; the second draws form XObjects `depth` deep (MuPDF: stack overflow).

    Built raw because PyMuPDF 2's insert_pdf itself overflows copying such a page.
    """
    first_form = 9
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 3 /Kids [3 0 R 4 0 R 5 0 R] >>"]
    for page in range(3):
        resources = b"/XObject << /Fx %d 0 R >>" % first_form if page == 1 else b""
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << %s >> >>" % (6 + page, resources))
    objects += [stream(b"/Fx Do" if page == 1 else b"0 0 1 rg 50 50 100 100 re f") for page in range(3)]
    for level in range(depth):
        inner = b"0 0 1 rg 0 0 10 10 re f" if level == depth - 1 else b"/Fx Do"
        objects.append(stream(b"q 0.99 0 0 0.99 1 1 cm %s Q" % inner,
                              b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                              b"/Resources << /XObject << /Fx %d 0 R >> >>" % (first_form + level + 1)))
    return raw_pdf(objects)


def huge_image(side: int = 8000) -> bytes:
    """A page drawing one side x side 8-bit grey image (64 Mpx), which compresses to ~220 KB."""
    row = bytes((x // 40) % 2 * 255 for x in range(side))
    pixels = zlib.compress(row * side, 6)
    image = stream(pixels, b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                           b"/BitsPerComponent 8 /Filter /FlateDecode" % (side, side))
    return one_page(content=b"q 612 0 0 792 0 0 cm /Im Do Q", resources=b"/XObject << /Im 5 0 R >>",
                    more=[image])


def mupdf_pdf(pages: int = 3, **save_options) -> bytes:
    with pymupdf.open() as doc:
        for number in range(pages):
            doc.new_page().insert_text((72, 72), f"Corpus page {number + 1}: the quick brown fox.", fontsize=14)
        return doc.tobytes(**save_options)


def image_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    """A 300 x 200 photo with a black box at its stored top-left, tagged EXIF orientation 6."""
    image = Image.new("RGB", (300, 200), "white")
    image.paste((0, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone held upright
    return image_bytes(image, "JPEG", exif=exif.tobytes(), quality=90)


def png_bomb(side: int = 40_000) -> bytes:
    """A PNG whose header claims side x side pixels; the data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def _flip(data: bytes, start: int, length: int) -> bytes:
    flipped = bytearray(data)
    for i in range(start, min(start + length, len(data)), 3):
        flipped[i] ^= 0xFF
    return bytes(flipped)


def corpus_files() -> dict[str, tuple[bytes, str]]:
    """{file name: (content, expected status of the first row)}."""
    base = mupdf_pdf()
    png = image_bytes(Image.new("L", (600, 800), 255), "PNG")
    garbage = random.Random(1234).randbytes(20_000)
    frames = [Image.new("L", (400, 300), shade) for shade in (0, 128, 255)]
    return {
        # truncated at several offsets: MuPDF repairs what it can
        "truncated_at_0020.pdf": (base[:20], ERROR),  # no objects found
        "truncated_at_0200.pdf": (base[:200], ERROR),  # invalid key in dict
        "truncated_at_half.pdf": (base[: len(base) // 2], OK),
        "truncated_last_40_bytes.pdf": (base[:-40], OK),  # xref lost, repaired
        "garbage_random.pdf": (garbage, ERROR),
        "garbage_random.bin": (garbage, ERROR),  # unknown format
        "garbage_after_pdf_header.pdf": (b"%PDF-1.4\n" + garbage, ERROR),
        "xref_bytes_flipped.pdf": (_flip(base, base.rindex(b"xref"), 120), OK),
        "startxref_points_nowhere.pdf": (base.replace(b"startxref\n", b"startxref\n9"), OK),
        "junk_before_header.pdf": (b"X-Mailer: junk\r\n" * 20 + base, OK),
        "header_only.pdf": (b"%PDF-1.7\n%%EOF\n", ERROR),
        # MuPDF opens this as HTML5 despite filetype="pdf"; render refuses anything not PDF
        "html_named.pdf": (b"<!doctype html><html><body>403 Forbidden</body></html>", ERROR),
        "text_named.pdf": (b"Access denied.\n" * 5, ERROR),
        "empty.pdf": (b"", ERROR),
        "zero_pages.pdf": (raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                                    b"<< /Type /Pages /Count 0 /Kids [] >>"]), EMPTY),
        "no_catalog_pages.pdf": (raw_pdf([b"<< /Type /Catalog >>"]), EMPTY),  # MuPDF: 0 pages, no repair
        # encryption
        "encrypted_user_password_rc4.pdf": (
            mupdf_pdf(encryption=pymupdf.PDF_ENCRYPT_RC4_128, user_pw="user", owner_pw="owner"), ENCRYPTED),
        "encrypted_user_password_aes256.pdf": (
            mupdf_pdf(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner"), ENCRYPTED),
        # empty user password: anyone may open it, so MuPDF does without asking
        "encrypted_owner_only_aes256.pdf": (mupdf_pdf(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner"), OK),
        "encrypted_owner_only_rc4_no_print.pdf": (
            mupdf_pdf(encryption=pymupdf.PDF_ENCRYPT_RC4_128, owner_pw="owner", permissions=0), OK),
        # page counts
        "pages_100000_shared_tree.pdf": (claimed_pages(shared_tree=True, padded=True), OK),
        # first page ok, every other rendered page render_error ("page N not in document")
        "pages_100000_lying_count.pdf": (claimed_pages(shared_tree=False, padded=True), OK),
        # MuPDF: "Invalid number of pages" when /Count exceeds the xref length
        "pages_100000_unpadded_xref.pdf": (claimed_pages(shared_tree=True, padded=False), ERROR),
        "page_tree_cycle.pdf": (raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",  # page 1: "cycle in page tree"
                                         b"<< /Type /Pages /Count 1 /Kids [2 0 R] >>"]), ERROR),
        # page geometry
        "page_200in_square.pdf": (one_page(b"/MediaBox [0 0 14400 14400]"), OK),
        "strip_1x5000pt.pdf": (one_page(b"/MediaBox [0 0 1 5000]"), OK),
        "strip_5000x1pt.pdf": (one_page(b"/MediaBox [0 0 5000 1]"), OK),
        "tiny_receipt_100x30pt.pdf": (one_page(b"/MediaBox [0 0 100 30]"), OK),
        "mediabox_zero_area.pdf": (one_page(b"/MediaBox [0 0 0 0]"), OK),  # MuPDF: letter
        "mediabox_1e30.pdf": (one_page(b"/MediaBox [0 0 1e30 1e30]"), OK),  # MuPDF: letter
        "mediabox_sub_point.pdf": (one_page(b"/MediaBox [0 0 0.001 5000]"), OK),  # MuPDF: 1 x 1 pt
        "mediabox_inverted.pdf": (one_page(b"/MediaBox [612 792 0 0]"), OK),
        "mediabox_missing.pdf": (one_page(b""), OK),
        "mediabox_offset_origin.pdf": (one_page(b"/MediaBox [-300 400 312 1192]"), OK),
        "rotate_90.pdf": (one_page(b"/MediaBox [0 0 612 792] /Rotate 90"), OK),
        "rotate_180.pdf": (one_page(b"/MediaBox [0 0 612 792] /Rotate 180"), OK),
        "rotate_270.pdf": (one_page(b"/MediaBox [0 0 612 792] /Rotate 270"), OK),
        "rotate_minus_90.pdf": (one_page(b"/MediaBox [0 0 612 792] /Rotate -90"), OK),
        "rotate_45_invalid.pdf": (one_page(b"/MediaBox [0 0 612 792] /Rotate 45"), OK),  # as 90
        # page content
        "huge_embedded_image_8000px.pdf": (huge_image(), OK),
        "nested_forms_50_deep.pdf": (nested_forms(50), OK),
        "nested_forms_200_deep.pdf": (nested_forms(200), ERROR),  # MuPDF: exception stack overflow
        "recursive_form.pdf": (nested_forms(3, cyclic=True), OK),
        "content_stream_garbage.pdf": (one_page(content=garbage[:2000]), OK),
        "content_bad_flate.pdf": (raw_pdf([
            b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            stream(garbage[:500], b"/Filter /FlateDecode")]), OK),
        "contents_missing_object.pdf": (one_page(b"/MediaBox [0 0 612 792]").replace(
            b"/Contents 4 0 R", b"/Contents 99 0 R"), OK),
        # images
        "scan.png": (png, OK),
        "png_named.pdf": (png, OK),  # magic bytes win over the extension
        "rgba_transparent.png": (image_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"), OK),
        "gray_16bit.png": (image_bytes(Image.new("I;16", (64, 64), 40_000), "PNG"), OK),
        "palette.png": (image_bytes(Image.new("P", (64, 64), 3), "PNG"), OK),
        "one_pixel.png": (image_bytes(Image.new("RGB", (1, 1), "red"), "PNG"), OK),
        "wide_4000x1000.png": (image_bytes(Image.new("L", (4000, 1000), 200), "PNG"), OK),
        "photo_exif_rotated.jpg": (exif_rotated_jpeg(), OK),
        "cmyk.jpg": (image_bytes(Image.new("CMYK", (120, 80), (0, 50, 100, 0)), "JPEG"), OK),
        "multi_frame.tiff": (image_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:],
                                         compression="tiff_deflate"), OK),
        "truncated.png": (image_bytes(Image.effect_noise((300, 300), 60), "PNG")[:3000], ERROR),
        "truncated.jpg": (image_bytes(Image.effect_noise((300, 300), 60), "JPEG")[:3000], ERROR),
        "bomb_40000px.png": (png_bomb(), TOO_LARGE),
        "empty.png": (b"", ERROR),
        "gif_image.gif": (image_bytes(Image.new("P", (32, 32)), "GIF"), ERROR),
        "bmp_named.png": (image_bytes(Image.new("RGB", (32, 32)), "BMP"), ERROR),
    }


def build_corpus(folder: Path) -> dict[str, str]:
    """Write every corpus file into `folder`; returns {file name: expected first-row status}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (content, status) in corpus_files().items():
        (folder / name).write_bytes(content)
        expected[name] = status
    return expected


def locked_pdf(password: str, encryption: int = pymupdf.PDF_ENCRYPT_AES_256, pages: int = 1) -> bytes:
    """A corpus PDF that opens with the user password `password` (or the owner password "owner-" + it).
    MuPDF keys an AES-256 file with the password's UTF-8 bytes as given: to stand for a PDF 2.0 writer,
    which keys it with the SASLprep form, pass that form (tests/test_passwords.py)."""
    return mupdf_pdf(pages, encryption=encryption, user_pw=password, owner_pw=f"owner-{password}")
