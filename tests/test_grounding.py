"""Grounding extracted values in the page's text layer: normalisation, numbers in both decimal
conventions, dates in several spellings, fuzzy strings, and the row columns."""
from __future__ import annotations

import datetime

import pytest

from pageray.extractors.grounding import dates_in, ground, normalize, numbers_in, PageText
from schema_builders import I, N, S, arr, obj

PAGE = """ACME GmbH – Rechnung Nr. RE-2024/117
Datum: 03.02.2024   Fällig: March 5, 2024
Pos  Beschreibung        Menge   Betrag
1    Schrauben M6          12    1.234,50 €
2    Muttern                3      $99.95
Zwischensumme: 1 334,45   Total (EUR): 1,334.45   Rabatt: (10.00)
Öffnungszeiten 8:15–17:00   Ident: ﬁle-№ 42
"""


def test_normalize_folds_case_width_ligatures_and_hyphenation():
    assert normalize("ＡＣＭＥ  Gmb\u00adH\nﬁle") == "acme gmbh file"
    assert normalize("Schrau-\n ben") == "schrauben"


@pytest.mark.parametrize("value", [1234.5, 99.95, 1334.45, 12, 3, 117, 2024, 42, -10.0])
def test_numbers_are_read_in_both_conventions(value):
    assert any(abs(n - value) < 1e-9 for n in numbers_in(normalize(PAGE)))


def test_numbers_not_on_the_page_are_not_found():
    numbers = numbers_in(normalize(PAGE))
    assert 1234.0 not in numbers and 13.0 not in numbers and 999.5 not in numbers


def test_dates_in_several_spellings():
    found = dates_in(normalize(PAGE + " 2024-12-31  7/4/2023  1 Jan. 2025"))
    assert {datetime.date(2024, 2, 3), datetime.date(2024, 3, 5), datetime.date(2024, 12, 31),
            datetime.date(2023, 7, 4), datetime.date(2023, 4, 7), datetime.date(2025, 1, 1)} <= found
    assert datetime.date(2024, 3, 2) in found  # 03.02.2024 read as M/D/Y too: both are kept
    assert not dates_in("31.02.2024 and 12/13/99")


def test_text_is_found_exactly_or_fuzzily_but_not_anything():
    page = PageText(PAGE)
    assert page.has_text("acme gmbh") and page.has_text("Schrauben  M6")
    assert page.has_text("Schrauben M7")  # one character off in a longer value: fuzzy
    assert page.has_text("Rechnung Nr. RE-2024/117")
    assert not page.has_text("Globex Corporation") and not page.has_text("M7")


D = {"type": "string", "format": "date"}  # as the user's schema has it (not the generation form)
SCHEMA = obj(vendor=S, number=S, date=D, due={**D, "type": ["string", "null"]}, total=N,
             items=arr(obj(name=S, qty=I, amount=N)), paid={"type": ["boolean", "null"]})


def test_a_row_gets_its_grounded_fraction_and_the_paths_not_found():
    fields = {"vendor": "ACME GmbH", "number": "RE-2024/117", "date": datetime.date(2024, 2, 3),
              "due": datetime.date(2024, 4, 1), "total": 1334.45, "paid": True,
              "items": [{"name": "Schrauben M6", "qty": 12, "amount": 1234.5},
                        {"name": "Muttern", "qty": 3, "amount": 99.0}]}
    out = ground(SCHEMA, fields, PAGE)
    assert out["ungrounded_fields"] == ["due", "items[1].amount"]
    assert out["grounded_fraction"] == pytest.approx(9 / 11)  # booleans are not checked


def test_no_text_layer_is_null_not_ungrounded():
    assert ground(SCHEMA, {"vendor": "x"}, None) == {"grounded_fraction": None, "ungrounded_fields": None}
    assert ground(SCHEMA, {"vendor": "x"}, "  \n ") == {"grounded_fraction": None, "ungrounded_fields": None}
    assert ground(SCHEMA, None, PAGE)["grounded_fraction"] is None  # an error row
    nothing = {k: None for k in ("vendor", "number", "date", "due", "total", "paid")} | {"items": []}
    assert ground(SCHEMA, nothing, PAGE) == {"grounded_fraction": None, "ungrounded_fields": []}
