"""The normalized JSON Schema that constrains generation, and its validation twin.

Contract (consumed by the xgrammar compiler and by the partial-JSON completer; keep exact):

- object: {"type": "object", "properties": {...in the user's order...},
           "required": [every property name, same order], "additionalProperties": false}
- array:  {"type": "array", "items": <normalized>}
- string: {"type": "string"} with the user's minLength/maxLength or pattern, or format email,
          uri or uuid; date, date-time, time: {"type": "string", "pattern": DATE_PATTERN} (or
          DATETIME_PATTERN, TIME_PATTERN)
- enum:   {"enum": [values without null]}
- number / integer: {"type": "number"} etc. with the user's minimum/maximum/exclusive*;
  boolean: {"type": "boolean"}; arrays keep minItems/maxItems
- nullable X (explicitly nullable, or not in the user's `required`):
          {"anyOf": [X, {"type": "null"}]}

Every key is required so the model always writes every column; a field the user did not
require becomes nullable instead of omittable. Descriptions, titles, examples and defaults are
dropped: they belong to the prompt, and the grammar would only grow from them. Dates and times
use our patterns rather than xgrammar's formats, which admit values no timestamp holds.
"""
from __future__ import annotations

from typing import Any, Mapping

from pageray.schemas.model import ExtractionSchema
from pageray.schemas.nodes import enum_values, explicitly_nullable, iter_properties, node_kind, \
    property_nullable
from pageray.schemas.constraints import ITEMS, LENGTHS, NUMERIC
from pageray.schemas.patterns import DATE_PATTERN, DATETIME_PATTERN, TIME_PATTERN

_NULL = {"type": "null"}
_PATTERNS = {"date": DATE_PATTERN, "datetime": DATETIME_PATTERN, "time": TIME_PATTERN}
_KEPT = {"string": LENGTHS + ("pattern", "format"), "number": NUMERIC, "integer": NUMERIC,
         "array": ITEMS}


def generation_schema(schema: ExtractionSchema) -> dict[str, Any]:
    """The schema the decoder is constrained by: every key present, optional ones nullable."""
    return _normalize(schema.json_schema, nullable=False, all_keys_required=True)


def validation_schema(schema: ExtractionSchema) -> dict[str, Any]:
    """`generation_schema`, except each `required` lists only the user's required fields.

    Output that reaches validation may lack keys (a truncated answer closed by the partial-JSON
    completer); an optional key that is missing reads as null, a required one is an error.
    """
    return _normalize(schema.json_schema, nullable=False, all_keys_required=False)


def _normalize(node: Mapping[str, Any], *, nullable: bool,
               all_keys_required: bool) -> dict[str, Any]:
    kind = node_kind(node)
    if kind == "object":
        properties = {}
        required = []
        for name, child, user_required in iter_properties(node):
            properties[name] = _normalize(child, nullable=property_nullable(child, user_required),
                                          all_keys_required=all_keys_required)
            if all_keys_required or user_required:
                required.append(name)
        out: dict[str, Any] = {"type": "object", "properties": properties,
                               "required": required, "additionalProperties": False}
    elif kind == "array":
        items = node["items"]
        out = {"type": "array", "items": _normalize(
            items, nullable=explicitly_nullable(items), all_keys_required=all_keys_required)}
    elif kind == "enum":
        out = {"enum": enum_values(node)}
    elif kind in _PATTERNS:
        out = {"type": "string", "pattern": _PATTERNS[kind]}
    else:
        out = {"type": kind}
    out.update((key, node[key]) for key in _KEPT.get(kind, ()) if key in node)
    return {"anyOf": [out, dict(_NULL)]} if nullable else out
