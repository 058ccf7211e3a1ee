"""A labeled sample set: PDFs drawn with PyMuPDF from known values, and their labels JSONL.

Why: scoring code needs pages whose right answers are certain. Each document here is drawn from
the same values its labels are written from, so the labels are right by construction (dates are
printed in several formats and labeled in ISO, as the schemas ask). One folder per built-in
schema (invoices with line items, one of two pages; receipts; a paper's first page; a form):

    FOLDER/<schema>/documents/*.pdf     what `pageray extract --schema <schema>` reads
    FOLDER/<schema>/labels.jsonl        what `pageray eval` scores the output against

Output is byte-identical from run to run (fixed metadata, no clock).
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import pymupdf

LETTER, A4, RECEIPT = (612, 792), (595, 842), (226, 360)
SCHEMAS = ("invoice", "receipt", "paper", "form")


@dataclass(frozen=True)
class LabeledSet:
    schema: str
    documents: Path
    labels: Path


def _item(description: str, quantity: float, unit_price: float) -> dict:
    return {"description": description, "quantity": quantity, "unit_price": unit_price,
            "amount": round(quantity * unit_price, 2)}


INVOICES = (
    {"file": "invoice-001.pdf", "number": "INV-2024-0301", "date": datetime.date(2024, 3, 18),
     "due": datetime.date(2024, 4, 17), "date_format": "%d %B %Y", "currency": "GBP", "tax": ("VAT 20%", 0.20),
     "vendor": ("Harbour Tools Ltd.", ["3 Quay Street", "Bristol BS1 4DJ", "United Kingdom"], "GB 284 1130 92"),
     "customer": ("Fenwick Joinery", ["22 Mill Road", "Bath BA2 3QT", "United Kingdom"]),
     "pages": [[_item("Oak board, 2 m", 10, 18.50), _item("Wood glue, 1 l", 3, 7.95),
                _item("Sanding discs (pack of 50)", 2, 12.40)]]},
    {"file": "invoice-002.pdf", "number": "INV-2024-0302", "date": datetime.date(2024, 4, 2),
     "due": datetime.date(2024, 5, 2), "date_format": "%Y-%m-%d", "currency": "EUR", "tax": ("VAT 19%", 0.19),
     "vendor": ("Nordlicht Elektro GmbH", ["Lindenallee 12", "50667 Cologne", "Germany"], "DE 812 345 678"),
     "customer": ("Baltic Marine AB", ["Hamngatan 4", "211 22 Malmo", "Sweden"]),
     "pages": [[_item("LED panel 60 x 60 cm", 12, 42.00), _item("Cable duct, 2 m", 25, 3.80),
                _item("Circuit breaker B16", 8, 6.45), _item("Installation labour (hours)", 6.5, 58.00)],
               [_item("Site survey", 1, 120.00), _item("Disposal of old fittings", 1, 35.00)]]},
    {"file": "invoice-003.pdf", "number": "BM-7731", "date": datetime.date(2024, 3, 5),
     "due": None, "date_format": "%B %d, %Y", "currency": "USD", "tax": ("Sales tax 8.25%", 0.0825),
     "vendor": ("Blue Mesa Printing Co.", ["410 Canyon Road", "Santa Fe, NM 87501", "USA"], "84-2219034"),
     "customer": ("Juniper Cafe LLC", ["88 Plaza Ave", "Santa Fe, NM 87505", "USA"]),
     "pages": [[_item("Menu cards, 250 gsm (box of 500)", 2, 89.00), _item("Early payment discount", 1, -15.00)]]},
)
RECEIPTS = (
    {"file": "receipt-001.pdf", "merchant": "CORNER BAKERY", "address": "5 Market Row, York",
     "date": datetime.date(2024, 3, 18), "date_format": "%d.%m.%Y", "time": "08:42", "payment": "card",
     "paid": "Paid by card **** 4471", "items": [("Sourdough loaf", 4.20), ("Cinnamon buns x2", 5.60),
                                                  ("Filter coffee", 2.10)], "tax": 0.95},
    {"file": "receipt-002.pdf", "merchant": "GREEN GROCER", "address": "17 High Street, Leeds",
     "date": datetime.date(2024, 3, 19), "date_format": "%Y-%m-%d", "time": "17:15", "payment": "cash",
     "paid": "Paid cash", "items": [("Apples 1 kg", 2.99), ("Milk 2 l", 1.89), ("Eggs (12)", 3.49),
                                     ("Rye bread", 2.25)], "tax": 0.0},
)
PAPER = {"file": "paper-001.pdf", "title": "Cheap Layout Cues for Routing Pages Between Document Models",
         "authors": ["Ana Lima", "Tomasz Nowak", "Grace Chen"],
         "affiliations": ["University of Porto", "Warsaw University of Technology"],
         "abstract": ("Large vision-language models read business documents well but are costly on whole "
                      "archives. We show that a page's layout cues predict which pages a small model reads "
                      "correctly, and route the rest to a large one."),
         "date": datetime.date(2024, 6, 3), "doi": "10.5555/pageray.2024.017"}
FORM = {"file": "form-001.pdf", "title": "Membership application",
        "fields": [("Full name", "Jane Q. Doe"), ("Date of birth", "14/07/1990"), ("Email", "jane.doe@example.org"),
                   ("Phone", None)],
        "boxes": [("Subscribe to newsletter", True), ("Accept photo policy", False)]}


def write_labeled_samples(folder: str | Path, schemas: tuple[str, ...] = SCHEMAS) -> dict[str, LabeledSet]:
    """Write the documents and labels of `schemas` under `folder`; returns them by schema name."""
    made = {}
    for schema in schemas:
        documents = Path(folder) / schema / "documents"
        documents.mkdir(parents=True, exist_ok=True)
        lines = []
        for name, pdf, labels in _DOCUMENTS[schema]():
            (documents / name).write_bytes(pdf)
            lines += [json.dumps({"source": name, "page_index": page, "fields": fields}, default=str)
                      for page, fields in enumerate(labels)]
        labels_path = Path(folder) / schema / "labels.jsonl"
        labels_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        made[schema] = LabeledSet(schema, documents, labels_path)
    return made


def _text(page, x, y, text, size=10, font="helv", align="left"):
    """Text with its baseline at y, starting at x (left), centred on x, or ending at x (right)."""
    width = pymupdf.get_text_length(text, fontname=font, fontsize=size)
    page.insert_text((x - {"left": 0, "centre": width / 2, "right": width}[align], y), text,
                     fontsize=size, fontname=font)


def _pdf(title: str, size: tuple[int, int], pages: int, draw) -> bytes:
    doc = pymupdf.open()
    doc.set_metadata({"title": title, "producer": "pageray labeled samples", "creationDate": "", "modDate": ""})
    for number in range(pages):
        draw(doc.new_page(width=size[0], height=size[1]), number)
    with doc:
        return doc.tobytes(garbage=3, deflate=True, no_new_id=True)


def _invoices():
    for inv in INVOICES:
        pages = inv["pages"]
        items = [i for page in pages for i in page]
        subtotal = round(sum(i["amount"] for i in items), 2)
        tax = round(subtotal * inv["tax"][1], 2)
        totals = {"subtotal": subtotal, "tax": tax, "total": round(subtotal + tax, 2)}
        vendor, address, tax_id = inv["vendor"]
        customer, customer_address = inv["customer"]

        def draw(page, n, inv=inv, totals=totals):
            _draw_invoice_page(page, n, inv, totals)

        labels = []
        for n, page_items in enumerate(pages):
            last = n == len(pages) - 1
            first = {"invoice_date": inv["date"], "due_date": inv["due"],
                     "vendor": {"name": vendor, "address": ", ".join(address), "tax_id": tax_id},
                     "customer": {"name": customer, "address": ", ".join(customer_address)}}
            later = {"invoice_date": None, "due_date": None,  # a continuation page prints only these
                     "vendor": {"name": vendor, "address": None, "tax_id": None}, "customer": None}
            labels.append({"invoice_number": inv["number"], **(first if n == 0 else later), "currency": inv["currency"],
                           "line_items": page_items,
                           **(totals if last else {"subtotal": None, "tax": None, "total": None})})
        yield inv["file"], _pdf(f"Invoice {inv['number']}", LETTER, len(pages), draw), labels


def _draw_invoice_page(page, n: int, inv: dict, totals: dict) -> None:
    vendor, address, tax_id = inv["vendor"]
    count, money = len(inv["pages"]), lambda v: f"{v:,.2f}"
    if n == 0:
        _text(page, 50, 60, vendor, 16, "hebo")
        for i, line in enumerate(address + [f"Tax ID: {tax_id}"]):
            _text(page, 50, 78 + 13 * i, line, 9)
        _text(page, 562, 60, "INVOICE", 20, "hebo", "right")
        when = lambda d: d.strftime(inv["date_format"]) if d else "Net 30"  # noqa: E731
        for i, (key, value) in enumerate((("Invoice no.", inv["number"]), ("Invoice date", when(inv["date"])),
                                          ("Due date", when(inv["due"])))):
            _text(page, 380, 100 + 15 * i, key)
            _text(page, 562, 100 + 15 * i, value, font="hebo", align="right")
        name, lines = inv["customer"]
        _text(page, 50, 150, "Bill to", font="hebo")
        for i, line in enumerate([name] + lines):
            _text(page, 50, 165 + 13 * i, line)
        top = 235
    else:
        _text(page, 50, 50, f"{vendor} - Invoice {inv['number']} (continued)", 10, "hebo")
        top = 80
    _text(page, 562, top - 10, f"Page {n + 1} of {count}. All amounts in {inv['currency']}", 8, align="right")
    page.draw_rect(pymupdf.Rect(50, top, 562, top + 20), color=None, fill=(0.86, 0.9, 0.95))
    columns = (56, 400, 480, 556)
    for x, head in zip(columns, ("Description", "Qty", "Unit price", "Amount")):
        _text(page, x, top + 14, head, font="hebo", align="left" if x == 56 else "right")
    y = top + 20
    for item in inv["pages"][n]:
        y += 20
        cells = (item["description"], f"{item['quantity']:g}", money(item["unit_price"]), money(item["amount"]))
        for x, cell in zip(columns, cells):
            _text(page, x, y - 6, cell, align="left" if x == 56 else "right")
        page.draw_line((50, y), (562, y), color=(0.7, 0.7, 0.7), width=0.5)
    if n < count - 1:
        _text(page, 556, y + 24, "Continued on next page", 9, align="right")
        return
    for i, (key, value) in enumerate((("Subtotal", totals["subtotal"]), (inv["tax"][0], totals["tax"]),
                                      (f"Total due ({inv['currency']})", totals["total"]))):
        _text(page, 380, y + 24 + 18 * i, key, font="hebo" if i == 2 else "helv")
        _text(page, 556, y + 24 + 18 * i, money(value), font="hebo" if i == 2 else "helv", align="right")


def _receipts():
    for rec in RECEIPTS:
        subtotal = round(sum(price for _, price in rec["items"]), 2)
        total = round(subtotal + rec["tax"], 2)

        def draw(page, _, rec=rec, subtotal=subtotal, total=total):
            mid = RECEIPT[0] / 2
            _text(page, mid, 40, rec["merchant"], 14, "hebo", "centre")
            _text(page, mid, 56, rec["address"], 8, align="centre")
            _text(page, 14, 80, f"{rec['date'].strftime(rec['date_format'])}  {rec['time']}", 8)
            y = 104
            for name, price in rec["items"]:
                _text(page, 14, y, name, 9)
                _text(page, 212, y, f"{price:.2f}", 9, align="right")
                y += 15
            page.draw_line((14, y - 6), (212, y - 6), color=(0, 0, 0), dashes="[2] 0", width=0.5)
            for key, value, font in (("Subtotal", subtotal, "helv"), ("Tax", rec["tax"], "helv"),
                                     ("TOTAL", total, "hebo")):
                y += 14
                _text(page, 14, y, key, 10, font)
                _text(page, 212, y, f"{value:.2f}", 10, font, "right")
            _text(page, 14, y + 22, rec["paid"], 8)
            _text(page, mid, y + 48, "Thank you!", 8, align="centre")

        label = {"merchant": rec["merchant"], "date": rec["date"], "time": rec["time"],
                 "items": [{"name": name, "price": price} for name, price in rec["items"]],
                 "subtotal": subtotal, "tax": rec["tax"], "total": total, "payment_method": rec["payment"]}
        yield rec["file"], _pdf(f"Receipt {rec['merchant']}", RECEIPT, 1, draw), [label]


def _paper():
    def draw(page, _):
        page.insert_textbox(pymupdf.Rect(60, 70, 535, 130), PAPER["title"], fontsize=18, fontname="hebo", align=1)
        _text(page, A4[0] / 2, 140, ", ".join(PAPER["authors"]), 11, align="centre")
        for i, line in enumerate(PAPER["affiliations"]):
            _text(page, A4[0] / 2, 156 + 12 * i, line, 9, "tiro", "centre")
        published = f"Published {PAPER['date'].day} {PAPER['date']:%B %Y}  |  https://doi.org/{PAPER['doi']}"
        _text(page, A4[0] / 2, 196, published, 8, align="centre")
        _text(page, A4[0] / 2, 226, "Abstract", 11, "hebo", "centre")
        page.insert_textbox(pymupdf.Rect(90, 236, 505, 330), PAPER["abstract"], fontsize=9.5, align=3)
        _text(page, 60, 360, "1  Introduction", 12, "hebo")

    label = {k: PAPER[k] for k in ("title", "authors", "affiliations", "abstract", "date", "doi")}
    yield PAPER["file"], _pdf(PAPER["title"], A4, 1, draw), [label]


def _form():
    def draw(page, _):
        _text(page, 50, 70, FORM["title"], 18, "hebo")
        y = 110
        for key, value in FORM["fields"]:
            _text(page, 50, y, f"{key}:", 11)
            page.draw_line((170, y + 3), (540, y + 3), color=(0.5, 0.5, 0.5), width=0.5)
            if value:
                _text(page, 176, y, value, 12, "tiro")
            y += 30
        for key, checked in FORM["boxes"]:
            box = pymupdf.Rect(50, y - 10, 62, y + 2)
            page.draw_rect(box, color=(0, 0, 0), width=0.8)
            if checked:
                page.draw_line(box.tl, box.br, width=1.2)
                page.draw_line(box.tr, box.bl, width=1.2)
            _text(page, 70, y, key, 11)
            y += 24

    fields = [{"key": k, "value": v} for k, v in FORM["fields"]]
    fields += [{"key": k, "value": "checked" if on else "unchecked"} for k, on in FORM["boxes"]]
    yield FORM["file"], _pdf(FORM["title"], LETTER, 1, draw), [{"fields": fields}]


_DOCUMENTS = {"invoice": _invoices, "receipt": _receipts, "paper": _paper, "form": _form}
