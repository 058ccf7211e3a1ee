"""Checking a user's field schema against the JSON-Schema subset pageray supports.

Schemas come from untrusted files and end up as a decoding grammar, Parquet column names and
prompt text, so anything the rest of the pipeline cannot honour is refused here, up front,
with the field path and the fix, rather than silently ignored at generation time.
`field_problems` returns messages instead of raising so that a user sees every problem at once.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from pageray.schemas.constraints import FORMATS, KEYWORDS as CONSTRAINTS, constraint_problems
from pageray.schemas.merge_rules import RULES as MERGE_RULES

MAX_DEPTH = 6
MAX_FIELDS = 200
MAX_TEXT_CHARS = 2000
MAX_ENUM_VALUES = 256
# Property names become Parquet column (struct field) names.
PROPERTY_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

TYPES = ("object", "array", "string", "number", "integer", "boolean")
ANNOTATIONS = frozenset({"description", "title", "examples", "default"})
KEYWORDS = ANNOTATIONS | {
    "type", "nullable", "enum", "format", "properties", "required", "items",
    "additionalProperties", "merge", *CONSTRAINTS,
}
_ONLY_FOR = {"properties": "object", "required": "object", "additionalProperties": "object",
             "items": "array"}

_HINTS = (
    (("multipleOf",),
     "the decoder cannot enforce it; remove it, or state it in the field's description"),
    (("uniqueItems", "contains", "prefixItems"),
     "the decoder cannot enforce it; remove it, or state the constraint in the description"),
    (("anyOf", "oneOf", "allOf", "not", "if", "then", "else"),
     'remove it and give the field one type; for optional values use type: [X, "null"]'),
    (("$ref", "$defs", "definitions"), "remove it and write the referenced schema inline"),
    (("patternProperties", "propertyNames", "unevaluatedProperties", "minProperties",
      "maxProperties", "dependentRequired", "dependentSchemas"),
     "remove it and list every property explicitly under 'properties'"),
    (("const",), "remove it, or use an enum with a single value"),
)


def _hint(keyword: str) -> str:
    for keywords, hint in _HINTS:
        if keyword in keywords:
            return hint
    return "remove it (supported keywords: " + ", ".join(sorted(KEYWORDS)) + ")"


def located(path: str, message: str) -> str:
    """A schema problem as every refusal words it: where, then what."""
    where = f"field '{path}'" if path else "schema root"
    return f"{where}: {message}"


@dataclasses.dataclass
class _Walk:
    """State of one validation pass (never shared between passes)."""

    problems: list[str] = dataclasses.field(default_factory=list)
    fields: int = 0
    over_field_limit: bool = False

    def add(self, path: str, message: str) -> None:
        self.problems.append(located(path, message))


def field_problems(json_schema: Any) -> list[str]:
    """Every reason `json_schema` is outside the supported subset; empty when it is usable."""
    walk = _Walk()
    if not isinstance(json_schema, dict):
        walk.add("", "the schema must be a mapping with type: object and its fields under "
                     "'properties'")
        return walk.problems
    _check_node(json_schema, "", 0, walk)
    return walk.problems


def _check_node(node: Any, path: str, depth: int, walk: _Walk) -> None:
    if not isinstance(node, dict):
        walk.add(path, f"must be a mapping of JSON Schema keywords, not {type(node).__name__}")
        return
    for keyword in node:
        if keyword not in KEYWORDS:
            walk.add(path, f"unsupported keyword '{keyword}'; {_hint(keyword)}")
    _check_annotations(node, path, walk)
    kind = _check_type(node, path, walk, is_root=depth == 0)
    constraint_problems(node, kind, lambda message: walk.add(path, message))
    for keyword, owner in _ONLY_FOR.items():
        if keyword in node and kind != owner and kind is not None:
            walk.add(path, f"keyword '{keyword}' applies only to type {owner}; remove it "
                           f"or change the type")
    if kind == "object":
        _check_object(node, path, depth, walk)
    elif kind == "array":
        _check_array(node, path, depth, walk)


def _check_annotations(node: dict, path: str, walk: _Walk) -> None:
    # A field without a description is allowed (Pydantic fields often have none): the prompt
    # then names it by its title or name, and `pageray schemas show` warns.
    for key in ("description", "title"):
        text = node.get(key)
        if key not in node:
            continue
        if not isinstance(text, str) or not text.strip():
            walk.add(path, f"'{key}' must be non-empty text")
        elif len(text) > MAX_TEXT_CHARS:
            walk.add(path, f"'{key}' has {len(text)} characters; the limit is "
                           f"{MAX_TEXT_CHARS}, shorten it")
    if "examples" in node and not isinstance(node["examples"], list):
        walk.add(path, "'examples' must be a list of example values")
    if "merge" in node and node["merge"] not in MERGE_RULES:  # pageray's own: schemas.merge_rules
        walk.add(path, f"'merge' must be one of {', '.join(MERGE_RULES)} (which page's value a "
                       "document row takes)")
    if "nullable" in node and not isinstance(node["nullable"], bool):
        walk.add(path, "'nullable' must be true or false")


def _check_type(node: dict, path: str, walk: _Walk, *, is_root: bool) -> str | None:
    """Check type/enum/format; return the node's kind, or None when it is unusable."""
    declared = node.get("type")
    if is_root and (declared != "object" or "enum" in node or node.get("nullable")):
        walk.add(path, "the schema root must be a non-nullable type: object")
        return None
    if isinstance(declared, list):
        others = [t for t in declared if t != "null"]
        if len(declared) != 2 or len(others) != 1:
            walk.add(path, f"type {declared!r} is not supported; use one type, or "
                           f'[X, "null"] for a nullable one')
            return None
        declared = others[0]
    if declared is not None and declared not in TYPES:
        walk.add(path, f"unknown type {declared!r}; use one of {', '.join(TYPES)}"
                       + (' (a nullable one as [X, "null"])' if declared == "null" else ""))
        return None
    if "enum" in node:
        _check_enum(node["enum"], declared, path, walk)
        if "format" in node:
            walk.add(path, "'format' cannot be combined with 'enum'; remove it")
        return "enum"
    if declared is None:
        walk.add(path, "has no 'type'; add type: string (or number, integer, boolean, "
                       "object, array), or an enum")
        return None
    if "format" in node:
        if declared != "string":
            walk.add(path, "'format' applies only to type string; remove it")
        elif node["format"] not in FORMATS:
            walk.add(path, f"unsupported format {node['format']!r}; supported: "
                           f"{', '.join(FORMATS)}. Remove it, or use a 'pattern'")
    return declared


