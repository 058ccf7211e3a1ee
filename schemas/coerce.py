"""Checking a model answer against its schema and turning it into an Arrow-ready value.

Validation uses the reference `jsonschema` implementation on the normalized schema (the same
shape the grammar was compiled from), so "valid" means the same thing at generation time and
here. Its messages are rewritten to name the field path, and to stay short: instances can be
long page text, and the date regex is unreadable.
"""
from __future__ import annotations

import json
from typing import Any

import jsonschema

from pageray.schemas.arrow import to_arrow_value
from pageray.schemas.generation import validation_schema
from pageray.schemas.model import ExtractionSchema
from pageray.schemas.patterns import DATE_PATTERN, DATETIME_PATTERN, TIME_PATTERN

MAX_SHOWN_CHARS = 60
MAX_ERRORS = 20
_PATTERN_NAMES = {DATE_PATTERN: "a calendar date YYYY-MM-DD",
                  DATETIME_PATTERN: "a date-time YYYY-MM-DDTHH:MM[:SS] with an optional offset",
                  TIME_PATTERN: "a time HH:MM[:SS]"}


def coerce(schema: ExtractionSchema, value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """(value for `pa.array([...], type=arrow_type(schema))`, []) or (None, errors).

    Dates become `datetime.date`, integers int, numbers float; missing optional keys None.
    Each error names the field path, e.g. "field 'line_items[2].amount': expected number, ...".
    """
    if not isinstance(value, dict):
        return None, [f"the answer must be one JSON object, got {_show(value)}"]
    # Formats (email, uri, uuid) are checked as well as the grammar enforced them.
    validator = jsonschema.Draft202012Validator(
        validation_schema(schema), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = error_messages(validator, value)
    if errors:
        return None, errors
    converted, errors = to_arrow_value(schema.json_schema, value)
    return (None, errors) if errors else (converted, [])


def error_messages(validator: jsonschema.protocols.Validator, value: Any) -> list[str]:
    """Why `validator` refuses `value`: at most MAX_ERRORS short messages, each naming its field."""
    errors: list[str] = []
    for error in validator.iter_errors(value):
        for message in _messages(error):
            if message not in errors:
                errors.append(message)
        if len(errors) >= MAX_ERRORS:
            break
    return errors[:MAX_ERRORS]


def _messages(error: jsonschema.ValidationError, or_null: str = "") -> list[str]:
    where = _where(error.absolute_path)
    if error.validator == "anyOf":
        # Nullable fields are anyOf [X, null]; why X failed is the useful part.
        inner = [e for e in error.context or () if e.relative_schema_path[0] == 0]
        if inner:
            # "or null" only for the nullable value itself, not for fields nested inside it.
            return [m for e in inner for m in _messages(e, or_null="" if e.path else " or null")]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [f"field '{_join(error.absolute_path, k)}': required but missing"
                for k in missing]
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in known]
        return [f"field '{_join(error.absolute_path, k)}': not in the schema; remove it"
                for k in extra]
    if error.validator == "type":
        expected = error.validator_value
    elif error.validator == "pattern":
        expected = _PATTERN_NAMES.get(error.validator_value) or \
            f"text matching {_clip(error.validator_value)}"
    elif error.validator == "enum":
        expected = "one of " + _clip(
            ", ".join(json.dumps(v, ensure_ascii=False) for v in error.validator_value))
    else:
        return [f"{where}: {_clip(error.message)}"]
    return [f"{where}: expected {expected}{or_null}, got {_show(error.instance)}"]


def _where(path: Any) -> str:
    spelled = _spell(path)
    return f"field '{spelled}'" if spelled else "the answer"


def _join(path: Any, key: str) -> str:
    spelled = _spell(path)
    return f"{spelled}.{key}" if spelled else key


def _spell(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    if isinstance(value, str):
        value = value[:MAX_SHOWN_CHARS]
    return f"{kind} {_clip(json.dumps(value, ensure_ascii=False, default=repr))}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."
