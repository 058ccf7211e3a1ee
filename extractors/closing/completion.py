"""Shortest schema-valid completion of a truncated, compact JSON generation.

When a row's token budget is about to run out mid-document, the decoder stops sampling and forces
`shortest_completion(schema, generated)` (computed incrementally by `extractors.closer`, for
which this function is the reference): the bytes that close open strings, arrays and objects and
fill the remaining required keys with minimal values (null for nullable values, "", 0, false, [],
the shortest enum value that extends what was written), so the truncated output is still a
document that the xgrammar grammar for `schema` accepts.

`schema` is a normalized JSON Schema (`schemas.generation`): objects list every property as
required, in order, with additionalProperties false; arrays, with minItems/maxItems; strings,
DATE_PATTERN dates, strings with minLength/maxLength (which xgrammar writes raw: no escapes);
enums of strings and numbers; numbers, integers, booleans; and `anyOf: [X, {"type": "null"}]`.
Scalars with a pattern, a format or a numeric bound are closed by the grammar engine itself
(`extractors.grammar_leaf`). The grammar is the one xgrammar
compiles with `any_whitespace=False, separators=(",", ":")`; `extractors.partial_json` has the
lexical details it mirrors. A prefix that no accepted document begins with raises ValueError.

One recursive descent over the prefix, O(len(prefix)) plus the size of the schema. Each step
returns `(end, tail)`: tail is None when the value ended at `end`; otherwise the input ran out
inside the value and tail is the bytes that complete it, to which each enclosing container adds
its own closing (minimal values for the keys still missing, then "}" or "]").
"""

from __future__ import annotations

import re

from pageray.extractors.closing import grammar_leaf
from pageray.extractors.closing.partial_json import INTEGER, NUMBER, Step, utf8_lead, bare_token, literal, literal_for, number, string
from pageray.schemas.patterns import DATE_PATTERN

__all__ = ["literal_for", "max_completion_len", "min_instance", "shortest_completion"]

_DATE = re.compile(DATE_PATTERN)
# Overlaid on a partial date, the first of these that gives a calendar date completes it: the
# first does for every valid partial date except a day "3" in a 30-day month, which the second
# makes the 30th. Years end in 1, so a cut year never becomes 0000 (no Python or Arrow date).
_DATE_TEMPLATES = ("2001-01-01", "2001-10-10")
_NULL = {"type": "null"}
_SIMPLE_MIN = {"array": b"[]", "number": b"0", "integer": b"0", "boolean": b"false", "null": b"null"}


def min_instance(schema: dict) -> bytes:
    """The shortest compact document for `schema`: the completion of the empty prefix."""
    if "anyOf" in schema:
        non_null_branch(schema)
        return b"null"
    if "enum" in schema:
        return min((literal_for(v) for v in schema["enum"]), key=len)
    if grammar_leaf.is_leaf(schema):
        return grammar_leaf.leaf_for(schema).min
    kind = schema.get("type")
    if kind == "object":
        return b"".join(p if isinstance(p, bytes) else min_instance(p) for p in object_parts(schema))
    if kind == "array" and schema.get("minItems"):
        return b"[" + b",".join([min_instance(schema["items"])] * schema["minItems"]) + b"]"
    if is_counted(schema):
        return b'"' + b"0" * schema.get("minLength", 0) + b'"'
    if kind == "string":
        return b'"' + _DATE_TEMPLATES[0].encode() + b'"' if is_date(schema) else b'""'
    if kind in _SIMPLE_MIN:
        return _SIMPLE_MIN[kind]
    raise ValueError(f"unsupported schema {schema!r}")