def _check_enum(values: Any, declared: str | None, path: str, walk: _Walk) -> None:
    if not isinstance(values, list) or not [v for v in values if v is not None]:
        walk.add(path, "'enum' must be a list with at least one non-null value")
        return
    if len(values) > MAX_ENUM_VALUES:
        walk.add(path, f"'enum' has {len(values)} values; the limit is {MAX_ENUM_VALUES}, use "
                       "type: string and name the usual values in the description")
        return
    present = [v for v in values if v is not None]
    texts = all(isinstance(v, str) for v in present)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if not (texts or numbers):
        walk.add(path, "'enum' values must be all strings or all numbers (null allowed); "
                       "quote the numbers or split the field")
    elif len(set(present)) != len(present):
        walk.add(path, "'enum' lists a value twice; remove the duplicate")
    elif declared is not None and declared not in (("string",) if texts else ("number", "integer")):
        walk.add(path, f"type {declared!r} does not match the enum's "
                       f"{'strings' if texts else 'numbers'}; remove 'type' or fix the values")
    elif declared == "integer" and not all(isinstance(v, int) or v.is_integer() for v in present):
        walk.add(path, "type 'integer' but the enum has fractions; use type: number")


def _check_object(node: dict, path: str, depth: int, walk: _Walk) -> None:
    properties = node.get("properties")
    if not isinstance(properties, dict) or not properties:
        walk.add(path, "an object needs at least one field under 'properties'")
        return
    if node.get("additionalProperties", False) is not False:
        walk.add(path, "'additionalProperties' may only be false (extra keys are never kept); "
                       "remove it")
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        walk.add(path, "'required' must be a list of property names")
    else:
        for name in sorted(set(r for r in required if r not in properties)):
            walk.add(path, f"'required' names {name!r}, which is not under 'properties'; "
                           "add the property or remove the name")
        if len(set(required)) != len(required):
            walk.add(path, "'required' lists a name twice; remove the duplicate")
    seen: dict[str, str] = {}
    for name, child in properties.items():
        _check_property(name, child, path, depth, walk, seen)
        if walk.over_field_limit:
            return


def _check_property(name: str, child: Any, parent: str, depth: int, walk: _Walk,
                    seen: dict[str, str]) -> None:
    path = f"{parent}.{name}" if parent else name
    if not PROPERTY_NAME_RE.fullmatch(name):
        walk.add(path, f"property name {name!r} cannot be a Parquet column name; use 1-64 "
                       "letters, digits and '_', not starting with a digit (e.g. "
                       f"{_suggest_name(name)!r})")
    other = seen.setdefault(name.lower(), name)
    if other != name:
        walk.add(path, f"property name {name!r} differs from {other!r} only in case, and "
                       "query engines treat column names case-insensitively; rename one")
    walk.fields += 1
    if walk.fields > MAX_FIELDS:
        walk.add(path, f"the schema has more than {MAX_FIELDS} fields (nested ones included); "
                       f"the limit is {MAX_FIELDS}, split it into several schemas")
        walk.over_field_limit = True
    elif depth + 1 > MAX_DEPTH:
        walk.add(path, f"is nested {depth + 1} levels deep; the limit is {MAX_DEPTH}, "
                       "flatten the structure")
    else:
        _check_node(child, path, depth + 1, walk)


def _check_array(node: dict, path: str, depth: int, walk: _Walk) -> None:
    items = node.get("items")
    if not isinstance(items, dict):
        walk.add(path, "an array needs 'items': one schema for its elements "
                       "(e.g. items: {type: string})")
    elif depth + 1 > MAX_DEPTH:
        walk.add(f"{path}[]", f"is nested {depth + 1} levels deep; the limit is {MAX_DEPTH}, "
                              "flatten the structure")
    else:
        _check_node(items, f"{path}[]", depth + 1, walk)


def _suggest_name(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:64] or "field"
    return f"_{slug}"[:64] if slug[0].isdigit() else slug
