"""The value constraints pageray enforces while decoding, and the checks that refuse the rest.

A constraint is accepted only where the grammar engine (xgrammar) enforces it, the validator
re-checks it after decoding, and the forced shortest completion honours it; everything the
engine would silently ignore is refused here, naming the field and the fix:

- numbers and integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum;
- strings: minLength/maxLength (xgrammar then writes the text raw, without escapes), `pattern`
  (matched whole, as if anchored), `format` date, date-time, time, email, uri, uuid; xgrammar
  drops lengths next to a pattern or format, so that combination is refused;
- arrays: minItems, maxItems.
`multipleOf`, `uniqueItems`, lookaround and backreferences are refused: nothing enforces them.
"""
from __future__ import annotations

import re
from typing import Any, Callable

NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
LENGTHS = ("minLength", "maxLength")
ITEMS = ("minItems", "maxItems")
KEYWORDS = NUMERIC + LENGTHS + ITEMS + ("pattern",)
FORMATS = ("date", "date-time", "time", "email", "uri", "uuid")
# A forced completion must write the minimum: keep what a truncated row must spend bounded.
MAX_MIN_LENGTH = 64
MAX_MIN_ITEMS = 16
MAX_PATTERN_CHARS = 1000
_OWNER = {**{k: ("number", "integer") for k in NUMERIC}, **{k: ("string",) for k in LENGTHS},
          **{k: ("array",) for k in ITEMS}, "pattern": ("string",)}
_UNSUPPORTED_REGEX = re.compile(r"\(\?[=!<]|\(\?[a-zA-Z]|\\[1-9]|\\k<|\\[pP]\{")


def constraint_problems(node: dict, kind: str | None, add: Callable[[str], None]) -> None:
    """Report through `add` every problem of the constraints on a node of type `kind`."""
    for keyword in KEYWORDS:
        if keyword not in node or kind is None:
            continue
        if kind == "enum":
            add(f"'{keyword}' cannot be combined with 'enum' (the values are listed); remove it")
        elif kind not in _OWNER[keyword]:
            add(f"'{keyword}' applies only to type {' or '.join(_OWNER[keyword])}; remove it")
    if kind in ("number", "integer"):
        _bounds(node, kind, add)
    elif kind == "string":
        _string(node, add)
    elif kind == "array":
        _counts(node, "minItems", "maxItems", MAX_MIN_ITEMS, "items", add)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(node: dict, kind: str, add: Callable[[str], None]) -> None:
    present = {k: node[k] for k in NUMERIC if k in node}
    for key, value in present.items():
        if not _is_number(value):
            add(f"'{key}' must be a number, not {value!r}")
            return
    low = [(v, k) for k, v in present.items() if k in ("minimum", "exclusiveMinimum")]
    high = [(v, k) for k, v in present.items() if k in ("maximum", "exclusiveMaximum")]
    for lo, lo_key in low:
        for hi, hi_key in high:
            strict = lo_key.startswith("exclusive") or hi_key.startswith("exclusive")
            if lo > hi or (strict and lo == hi):
                add(f"'{lo_key}' {lo} and '{hi_key}' {hi} leave no value; fix the range")
                return
            if kind == "integer" and strict and hi - lo <= 1 and float(lo).is_integer():
                add(f"'{lo_key}' {lo} and '{hi_key}' {hi} leave no integer; fix the range")
                return


def _string(node: dict, add: Callable[[str], None]) -> None:
    lengths = [k for k in LENGTHS if k in node]
    if lengths and ("pattern" in node or "format" in node):
        other = "pattern" if "pattern" in node else "format"
        add(f"'{lengths[0]}' next to '{other}' is not enforced by the decoder; fold the length "
            "into the pattern (e.g. ^[A-Z0-9]{3,12}$) or remove it")
    _counts(node, "minLength", "maxLength", MAX_MIN_LENGTH, "characters", add)
    if "pattern" in node:
        if "format" in node:
            add("'pattern' next to 'format' is not supported; keep one of them")
        problem = pattern_problem(node["pattern"])
        if problem:
            add(problem)


def _counts(node: dict, low: str, high: str, most: int, unit: str,
            add: Callable[[str], None]) -> None:
    values = {k: node[k] for k in (low, high) if k in node}
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            add(f"'{key}' must be a whole number of {unit}, 0 or more, not {value!r}")
            return
    if values.get(low, 0) > most:
        add(f"'{low}' {values[low]} is more than {most}; a truncated answer must be able to "
            f"write the minimum, so lower it or state it in the description")
    if low in values and high in values and values[low] > values[high]:
        add(f"'{low}' {values[low]} is more than '{high}' {values[high]}; fix the range")


def pattern_problem(pattern: Any) -> str | None:
    """Why `pattern` cannot constrain decoding, or None."""
    if not isinstance(pattern, str) or not pattern:
        return "'pattern' must be a non-empty regular expression"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"'pattern' has {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}"
    if _UNSUPPORTED_REGEX.search(pattern):
        return (f"'pattern' {pattern!r} uses lookaround, inline flags, backreferences or "
                "Unicode classes, which the decoder cannot enforce; rewrite it without them")
    try:
        re.compile(pattern)
        import xgrammar  # the engine decides what it can compile; imported only when needed

        xgrammar.Grammar.from_json_schema({"type": "string", "pattern": pattern},
                                          any_whitespace=False)
    except Exception as error:  # re.error, or xgrammar's RuntimeError with a C++ location
        reason = str(error).strip().splitlines()[0].split(": ", 1)[-1][:120]
        return f"'pattern' {pattern!r} cannot be compiled ({reason}); fix the expression"
    return None
