"""Reading a labels file: JSON Lines, one labeled page (or one-page document) per line.

    {"source": "invoice-001.pdf", "page_index": 0, "fields": {"invoice_number": "INV-1", "total": 12.5}}

`source` is the document as a file name, a path relative to any folder of the run, or the full
URI of a row's source_uri (pipeline.evaluation.predictions resolves it); `page_index` is
0-based and defaults to 0 (a label for a whole one-page document); `fields` is what the page
should yield, with the schema's field names. A key the label leaves out is not scored; a key
given as null says the page has no such value, so predicting one is a false positive. Dates,
times and date-times are ISO strings ("2024-03-18", "14:05", "2024-03-18T14:05:00Z").

Why check so much here: a typo in a label ("invoice_no", a total written as "12.50") would
otherwise score as a model error on every page. Each problem is a LabelsError (a ValueError,
and a ConfigError as the CLI reports them) naming the file, the line and the fix, raised before
any output is read. Blank lines and lines starting with // are skipped.
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pageray.pipeline.errors import ConfigError
from pageray.pipeline.evaluation.metrics import kind_of, to_datetime, to_time

KEYS = ("source", "page_index", "fields")
EXAMPLE = '{"source": "invoice-001.pdf", "page_index": 0, "fields": {"total": 12.5}}'


class LabelsError(ConfigError):
    """The labels file cannot be used; the message names the line and what to change."""


@dataclass(frozen=True)
class Label:
    line: int  # 1-based line of the labels file
    source: str
    page_index: int
    fields: dict  # typed like the rows' `fields` (dates as datetime.date); absent keys unscored


def read_labels(path: str | os.PathLike, fields_type: pa.StructType) -> list[Label]:
    """Every label of the file at `path` (local or a storage URI), checked against `fields_type`."""
    name = os.fspath(path)
    lines = _read_text(name).splitlines()
    labels, seen = [], {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        label = _parse_line(name, number, raw, fields_type)
        key = (label.source, label.page_index)
        if key in seen:
            raise LabelsError(f"{name}:{number}: page {label.page_index} of {label.source!r} is labeled twice "
                              f"(also on line {seen[key]}); keep one of the two lines")
        seen[key] = number
        labels.append(label)
    if not labels:
        raise LabelsError(f"{name}: no labels in the file; write one JSON object per line, such as {EXAMPLE}")
    return labels


def _read_text(name: str) -> str:
    if "://" in name and not name.startswith("file://"):
        from pageray.pipeline.storage import read_bytes

        try:
            data = read_bytes(name, 1 << 30)
        except Exception as exc:  # any backend's error: OSError, StorageError, pyarrow's
            raise LabelsError(f"{name}: cannot read the labels file ({exc})") from exc
    else:
        try:
            data = open(name.removeprefix("file://"), "rb").read()
        except OSError as exc:
            raise LabelsError(f"{name}: cannot read the labels file ({exc.strerror or exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{name}: the labels file is not UTF-8 text ({exc})") from exc


def _parse_line(name: str, number: int, raw: str, fields_type: pa.StructType) -> Label:
    where = f"{name}:{number}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LabelsError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be "
                          f"one JSON object, such as {EXAMPLE}") from None
    if not isinstance(obj, dict):
        raise LabelsError(f"{where}: a line must be a JSON object, such as {EXAMPLE}; got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise LabelsError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a label has the keys "
                          f"{', '.join(KEYS)} (page_index optional, 0 by default)")
    for key, meaning in (("source", "the document's file name, relative path or URI"),
                         ("fields", "an object of the values the page should yield")):
        if key not in obj:
            raise LabelsError(f"{where}: missing {key!r} ({meaning}), such as {EXAMPLE}")
    source, page, fields = obj["source"], obj.get("page_index", 0), obj["fields"]
    if not isinstance(source, str) or not source.strip():
        raise LabelsError(f"{where}: 'source' must be a non-empty string (a file name, relative path or URI)")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise LabelsError(f"{where}: 'page_index' must be a whole number >= 0 (0 is the first page); got {page!r}")
    if not isinstance(fields, dict):
        raise LabelsError(f"{where}: 'fields' must be an object with the schema's field names, "
                          f"got {type(fields).__name__}")
    return Label(number, source.strip(), page, typed(fields_type, fields, where, "fields"))


def typed(arrow: pa.DataType, value: Any, where: str, path: str) -> Any:
    """A labeled value checked against, and converted to, the Python value of `arrow`."""
    if value is None:
        return None
    kind = kind_of(arrow)
    fail = lambda wanted: LabelsError(  # noqa: E731
        f"{where}: {path} must be {wanted} or null, got {json.dumps(value)[:80]}")
    if kind == "object":
        if not isinstance(value, dict):
            raise fail("an object")
        names = [f.name for f in arrow]
        unknown = [k for k in value if k not in names]
        if unknown:
            hint = "" if path != "fields" else " (the output's schema; pass --schema if OUT holds several)"
            raise LabelsError(f"{where}: {path} has no field {unknown[0]!r}; its fields are {', '.join(names)}{hint}")
        return {k: typed(arrow.field(k).type, v, where, f"{path}.{k}") for k, v in value.items()}
    if kind == "list":
        if not isinstance(value, list):
            raise fail("a list")
        return [typed(arrow.value_type, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a JSON number (12.5, not \"12.50\")")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise fail("a string")
        return value
    converted = None
    if isinstance(value, str):
        try:
            converted = {"date": lambda v: datetime.date.fromisoformat(v), "time": to_time,
                         "datetime": to_datetime}[kind](value)
        except ValueError:
            converted = None
    if converted is None:
        raise fail({"date": "an ISO date string (\"2024-03-18\")", "time": "an ISO time string (\"14:05\")",
                    "datetime": "an ISO date-time string (\"2024-03-18T14:05:00Z\")"}[kind])
    return converted
