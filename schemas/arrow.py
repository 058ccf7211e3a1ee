"""The Arrow type of a schema's fields, and turning validated JSON into values of that type.

Every Arrow field is nullable, required ones included: a row whose generation failed still
has a `fields` column (all null), and one Parquet schema must hold both kinds of rows.
date-time is a UTC timestamp (microseconds; a value written without an offset is read as UTC),
time a time64 of microseconds, and an integer whose range fits in 32 bits an int32.
"""
from __future__ import annotations

import datetime
import math
from typing import Any, Mapping

import pyarrow as pa

from pageray.schemas.model import ExtractionSchema
from pageray.schemas.nodes import child_path, enum_is_text, iter_properties, node_kind

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_SCALARS = {
    "string": pa.string(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
}


def arrow_type(schema: ExtractionSchema) -> pa.StructType:
    """struct<...> of the schema's fields, in the user's property order."""
    return _arrow(schema.json_schema)


def _arrow(node: Mapping[str, Any]) -> pa.DataType:
    kind = node_kind(node)
    if kind == "object":
        return pa.struct([pa.field(name, _arrow(child), nullable=True)
                          for name, child, _ in iter_properties(node)])
    if kind == "array":
        return pa.list_(pa.field("item", _arrow(node["items"]), nullable=True))
    if kind == "enum":
        return pa.string() if enum_is_text(node) else pa.float64()
    if kind == "integer" and _fits_int32(node):
        return pa.int32()
    return _SCALARS[kind]


def _fits_int32(node: Mapping[str, Any]) -> bool:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    return low is not None and high is not None and INT32_MIN <= low and high <= INT32_MAX


def to_arrow_value(node: Mapping[str, Any], value: Any, path: str = "") -> tuple[Any, list[str]]:
    """`value` (already valid JSON for `node`) as Python values `pa.array` accepts for its type.

    Returns (converted, errors). Errors cover what JSON-Schema validation cannot see: dates
    that only the regex checked, integers beyond int64, numbers that overflowed to infinity.
    Missing object keys become None.
    """
    if value is None:
        return None, []
    kind = node_kind(node)
    if kind == "object":
        out, errors = {}, []
        for name, child, _ in iter_properties(node):
            out[name], child_errors = to_arrow_value(child, value.get(name),
                                                     child_path(path, name))
            errors += child_errors
        return out, errors
    if kind == "array":
        out_list, errors = [], []
        for index, element in enumerate(value):
            converted, element_errors = to_arrow_value(node["items"], element,
                                                       f"{path}[{index}]")
            out_list.append(converted)
            errors += element_errors
        return out_list, errors
    if kind == "date":
        return _to_date(value, path)
    if kind in ("datetime", "time"):
        return _to_clock(kind, value, path)
    if kind == "integer":
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            return None, [f"field '{path}': the integer does not fit in 64 bits"]
        return number, []
    if kind == "number" or (kind == "enum" and not enum_is_text(node)):
        return _to_float(value, path)
    return value, []


def _to_float(value: int | float, path: str) -> tuple[float | None, list[str]]:
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        return None, [f"field '{path}': the number is too large for a 64-bit float"]
    return number, []


def _to_date(text: str, path: str) -> tuple[datetime.date | None, list[str]]:
    # The regex is anchored with `$`, which also matches before a trailing newline, and
    # fromisoformat accepts other ISO spellings; exactly YYYY-MM-DD is checked here.
    try:
        if len(text) != 10:
            raise ValueError(text)
        return datetime.date.fromisoformat(text), []
    except ValueError:
        return None, [f"field '{path}': {text!r} is not a calendar date written YYYY-MM-DD"]


def _to_clock(kind: str, text: str, path: str) -> tuple[Any, list[str]]:
    # The generation patterns admit only values these parse; a hand-fed value may not be one.
    try:
        if kind == "time":
            return datetime.time.fromisoformat(text), []
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return stamp.astimezone(datetime.timezone.utc), []
    except ValueError:
        spelled = "HH:MM:SS" if kind == "time" else "YYYY-MM-DDTHH:MM:SS with an optional offset"
        return None, [f"field '{path}': {text!r} is not a {kind.replace('datetime', 'date-time')} "
                      f"written {spelled}"]
