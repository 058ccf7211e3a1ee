"""Comparing one labeled leaf with one predicted leaf: exact, normalised, ANLS and similarity.

Why a module of its own: every score of `pageray eval` (per-field accuracies, P/R/F1, JSON
accuracy, and the item alignment of list fields) is built from these four comparisons, so what
"the same value" means is decided once, here, and the scoring module only counts.

A leaf's kind comes from the Arrow type of the output's `fields` column (the schema the rows were
written with), not from the JSON it was labeled in:

  exact       the values are equal as typed: strings byte for byte, numbers `==`, dates and
              times equal, null only against null.
  normalized  equal after normalisation. Strings: Unicode NFKC, case-folded, runs of whitespace
              made one space, trimmed; an empty string is null. Two strings that both read as
              numbers ("1,234.50", "$1234.5") or both as dates ("18 March 2024", "2024-03-18")
              compare as numbers or dates. Numbers: |p - e| <= 0.005 + 1e-6 |e| (cents, and a
              relative margin for large amounts). Dates: as dates, whatever the format a string
              gives them in. Times: to the second. Booleans: also "yes"/"no", "true"/"false".
  anls        for strings only: the normalised Levenshtein similarity of the normalised strings
              (rapidfuzz), 0 when the normalised distance is 0.5 or more (DocVQA's ANLS with
              threshold 0.5); 1 for null against null, 0 for null against a value.
  similarity  what item alignment maximises (pipeline.evaluation.matching): for strings the
              similarity above without the threshold (1 when normalised-equal), for other kinds
              1 or 0 by normalised equality.
"""
from __future__ import annotations

import datetime
import math
import re
import unicodedata
from typing import Any

import pyarrow as pa
from rapidfuzz.distance import Levenshtein

ABS_TOLERANCE = 0.005  # half a cent: amounts printed to two places compare equal
REL_TOLERANCE = 1e-6
ANLS_THRESHOLD = 0.5
SCALAR_KINDS = ("string", "number", "boolean", "date", "time", "datetime")

_SPACE = re.compile(r"\s+")
_CODES = "USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|CNY|INR|SEK|NOK|DKK|PLN|CZK|HKD|SGD"
_CURRENCY = re.compile(rf"^(?:{_CODES})\s*|\s*(?:{_CODES})$|[$€£¥₹]", re.IGNORECASE)
_DIGIT_GROUP = re.compile(r"(?<=\d)[ \u00a0\u202f'](?=\d{3}\b)")
_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$")
_ORDINAL = re.compile(r"(?<=\d)(st|nd|rd|th)\b", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d.%m.%Y", "%d %B %Y", "%d %b %Y", "%B %d, %Y",
                 "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d-%b-%Y", "%d %b. %Y", "%b. %d, %Y")
_TRUE, _FALSE = {"true", "yes", "y", "1", "checked", "x"}, {"false", "no", "n", "0", "unchecked", ""}


def kind_of(arrow: pa.DataType) -> str:
    """The comparison kind of an Arrow type: object, list or one of SCALAR_KINDS."""
    if pa.types.is_struct(arrow):
        return "object"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return "list"
    if pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return "number"
    for kind, test in (("boolean", pa.types.is_boolean), ("date", pa.types.is_date),
                       ("datetime", pa.types.is_timestamp), ("time", pa.types.is_time)):
        if test(arrow):
            return kind
    return "string"  # strings, and anything else compared by its text


def text(value: Any) -> str | None:
    """A string as normalisation sees it; None for null and for an empty or blank string."""
    if value is None:
        return None
    folded = _SPACE.sub(" ", unicodedata.normalize("NFKC", str(value))).strip().casefold()
    return folded or None


def to_number(value: Any) -> float | None:
    """A number, or a string that reads as one ("1,234.50", "EUR 12", "(3.00)"); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    raw = unicodedata.normalize("NFKC", str(value)).strip().replace("\u2212", "-")
    negative = raw.startswith("(") and raw.endswith(")")  # accounting negatives
    raw = _DIGIT_GROUP.sub("", _CURRENCY.sub("", raw.strip("()")).strip())
    if not any(c.isdigit() for c in raw) or not _NUMBER.match(raw):
        return None
    number = float(raw.replace(",", ""))
    return -number if negative else number


def to_date(value: Any) -> datetime.date | None:
    """A date, or a string in one of the common formats (ISO first); else None."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if not isinstance(value, str):
        return None
    raw = _ORDINAL.sub("", _SPACE.sub(" ", value.strip()))
    try:
        return datetime.date.fromisoformat(raw[:10]) if len(raw) >= 10 and raw[4] == "-" else _strptime(raw)
    except ValueError:
        return _strptime(raw)


def _strptime(raw: str) -> datetime.date | None:
    for form in _DATE_FORMATS:
        try:
            return datetime.datetime.strptime(raw, form).date()
        except ValueError:
            continue
    return None


def to_time(value: Any) -> datetime.time | None:
    if isinstance(value, datetime.time):
        return value.replace(microsecond=0, tzinfo=None)
    try:
        return datetime.time.fromisoformat(str(value).strip()).replace(microsecond=0, tzinfo=None)
    except ValueError:
        return None


def to_datetime(value: Any) -> datetime.datetime | None:
    """An aware UTC instant to the second; a value without an offset is UTC (as schemas.arrow)."""
    try:
        moment = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0)


def to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    folded = text(value) or ""
    return True if folded in _TRUE else False if folded in _FALSE else None


def numbers_close(expected: float, predicted: float) -> bool:
    return abs(predicted - expected) <= ABS_TOLERANCE + REL_TOLERANCE * abs(expected)


def exact(kind: str, expected: Any, predicted: Any) -> bool:
    if expected is None or predicted is None:
        return expected is None and predicted is None
    if kind == "number":
        return not isinstance(predicted, (bool, str)) and float(expected) == float(predicted)
    return type(expected) is type(predicted) and expected == predicted


def normalized(kind: str, expected: Any, predicted: Any) -> bool:
    if kind == "string":
        e, p = text(expected), text(predicted)
        if e is None or p is None or e == p:
            return e == p
        en, pn = to_number(expected), to_number(predicted)
        if en is not None and pn is not None:
            return numbers_close(en, pn)
        ed, pd = to_date(expected), to_date(predicted)
        return ed is not None and ed == pd
    if expected is None or predicted is None or (isinstance(predicted, str) and text(predicted) is None):
        return (expected is None) and (predicted is None or text(predicted) is None)
    if kind == "number":
        e, p = to_number(expected), to_number(predicted)
        return e is not None and p is not None and numbers_close(e, p)
    convert = {"date": to_date, "time": to_time, "datetime": to_datetime, "boolean": to_bool}.get(kind, text)
    e = convert(expected)
    return e is not None and e == convert(predicted)


def anls(expected: Any, predicted: Any) -> float:
    e, p = text(expected), text(predicted)
    if e is None or p is None:
        return float(e is None and p is None)
    distance = Levenshtein.normalized_distance(e, p)
    return 1.0 - distance if distance < ANLS_THRESHOLD else 0.0


def similarity(kind: str, expected: Any, predicted: Any) -> float:
    """How alike two leaves are, in [0, 1], for aligning list items."""
    if normalized(kind, expected, predicted):
        return 1.0
    if kind == "string":
        e, p = text(expected), text(predicted)
        return Levenshtein.normalized_similarity(e, p) if e is not None and p is not None else 0.0
    return 0.0
