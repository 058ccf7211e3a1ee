"""Coercing model answers: validation against the schema, errors that name the field path,
and values ready for `pa.array(..., type=arrow_type(schema))`."""
from __future__ import annotations

import copy
import datetime

import pyarrow as pa
import pytest

from pageray.schemas import ExtractionSchema, arrow_type, coerce, load_schema


def make(properties: dict) -> ExtractionSchema:
    return ExtractionSchema(name="t", version="1", description="Test.",
                            json_schema={"type": "object", "properties": properties})


def field(type_, **kw) -> dict:
    return {"type": type_, "description": "A field.", **kw}


INVOICE_ANSWER = {
    "invoice_number": "INV-7", "invoice_date": "2024-02-29", "due_date": None,
    "vendor": {"name": "ACME", "address": None, "tax_id": "DE123"}, "customer": None,
    "currency": "EUR",
    "line_items": [{"description": "Bolts", "quantity": 3, "unit_price": 0.5, "amount": 1.5}],
    "subtotal": 1.5, "tax": 0, "total": 1.79,
}


def test_coerce_round_trips_a_valid_answer_into_arrow():
    schema = load_schema("invoice")
    value, errors = coerce(schema, copy.deepcopy(INVOICE_ANSWER))
    assert errors == []
    assert value["invoice_date"] == datetime.date(2024, 2, 29)
    assert value["total"] == 1.79 and isinstance(value["tax"], float)
    assert isinstance(value["line_items"][0]["quantity"], float)
    row = pa.array([value], type=arrow_type(schema)).to_pylist()[0]
    assert row["vendor"]["tax_id"] == "DE123" and row["customer"] is None


def test_coerce_fills_missing_optional_keys_with_none():
    value, errors = coerce(load_schema("invoice"), {"line_items": [], "total": 5})
    assert errors == [] and value["invoice_number"] is None and value["total"] == 5.0
    assert list(value) == list(INVOICE_ANSWER)


def test_coerce_integers_stay_integers():
    schema = make({"n": field("integer")})
    assert coerce(schema, {"n": 3}) == ({"n": 3}, [])
    value, errors = coerce(schema, {"n": 2**70})
    assert value is None and "field 'n'" in errors[0] and "64 bits" in errors[0]


@pytest.mark.parametrize("change, message", [
    ({"line_items": [{"description": "x", "amount": "1.50"}]},
     "field 'line_items[0].amount': expected number or null, got string \"1.50\""),
    ({"invoice_date": "2023-02-29"}, "field 'invoice_date': expected a calendar date"),
    ({"invoice_date": "2024-02-29\n"}, "field 'invoice_date'"),
    ({"total": None}, "field 'total': expected number, got null"),
    ({"note": "hi"}, "field 'note': not in the schema"),
    ({"vendor": {"name": "A", "fax": "1"}}, "field 'vendor.fax': not in the schema"),
    ({"line_items": [{"description": 7}]},
     "field 'line_items[0].description': expected string, got integer 7"),
    ({"line_items": [{"amount": 1}]}, "field 'line_items[0].description': required"),
])
def test_coerce_rejects_invalid_answers_naming_the_path(change, message):
    value, errors = coerce(load_schema("invoice"), {**INVOICE_ANSWER, **change})
    assert value is None
    assert any(message in e for e in errors), errors


def test_coerce_reports_missing_required_and_non_objects():
    assert coerce(load_schema("invoice"), {"line_items": []})[1] == [
        "field 'total': required but missing"]
    value, errors = coerce(load_schema("invoice"), [1, 2])
    assert value is None and "one JSON object" in errors[0]


def test_coerce_keeps_messages_short_for_long_text():
    _, errors = coerce(make({"n": field("number")}), {"n": "x" * 10_000})
    assert len(errors[0]) < 200


def test_constrained_fields_get_their_arrow_types_and_are_checked():
    schema = make({"at": field("string", format="date-time"), "opens": field("string", format="time"),
                   "qty": field("integer", minimum=1, maximum=1000), "big": field("integer", minimum=0),
                   "ref": field("string", format="uuid"), "code": field("string", pattern="^[A-Z]{2}$"),
                   "tags": field("array", items=field("string", maxLength=3), minItems=1)})
    struct = arrow_type(schema)
    assert struct.field("at").type == pa.timestamp("us", tz="UTC")
    assert struct.field("opens").type == pa.time64("us")
    assert struct.field("qty").type == pa.int32() and struct.field("big").type == pa.int64()
    answer = {"at": "2024-03-01T14:30:00+02:00", "opens": "08:15", "qty": 7, "big": 2**40,
              "ref": "123e4567-e89b-12d3-a456-426614174000", "code": "DE", "tags": ["a"]}
    value, errors = coerce(schema, answer)
    assert errors == []
    assert value["at"] == datetime.datetime(2024, 3, 1, 12, 30, tzinfo=datetime.timezone.utc)
    assert value["opens"] == datetime.time(8, 15)
    pa.array([value], type=struct)  # the converted value fits the type
    naive, _ = coerce(schema, {**answer, "at": "2024-03-01T14:30"})
    assert naive["at"] == datetime.datetime(2024, 3, 1, 14, 30, tzinfo=datetime.timezone.utc)
    _, errors = coerce(schema, {**answer, "qty": 0, "code": "de", "ref": "nope", "tags": []})
    assert any(e.startswith("field 'qty': ") and "minimum" in e for e in errors)
    assert "field 'code': expected text matching ^[A-Z]{2}$ or null, got string \"de\"" in errors
    assert any(e.startswith("field 'ref': ") and "uuid" in e for e in errors)
    assert any(e.startswith("field 'tags': ") for e in errors)
