"""Rewriting generator output (Pydantic's `model_json_schema()`, other JSON-Schema tools) into
the dialect `schemas.validate` checks, before those checks run.

What is rewritten: local `$ref`s (`#/$defs/...`, `#/definitions/...`, any `#/...` pointer) are
inlined, Pydantic's `allOf: [{"$ref": ...}]` wrapper included; `anyOf`/`oneOf` of one type and
`{"type": "null"}` (Pydantic's `Optional[X]`) becomes that type made nullable (`type: [X,
"null"]`, or `nullable: true` for an enum without a type); `const` becomes a one-value enum; a
`pattern` that is exactly DATE_PATTERN becomes `format: date`. With `generated=True` (a plain
JSON-Schema file or a Pydantic class, not a hand-written pageray file) the annotations a
generator invents are dropped: titles equal to Pydantic's automatic ones and `default: null`.

What is refused, naming the field: recursive references (a Parquet column cannot be
recursive), references that do not resolve, and other unions. Everything else, constraints
included, is passed through unchanged, so the usual checks (`schemas.validate`,
`schemas.constraints`) still see and refuse, with their own messages, whatever the decoder
cannot enforce. The rewrite never makes a schema accept more than its source does.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pageray.schemas.patterns import DATE_PATTERN
from pageray.schemas.validate import located

MAX_NODES = 20_000
MAX_NESTING = 64
_NULL = {"type": "null"}
# Annotations (and the definitions themselves) that constrain nothing and that the dialect
# does not hold; dropped silently.
_DROPPED = frozenset({"$schema", "$id", "$comment", "$defs", "definitions", "deprecated",
                      "readOnly", "writeOnly", "discriminator"})
_ANNOTATIONS = ("description", "title", "examples", "default")
_UNIONS = ("allOf", "anyOf", "oneOf")


@dataclasses.dataclass
class _Walk:
    root: Any
    generated: bool
    problems: list[str] = dataclasses.field(default_factory=list)
    nodes: int = 0
    too_big: bool = False

    def add(self, path: str, message: str) -> None:
        self.problems.append(located(path, message))


def normalize(document: dict[str, Any], *, generated: bool) -> tuple[dict[str, Any], list[str]]:
    """(the schema in pageray's dialect, problems); the schema is unusable when problems exist.

    `document` must already be plain, bounded JSON (`plain_json.json_value_problems`).
    """
    walk = _Walk(root=document, generated=generated)
    out = _node(document, "", ("#",), 0, walk)
    if generated and isinstance(out, dict):
        for key in ("title", "description"):  # they become the schema's name and description
            out.pop(key, None)
    return out, walk.problems


def _node(node: Any, path: str, refs: tuple[str, ...], depth: int, walk: _Walk) -> Any:
    walk.nodes += 1
    if not isinstance(node, dict) or walk.too_big:
        return copy.deepcopy(node) if not walk.too_big else {}
    node, nullable = dict(node), False
    while "$ref" in node or any(u in node for u in _UNIONS):
        depth += 1
        if walk.nodes > MAX_NODES or depth > MAX_NESTING:
            walk.too_big = True
            walk.add(path, f"inlining the references gives a schema of more than {MAX_NODES} "
                           f"parts or {MAX_NESTING} levels; that is far larger than a page's "
                           "fields need, split it")
            return {}
        if "$ref" in node:
            found = _inline_ref(node, path, refs, walk)
            if found is None:
                return {}
            node, refs = found
        else:
            union = next(u for u in _UNIONS if u in node)
            node = _union(node, union, path, walk)
            if node is None:
                return {}
            nullable = node.pop("\0null") or nullable
    if nullable:
        _make_nullable(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _node(child, f"{path}.{name}" if path else name, refs,
                                    depth + 1, walk) for name, child in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _node(value, f"{path}[]", refs, depth + 1, walk)
        else:
            out[key] = copy.deepcopy(value)
    _constraints(out, path, walk)
    if walk.generated:
        _drop_generated_annotations(out, path)
    return out


def _inline_ref(node: dict, path: str, refs: tuple[str, ...],
                walk: _Walk) -> tuple[dict, tuple[str, ...]] | None:
    """The referenced schema with the referring node's other keys laid over it."""
    ref = node.pop("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        walk.add(path, f"'$ref' {ref!r} is not a reference inside this schema; only local "
                       "references such as '#/$defs/Name' are supported: inline the schema")
        return None
    if ref in refs:
        chain = " -> ".join(r.rsplit("/", 1)[-1] or "#" for r in refs + (ref,))
        walk.add(path, f"'$ref' {ref!r} refers back to a schema that contains it ({chain}); "
                       "recursive schemas are refused because a Parquet column cannot be "
                       "recursive: give the nested level its own model without the "
                       "self-reference, or cap the depth with separate models")
        return None
    target = _resolve(walk.root, ref)
    if not isinstance(target, dict):
        walk.add(path, f"'$ref' {ref!r} does not point to a schema in this document; add the "
                       "definition under '$defs' or fix the reference")
        return None
    merged = dict(target)
    if walk.generated and merged.get("title") == ref.rsplit("/", 1)[-1]:
        del merged["title"]  # a class name, not an instruction
    _overlay(merged, node, "'$ref' " + repr(ref), path, walk)
    return merged, refs + (ref,)


def _overlay(inner: dict, outer: dict, what: str, path: str, walk: _Walk) -> None:
    """The outer node's keys laid over the inner one: annotations win, constraints must agree."""
    for key, value in outer.items():
        if key in _ANNOTATIONS or key in _DROPPED or key not in inner or inner[key] == value:
            inner[key] = value
        else:
            walk.add(path, f"'{key}' next to {what} differs from the schema it refers to; "
                           "remove one")


def _resolve(root: Any, ref: str) -> Any:
    target = root
    for part in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target


def _union(node: dict, keyword: str, path: str, walk: _Walk) -> dict | None:
    """One schema for allOf of one schema, or anyOf/oneOf of one type with or without null."""
    branches = node.pop(keyword)
    if not isinstance(branches, list) or not branches or \
            not all(isinstance(b, dict) for b in branches):
        walk.add(path, f"'{keyword}' must be a list of schemas")
        return None
    others = [b for b in branches if b != _NULL]
    if len(others) != 1:
        kinds = ", ".join(_label(b) for b in branches)
        fix = ("write one object with all the fields" if keyword == "allOf" else
               'use one type, or Optional[X] (anyOf of one type and {"type": "null"})')
        walk.add(path, f"'{keyword}' of {kinds} is not supported (a column has one type); "
                       f"{fix}")
        return None
    inner = dict(others[0])
    _overlay(inner, node, f"'{keyword}'", path, walk)
    inner["\0null"] = len(others) < len(branches) and keyword != "allOf"
    return inner


def _make_nullable(node: dict) -> None:
    declared = node.get("type")
    if isinstance(declared, str) and declared != "null":
        node["type"] = [declared, "null"]
    elif not (isinstance(declared, list) and "null" in declared):
        node["nullable"] = True


def _constraints(node: dict, path: str, walk: _Walk) -> None:
    if "const" in node:
        value = node.pop("const")
        if "enum" in node and value not in node["enum"]:
            walk.add(path, f"'const' {value!r} is not among the 'enum' values; remove one")
        node["enum"] = [value]
    if node.get("pattern") == DATE_PATTERN and node.get("format", "date") == "date":
        del node["pattern"]
        node["format"] = "date"


def _drop_generated_annotations(node: dict, path: str) -> None:
    name = path.rsplit(".", 1)[-1]
    if name and node.get("title") in (name.replace("_", " ").title(),
                                      name.title().replace("_", " ")):
        del node["title"]
    if "default" in node and node["default"] is None:
        del node["default"]


def _label(branch: dict) -> str:
    if "$ref" in branch:
        return str(branch["$ref"]).rsplit("/", 1)[-1]
    if "const" in branch:
        return repr(branch["const"])
    declared = branch.get("type")
    if isinstance(declared, list):
        return "/".join(map(str, declared))
    return str(declared or ("an enum" if "enum" in branch else "an untyped schema"))