def max_completion_len(schema: dict) -> int:
    """An upper bound on len(shortest_completion(schema, p)) over all valid prefixes p: the bytes
    a decoder must keep in reserve to be able to close any row (compare len(min_instance))."""
    if "anyOf" in schema:
        return max(4, max_completion_len(non_null_branch(schema)))
    if "enum" in schema:
        return max(len(literal_for(v)) for v in schema["enum"])
    if grammar_leaf.is_leaf(schema):
        return grammar_leaf.leaf_for(schema).max_tail()
    kind = schema.get("type")
    if is_counted(schema):  # a cut 4-byte character, the missing characters, the quote
        return 4 + schema.get("minLength", 0)
    if kind == "object":  # cut inside part i: its worst tail, then the minimal rest
        worst = rest = 0
        for part in reversed(object_parts(schema)):
            fixed = isinstance(part, bytes)
            worst = max(worst, rest + (len(part) if fixed else max_completion_len(part)))
            rest += len(part) if fixed else len(min_instance(part))
        return worst
    if kind == "array":  # a cut item and "]"; after "," a minimal item and "]"; minItems more
        more = schema.get("minItems", 0) * (len(min_instance(schema["items"])) + 1)
        return max(2, max_completion_len(schema["items"]) + 1) + more
    if kind == "string":  # a date: quotes and ten characters; else a cut \uD8 escape: 00\udc00"
        return 12 if is_date(schema) else 9
    return len(min_instance(schema))


def shortest_completion(schema: dict, prefix: bytes) -> bytes:
    """Bytes `c` such that `prefix + c` is a complete document of `schema`'s grammar, built from
    minimal values; b"" when `prefix` already is one. ValueError when `prefix` begins no document."""
    data = bytes(prefix)
    end, tail = _value(schema, data, 0)
    if tail is not None:
        return tail
    if end != len(data):
        raise ValueError(f"unexpected {data[end:end + 10]!r} after the complete document at byte {end}")
    return b""


def non_null_branch(schema: dict) -> dict:
    """X of `anyOf: [X, {"type": "null"}]`."""
    others = [s for s in schema["anyOf"] if s != _NULL]
    if len(schema["anyOf"]) != 2 or len(others) != 1:
        raise ValueError(f"unsupported anyOf (expected [X, null]): {schema!r}")
    return others[0]


def is_date(schema: dict) -> bool:
    return schema.get("pattern") == DATE_PATTERN and "format" not in schema


def is_counted(schema: dict) -> bool:
    """A string with minLength or maxLength (and no pattern or format: those are leaves)."""
    return schema.get("type") == "string" and ("minLength" in schema or "maxLength" in schema)


def object_parts(schema: dict) -> list:
    """The object as literals (bytes) and value schemas in order: `{"a":` A `,"b":` B `}`."""
    props = schema.get("properties", {})
    if list(schema.get("required", [])) != list(props) or schema.get("additionalProperties", False):
        raise ValueError("object schema is not normalized (all properties required in order, closed)")
    parts: list = []
    for i, (name, sub) in enumerate(props.items()):
        parts += [(b"," if i else b"{") + literal_for(name) + b":", sub]
    return parts + [b"}" if props else b"{}"]


def _value(schema: dict, data: bytes, pos: int) -> Step:
    if pos == len(data):
        return pos, min_instance(schema)
    if "anyOf" in schema:  # no non-null value of a normalized schema starts with "n"
        inner = non_null_branch(schema)
        return literal(data, pos, b"null") if data[pos] == ord("n") else _value(inner, data, pos)
    if "enum" in schema:
        return enum_step([literal_for(v) for v in schema["enum"]], data, pos)
    if grammar_leaf.is_leaf(schema):
        return grammar_leaf.scan(schema, data, pos)
    kind = schema.get("type")
    if kind == "object":
        return _sequence(object_parts(schema), data, pos)
    if kind == "array":
        return _array(schema["items"], data, pos, schema.get("minItems", 0), schema.get("maxItems"))
    if is_counted(schema):
        return counted_string(data, pos, schema.get("minLength", 0), schema.get("maxLength"))
    if kind == "string":
        return date_step(data, pos) if is_date(schema) else string(data, pos)
    if kind in ("number", "integer"):
        return number(data, pos, INTEGER if kind == "integer" else NUMBER)
    if kind == "boolean":
        return literal(data, pos, b"true" if data[pos] == ord("t") else b"false")
    if kind == "null":
        return literal(data, pos, b"null")
    raise ValueError(f"unsupported schema {schema!r}")


