"""Making sure a schema is plain, bounded JSON data before anything else looks at it.

A schema's id is a hash of its canonical JSON, and schemas come from untrusted YAML, which
can hold things JSON cannot (dates from unquoted 2024-01-31, boolean keys from `yes:`, NaN)
and aliases that make a small file expand into a huge tree. Both are caught here, with an
iterative walk so that a deeply nested document cannot exhaust the Python stack.
"""
from __future__ import annotations

import datetime
import json
import math
from typing import Any

MAX_JSON_VALUES = 100_000
MAX_JSON_DEPTH = 64
MAX_PROBLEMS = 10


def canonical_json(value: Any) -> str:
    """The one spelling of `value` that ids are computed from: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_value_problems(value: Any, root: str = "schema") -> list[str]:
    """Why `value` is not plain, bounded JSON data (empty when it is).

    Paths in the messages are spelled from `root`, e.g. "schema.properties.total.default".
    """
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    seen = 0
    while stack and len(problems) < MAX_PROBLEMS:
        item, path, depth = stack.pop()
        seen += 1
        if seen > MAX_JSON_VALUES:
            # Typical for YAML aliases (&a / *a) that repeat a subtree many times.
            return [f"'{root}' holds more than {MAX_JSON_VALUES} values; the file is far "
                    "larger than any field schema needs (check for repeated YAML aliases)"]
        if depth > MAX_JSON_DEPTH:
            problems.append(f"'{path}' is nested more than {MAX_JSON_DEPTH} levels deep; "
                            "flatten it")
            continue
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str):
                    stack.append((child, f"{path}.{key}", depth + 1))
                else:
                    problems.append(_bad_key(path, key))
        elif isinstance(item, (list, tuple)):
            for index in reversed(range(len(item))):
                stack.append((item[index], f"{path}[{index}]", depth + 1))
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(f"'{path}' is {item}, which JSON cannot hold; use a finite number")
        elif item is not None and not isinstance(item, (str, bool, int, float)):
            problems.append(_bad_value(path, item))
    return problems


def _bad_key(path: str, key: Any) -> str:
    hint = "quote it"
    if isinstance(key, bool):
        # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans.
        hint = "quote it (YAML reads unquoted yes/no/on/off as true/false)"
    return f"'{path}' has the key {key!r}, which is not a string; {hint}"


def _bad_value(path: str, value: Any) -> str:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return (f"'{path}' is a {type(value).__name__}, not text (YAML reads unquoted "
                f"{value.isoformat()} as a date); quote it: \"{value.isoformat()}\"")
    return (f"'{path}' holds a {type(value).__name__}, which is not JSON; use text, a number, "
            "true/false, null, a list or a mapping")
