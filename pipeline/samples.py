"""A small, realistic set of sample documents for the demo, drawn with PyMuPDF from fixed content
(seeded noise included). Two must come out as error rows: a truncated PDF and an encrypted one.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image

LETTER = (612, 792)
A4 = (595, 842)
RECEIPT = (226, 340)  # 80 mm thermal paper
SAMPLE_USER_PASSWORD = "secret"

INVOICE_ITEMS = (
    ("Steel bracket, 40 mm", 120, 0.85),
    ("Hex bolt M8 x 30 (box of 100)", 6, 14.20),
    ("Cordless drill 18 V", 2, 129.00),
    ("Safety gloves, size L", 24, 3.75),
    ("Delivery and handling", 1, 35.00),
)
RECEIPT_ITEMS = (("Flat white", 2, 3.40), ("Croissant", 1, 2.80), ("Orange juice", 1, 3.10))
TAX_RATE = 0.08
PAPER_ABSTRACT = (
    "Vision-language models read scanned pages well but cost too much to run on whole archives. "
    "We route each page to a small or a large model from cheap layout cues, and cut compute by 61% "
    "on a 2.3 million page corpus while losing 0.4 points of field-level F1."
)
PAPER_INTRO = (
    "Businesses keep most of their records as PDF files: invoices, contracts, forms and reports. "
    "Extracting typed fields from them is a batch problem with a long tail of odd inputs."
)


def _amount(value: float) -> str:
    return f"{value:,.2f}"


def _text(page, x, y, text, size=10, bold=False, align="left"):
    """Text with its baseline at y, starting at x (left), centred on x, or ending at x (right)."""
    font = "hebo" if bold else "helv"
    width = pymupdf.get_text_length(text, fontname=font, fontsize=size)
    x -= {"left": 0, "centre": width / 2, "right": width}[align]
    page.insert_text((x, y), text, fontsize=size, fontname=font)


def _new_doc(title: str) -> pymupdf.Document:
    doc = pymupdf.open()
    # Fixed metadata: without it MuPDF stamps the current time and the bytes drift.
    doc.set_metadata({"title": title, "producer": "pageray samples", "creationDate": "", "modDate": ""})
    return doc


def _tobytes(doc: pymupdf.Document, **encryption) -> bytes:
    with doc:
        return doc.tobytes(garbage=3, deflate=True, no_new_id=True, **encryption)


def _draw_invoice(page: pymupdf.Page) -> None:
    _text(page, 50, 60, "ACME Industrial Supplies Ltd.", 16, bold=True)
    _text(page, 50, 78, "14 Foundry Lane, Sheffield S3 8RY, United Kingdom")
    _text(page, 562, 60, "INVOICE", 20, bold=True, align="right")
    for i, (label, value) in enumerate((("Invoice no.", "INV-2024-0117"), ("Date", "2024-03-18"),
                                        ("Due date", "2024-04-17"), ("PO number", "PO-55821"))):
        _text(page, 380, 100 + 15 * i, label)
        _text(page, 562, 100 + 15 * i, value, bold=True, align="right")
    _text(page, 50, 120, "Bill to", bold=True)
    for i, line in enumerate(("Northwind Fabrication GmbH", "Attn: Accounts Payable",
                              "Industriestrasse 7", "70565 Stuttgart, Germany")):
        _text(page, 50, 136 + 14 * i, line)
    top, columns = 215, (50, 330, 410, 490, 562)
    page.draw_rect(pymupdf.Rect(50, top, 562, top + 20), color=None, fill=(0.85, 0.88, 0.95))
    _text(page, 56, top + 14, "Description", bold=True)
    for x, head in zip(columns[2:], ("Qty", "Unit price", "Amount")):
        _text(page, x - 6, top + 14, head, bold=True, align="right")
    subtotal, y = 0.0, top + 20
    for description, qty, unit in INVOICE_ITEMS:
        amount = qty * unit
        subtotal += amount
        y += 20
        _text(page, 56, y - 6, description)
        for x, cell in zip(columns[2:], (str(qty), _amount(unit), _amount(amount))):
            _text(page, x - 6, y - 6, cell, align="right")
        page.draw_line((50, y), (562, y), color=(0.7, 0.7, 0.7), width=0.5)
    tax = round(subtotal * TAX_RATE, 2)
    for i, (label, value) in enumerate((("Subtotal", subtotal), (f"VAT {TAX_RATE:.0%}", tax),
                                        ("Total due (GBP)", subtotal + tax))):
        bold = i == 2
        _text(page, 380, y + 24 + 18 * i, label, bold=bold)
        _text(page, 556, y + 24 + 18 * i, _amount(value), bold=bold, align="right")
    _text(page, 50, 720, "Payment: bank transfer to GB29 NWBK 6016 1331 9268 19 within 30 days.", 9)


def _one_page(title: str, size: tuple[int, int], draw, **encryption) -> bytes:
    doc = _new_doc(title)
    draw(doc.new_page(width=size[0], height=size[1]))
    return _tobytes(doc, **encryption)


def invoice_pdf() -> bytes:
    return _one_page("Invoice INV-2024-0117", LETTER, _draw_invoice)


def _draw_receipt(page: pymupdf.Page) -> None:
    for y, line, size in ((40, "BLUE DOOR CAFE", 14), (58, "221 Harbour St, Leith", 8),
                          (70, "VAT reg 481 2291 07", 8)):
        _text(page, RECEIPT[0] / 2, y, line, size, align="centre")
    _text(page, 14, 96, "2024-03-18 08:42   Till 2   #004417", 8)
    y, total = 120, 0.0
    for name, qty, price in RECEIPT_ITEMS:
        _text(page, 14, y, f"{qty} x {name}", 9)
        _text(page, 212, y, _amount(qty * price), 9, align="right")
        total += qty * price
        y += 16
    page.draw_line((14, y - 6), (212, y - 6), color=(0, 0, 0), dashes="[2] 0", width=0.5)
    _text(page, 14, y + 10, "TOTAL", 11, bold=True)
    _text(page, 212, y + 10, _amount(total), 11, bold=True, align="right")
    _text(page, 14, y + 30, "Card (contactless) **** 4471", 8)
    _text(page, RECEIPT[0] / 2, y + 60, "Thank you - see you soon!", 8, align="centre")


def receipt_pdf() -> bytes:
    return _one_page("Receipt 004417", RECEIPT, _draw_receipt)


def receipt_png() -> bytes:
    """The receipt as a phone-scan-like PNG (no text layer, 150 dpi grey)."""
    with pymupdf.open(stream=receipt_pdf(), filetype="pdf") as doc:
        pix = doc[0].get_pixmap(dpi=150, colorspace=pymupdf.csGRAY, alpha=False)
        return pix.tobytes("png")


def paper_pdf() -> bytes:
    title = "Sparse Routing for Page-Level Document Understanding"
    doc = _new_doc(title)
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_textbox(pymupdf.Rect(60, 70, 535, 130), title, fontsize=18, fontname="hebo", align=1)
    for y, line, size in ((140, "Maria Okafor¹, Jun Tanaka², Lena Brandt¹", 11),
                          (156, "¹ University of Edinburgh   ² Kyoto University", 9)):
        _text(page, A4[0] / 2, y, line, size, align="centre")
    _text(page, A4[0] / 2, 210, "Abstract", 11, bold=True, align="centre")
    page.insert_textbox(pymupdf.Rect(90, 220, 505, 320), PAPER_ABSTRACT, fontsize=9.5, align=3)
    _text(page, 60, 350, "1  Introduction", 12, bold=True)
    page.insert_textbox(pymupdf.Rect(60, 360, 535, 450), PAPER_INTRO, fontsize=10, align=3)
    _text(page, 290, 810, "1", 9)
    return _tobytes(doc)


def rotated_table_pdf() -> bytes:
    """A landscape table stored on a portrait page with /Rotate 90, as scanners emit it."""
    with pymupdf.open() as src:
        table = src.new_page(width=LETTER[1], height=LETTER[0])
        _text(table, 50, 50, "Quarterly shipments by region (units)", 14, bold=True)
        rows = [("Region", "Q1", "Q2", "Q3", "Q4", "Total")]
        for i, region in enumerate(("North", "South", "East", "West", "Export")):
            quarters = [1200 + 137 * i + 91 * q for q in range(4)]
            rows.append((region, *map(str, quarters), str(sum(quarters))))
        for r, row in enumerate(rows):
            y = 90 + 24 * r
            for c, cell in enumerate(row):
                x, align = (60, "left") if c == 0 else (160 + 110 * c, "right")
                _text(table, x, y, cell, bold=r == 0, align=align)
            table.draw_line((50, y + 8), (742, y + 8), color=(0.6, 0.6, 0.6), width=0.5)
        doc = _new_doc("Quarterly shipments")
        page = doc.new_page(width=LETTER[0], height=LETTER[1])
        # Draw the landscape content turned a quarter, then let /Rotate turn it back.
        page.show_pdf_page(page.rect, src, 0, rotate=90)
        page.set_rotation(90)
        return _tobytes(doc)


def scanned_pdf() -> bytes:
    """An image-only page: the letter rasterized, skewed and speckled, no text layer."""
    with pymupdf.open(stream=invoice_pdf(), filetype="pdf") as doc:
        pix = doc[0].get_pixmap(dpi=100, colorspace=pymupdf.csGRAY, alpha=False)
    image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    pixels = np.array(image.rotate(1.3, resample=Image.Resampling.BICUBIC, fillcolor=255))
    # Sparse specks and faded ink, like a photocopy; dense noise would bloat the PNG.
    rng = np.random.default_rng(20240318)
    pixels[rng.random(pixels.shape) < 0.004] = 60
    pixels[(pixels < 128) & (rng.random(pixels.shape) < 0.15)] = 150
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG", optimize=False)
    out = _new_doc("Scanned invoice")
    page = out.new_page(width=LETTER[0], height=LETTER[1])
    page.insert_image(page.rect, stream=buffer.getvalue())
    return _tobytes(out)


def _add_field(page: pymupdf.Page, kind: int, name: str, value, rect: pymupdf.Rect) -> None:
    widget = pymupdf.Widget()
    widget.field_type, widget.field_name, widget.field_value = kind, name, value
    widget.rect, widget.text_fontsize = rect, 10
    page.add_widget(widget)


def form_pdf() -> bytes:
    """A two-page application form with filled-in AcroForm fields."""
    doc = _new_doc("Membership application")
    values = (("Full name", "Amara Nwosu"), ("Date of birth", "1988-07-02"),
              ("Email", "amara.nwosu@example.org"), ("Membership number", "M-20931"))
    for number in (1, 2):
        page = doc.new_page(width=A4[0], height=A4[1])
        _text(page, 50, 60, f"Membership application - page {number} of 2", 14, bold=True)
        fields = values if number == 1 else (("Signature", "A. Nwosu"), ("Date signed", "2024-03-18"))
        for i, (label, value) in enumerate(fields):
            y = 110 + 50 * i
            _text(page, 50, y, label)
            name = f"p{number}_{label.lower().replace(' ', '_')}"
            _add_field(page, pymupdf.PDF_WIDGET_TYPE_TEXT, name, value, pymupdf.Rect(200, y - 14, 520, y + 6))
    _add_field(page, pymupdf.PDF_WIDGET_TYPE_CHECKBOX, "agree_terms", True, pymupdf.Rect(50, 300, 64, 314))
    _text(page, 72, 311, "I agree to the terms and conditions.")
    return _tobytes(doc)


def corrupt_pdf() -> bytes:
    """The invoice cut off inside its first objects: MuPDF's repair finds no page."""
    return invoice_pdf()[:120]


def encrypted_pdf() -> bytes:
    return _one_page("Confidential invoice", LETTER, _draw_invoice, encryption=pymupdf.PDF_ENCRYPT_AES_256,
                     user_pw=SAMPLE_USER_PASSWORD, owner_pw=f"{SAMPLE_USER_PASSWORD}-owner")


SAMPLES = {
    "invoice.pdf": invoice_pdf,
    "receipt.pdf": receipt_pdf,
    "receipt.png": receipt_png,
    "paper_first_page.pdf": paper_pdf,
    "rotated_table.pdf": rotated_table_pdf,
    "scanned_invoice.pdf": scanned_pdf,
    "form_two_pages.pdf": form_pdf,
    "corrupt_truncated.pdf": corrupt_pdf,
    "encrypted_password_secret.pdf": encrypted_pdf,
}


def write_samples(folder: Path) -> list[Path]:
    """Write the sample documents into `folder`; files already there are kept (a rerun has nothing new)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, build in SAMPLES.items():
        if not (folder / name).exists():
            (folder / name).write_bytes(build())
    return [folder / name for name in SAMPLES]