def _sequence(parts: list, data: bytes, pos: int) -> Step:
    for i, part in enumerate(parts):
        pos, tail = literal(data, pos, part) if isinstance(part, bytes) else _value(part, data, pos)
        if tail is not None:
            rest = (p if isinstance(p, bytes) else min_instance(p) for p in parts[i + 1 :])
            return pos, tail + b"".join(rest)
    return pos, None


def _array(items: dict, data: bytes, pos: int, least: int = 0, most: int | None = None) -> Step:
    pos, _ = literal(data, pos, b"[")
    more = lambda count: (b"," + min_instance(items)) * max(0, least - count) + b"]"  # noqa: E731
    count = 0
    if data[pos : pos + 1] == b"]":
        if least:
            raise ValueError(f"an array of at least {least} items closed empty at byte {pos}")
        return pos + 1, None
    while pos < len(data):  # an item starts here (after "[" or ",")
        if most is not None and count == most:
            raise ValueError(f"an array of at most {most} items gets another at byte {pos}")
        pos, tail = _value(items, data, pos)
        count += 1
        if tail is not None:
            return pos, tail + more(count)
        if data[pos : pos + 1] == b"]":
            if count < least:
                raise ValueError(f"an array of at least {least} items closed after {count}")
            return pos + 1, None
        if pos == len(data):  # the array may end after any item
            break
        pos, _ = literal(data, pos, b",")
        if pos == len(data):
            return pos, min_instance(items) + more(count + 1)
    if not count:  # the input ended right after "["
        return pos, min_instance(items) + more(1) if least else b"]"
    return pos, more(count)


def counted_string(data: bytes, pos: int, least: int, most: int | None = None) -> Step:
    """A string with a length limit, as xgrammar writes it: raw characters other than '"',
    '\\', CR and LF (no escapes; other controls pass), counted in code points."""
    pos, _ = literal(data, pos, b'"')
    i, n, count = pos, len(data), 0
    while i < n:
        byte = data[i]
        if byte == 0x22:
            if count < least:
                raise ValueError(f"a string of at least {least} characters closed after {count}")
            return i + 1, None
        if byte in b"\\\r\n" or count == most:
            raise ValueError(f"byte {byte:#04x} at {i} cannot continue a length-limited string")
        count, length = count + 1, 1
        if byte >= 0x80:
            length, low, high = utf8_lead(byte)
            for k, cont in enumerate(data[i + 1 : i + length]):
                if not (low if k == 0 else 0x80) <= cont <= (high if k == 0 else 0xBF):
                    raise ValueError(f"invalid UTF-8 continuation {cont:#04x} at byte {i + 1 + k}")
            if i + length > n:
                have = n - i - 1
                cut = bytes([low if have == 0 else 0x80]) + b"\x80" * (length - 2 - have)
                return n, cut + b"0" * max(0, least - count) + b'"'
        i += length
    return n, b"0" * max(0, least - count) + b'"'


def enum_step(literals: list, data: bytes, pos: int) -> Step:
    if data[pos] == ord('"'):
        end, tail = string(data, pos)  # only to find where a complete string ends
    else:
        end = bare_token(data, pos)
        tail = b"" if end == len(data) else None
    if tail is None:
        if data[pos:end] in literals:
            return end, None
        raise ValueError(f"{data[pos:end]!r} at byte {pos} is none of the enum values")
    partial = data[pos:]
    candidates = [lit for lit in literals if lit.startswith(partial)]
    if not candidates:
        raise ValueError(f"{partial!r} at byte {pos} begins none of the enum values")
    return len(data), min(candidates, key=len)[len(partial) :]


def date_step(data: bytes, pos: int) -> Step:
    end, tail = string(data, pos)
    text = data[pos + 1 : end - (tail is None)].decode("latin-1")  # without quotes
    if tail is None:
        if _DATE.fullmatch(text):
            return end, None
    else:
        for template in _DATE_TEMPLATES:
            if len(text) <= len(template) and _DATE.fullmatch(text + template[len(text) :]):
                return end, template[len(text) :].encode() + b'"'
    raise ValueError(f"{text!r} at byte {pos + 1} is not (the beginning of) a calendar date")
