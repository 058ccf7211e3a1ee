"""One generation -> the page row's answer columns: parsed, mended, checked against the user's
schema and typed (`schemas.answer.AnswerReader`), with the status that says what happened.

A pure function of the generation (`decoding.rows.RowResult`), so each outcome (valid, invalid
JSON, invalid under the schema, closed early at the time limit) is tested without a model.
"""
from __future__ import annotations

import json
from typing import Any

from pageray.extractors.decoding.rows import RowResult
from pageray.pipeline.datamodel import Status
from pageray.pipeline.errors import describe
from pageray.schemas.answer import AnswerReader


def clean_text(value: Any) -> Any:
    """Lone surrogates (a model may write "\\ud800") would fail Parquet's UTF-8: replace them."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    if isinstance(value, dict):
        return {k: clean_text(v) for k, v in value.items()}
    return value


def answer_fields(res: RowResult, answers: AnswerReader, page_time_limit_s: float) -> dict:
    """raw_text, truncated, status, valid, error and the typed `fields` of one generation."""
    out = {"raw_text": res.text, "truncated": res.truncated}
    try:
        # strict=False: xgrammar writes length-limited strings raw, control characters too.
        value = clean_text(json.loads(res.text, strict=False))
    except ValueError as exc:
        return {**out, "status": Status.INVALID_OUTPUT.value, "valid": False, "error": describe(exc)}
    answer = answers(value, res.text)
    if not answer["valid"]:
        return {**out, **answer, "status": Status.INVALID_OUTPUT.value}
    if res.timed_out:
        error = f"generation time limit reached (--page-time-limit {page_time_limit_s:g} s); " \
            "output closed early as the shortest valid JSON"
        return {**out, **answer, "status": Status.GENERATION_TIMEOUT.value, "error": error}
    return {**out, **answer, "status": Status.OK.value, "error": None}
