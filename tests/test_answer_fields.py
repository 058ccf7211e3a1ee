"""A generation -> the row's answer columns (extractors.answer_fields), without a model."""
from __future__ import annotations

from pydantic import BaseModel

from pageray.extractors.answer_fields import answer_fields, clean_text
from pageray.extractors.decoding.rows import RowResult
from pageray.schemas import load_schema
from pageray.schemas.answer import AnswerReader


class Receipt(BaseModel):
    """A till receipt."""

    shop: str
    total: float


READER = AnswerReader(load_schema(Receipt))


def result(text: str, timed_out: bool = False) -> RowResult:
    return RowResult(text=text, truncated=timed_out, timed_out=timed_out, output_tokens=9, confidence=None)


def test_a_valid_answer_is_ok_and_typed():
    row = answer_fields(result('{"shop": "Kiosk", "total": 4.5}'), READER, 30)
    assert (row["status"], row["valid"], row["error"]) == ("ok", True, None)
    assert Receipt(**row["fields"]) == Receipt(shop="Kiosk", total=4.5)


def test_text_that_is_not_json_is_invalid_output_with_the_parsers_message():
    row = answer_fields(result('{"shop": "Kio'), READER, 30)
    assert (row["status"], row["valid"], row["raw_text"]) == ("invalid_output", False, '{"shop": "Kio')
    assert "Unterminated string" in row["error"]


def test_json_the_users_schema_refuses_is_invalid_output():
    row = answer_fields(result('{"shop": "Kiosk", "total": "a lot"}'), READER, 30)
    assert (row["status"], row["valid"]) == ("invalid_output", False)
    assert row["error"]


def test_an_answer_closed_at_the_time_limit_says_so_and_names_the_flag():
    row = answer_fields(result('{"shop": "", "total": 0}', timed_out=True), READER, 12.5)
    assert (row["status"], row["valid"], row["truncated"]) == ("generation_timeout", True, True)
    assert "--page-time-limit 12.5 s" in row["error"]


def test_lone_surrogates_are_replaced_at_any_depth():
    cleaned = clean_text({"a": ["\ud800x", {"b": "ok"}]})
    assert cleaned == {"a": ["\ufffd\ufffd\ufffdx", {"b": "ok"}]}  # one per byte of its UTF-8 form
    cleaned["a"][0].encode("utf-8")  # what Parquet's writer needs
