"""Reading one node of an already validated field schema: its kind, nullability and children.

Generation, Arrow typing, coercion and the prompt all walk the same user schema; they share
these readers so that "what is a nullable date?" has one answer. The readers assume the node
passed `schemas.validate`, so they do not re-check shapes.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

# Kinds a node can have after validation; "date", "datetime" and "time" are strings with that
# format, and "enum" is any node with an enum, whatever its declared type.
KINDS = ("object", "array", "enum", "string", "date", "datetime", "time", "number", "integer",
         "boolean")
_FORMAT_KINDS = {"date": "date", "date-time": "datetime", "time": "time"}


def base_type(node: Mapping[str, Any]) -> str | None:
    """The declared type without "null" (None for a bare enum)."""
    declared = node.get("type")
    if isinstance(declared, list):
        return next(t for t in declared if t != "null")
    return declared


def node_kind(node: Mapping[str, Any]) -> str:
    """One of KINDS."""
    if "enum" in node:
        return "enum"
    declared = base_type(node)
    if declared == "string" and node.get("format") in _FORMAT_KINDS:
        return _FORMAT_KINDS[node["format"]]
    return declared


def explicitly_nullable(node: Mapping[str, Any]) -> bool:
    """Nullable by the node itself: type [X, "null"], OpenAPI nullable: true, or null in enum."""
    declared = node.get("type")
    return (
        node.get("nullable") is True
        or (isinstance(declared, list) and "null" in declared)
        or None in node.get("enum", ())
    )


def enum_values(node: Mapping[str, Any]) -> list[Any]:
    """The enum's values without null (null is expressed as nullability instead)."""
    return [v for v in node["enum"] if v is not None]


def enum_is_text(node: Mapping[str, Any]) -> bool:
    """Whether an enum holds strings (validation guarantees all-strings or all-numbers)."""
    return all(isinstance(v, str) for v in enum_values(node))


def iter_properties(node: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(name, child, listed in the user's `required`) for each property, in the user's order."""
    required = set(node.get("required", ()))
    for name, child in node["properties"].items():
        yield name, child, name in required


def property_nullable(child: Mapping[str, Any], required: bool) -> bool:
    """A property may be null when it says so, or when the user did not require it.

    Generation emits every key (so the output always has every column); an optional field
    therefore becomes "present but null" rather than "absent".
    """
    return explicitly_nullable(child) or not required


def child_path(parent: str, name: str) -> str:
    """Field path of a property, e.g. "vendor.name"."""
    return f"{parent}.{name}" if parent else name


def item_path(parent: str) -> str:
    """Field path of an array's elements, e.g. "line_items[]"."""
    return f"{parent}[]"


def type_label(node: Mapping[str, Any]) -> str:
    """Short human name of a node's type, for the prompt and the CLI summary."""
    kind = node_kind(node)
    if kind == "array":
        counts = ", ".join(_constraint_labels(node))
        return f"list of {type_label(node['items'])}" + (f" ({counts})" if counts else "")
    if kind == "enum":
        return "one of " + ", ".join(_literal(v) for v in enum_values(node))
    if kind == "date":
        return "date YYYY-MM-DD"
    if kind == "datetime":
        return "date-time YYYY-MM-DDTHH:MM:SS"
    if kind == "time":
        return "time HH:MM:SS"
    return " ".join([kind, *_constraint_labels(node)])


def _constraint_labels(node: Mapping[str, Any]) -> list[str]:
    labels = []
    if node.get("format") in ("email", "uri", "uuid"):
        labels.append(f"({node['format']})")
    if "pattern" in node:
        labels.append(f"matching {node['pattern']}")
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<")):
        if key in node:
            labels.append(f"{word} {_literal(node[key])}")
    for low, high, unit in (("minLength", "maxLength", "characters"),
                            ("minItems", "maxItems", "items")):
        if low in node or high in node:
            labels.append(f"{node.get(low, 0)}-{node[high]} {unit}" if high in node
                          else f"at least {node[low]} {unit}")
    return labels


def _literal(value: Any) -> str:
    # JSON spelling, so the model sees exactly the token it has to produce.
    return json.dumps(value, ensure_ascii=False)
