"""Which extracted values are printed on the page: each string, number, date and time of a row's
fields is looked for in the page's own text layer.

Why: a vision-language model can write a plausible total that is on no page. Where the PDF has a
text layer, checking every value against it says which fields are grounded; the row gets the
grounded fraction and the paths of the values not found. Where there is no text layer (a scan),
both are null, so that "no text layer" never reads as "hallucinated". A garbled or invisible
text layer can make a correct value look ungrounded (README).

How a value is found (pure functions, tested on their own):
- text: NFKC, case-folded, whitespace collapsed, soft hyphens and hyphenated line breaks joined;
  found as a substring, else (values of MIN_FUZZY_CHARS or more) when rapidfuzz's partial_ratio
  reaches FUZZY_SCORE (OCR-ish text layers, ligatures, a dropped accent);
- numbers: every number-like token of the text read both ways (1.234,50 and 1,234.50; 1 234,50;
  a currency sign or trailing minus dropped); found when one equals the value;
- dates: ISO, D.M.Y, D/M/Y and M/D/Y, D-M-Y, and "3 March 2024" / "March 3, 2024" with English
  month names (full or short); a date-time by its date; a time by HH:MM.
Not checked: booleans and enum values (a class the model chose, not a copy of the text), nulls.
"""
from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Any, Iterator, Mapping

from rapidfuzz import fuzz

from pageray.schemas.merge_rules import Merged
from pageray.schemas.nodes import child_path, iter_properties, node_kind

FUZZY_SCORE = 90.0
MIN_FUZZY_CHARS = 6
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"(?<![\w.,])[-+(]?\d[\d.,'\u00a0\u202f ]*\d(?![\w])|(?<![\w.,])[-+]?\d(?![\w])")
_MONTHS = {m: i for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")], start=1) for m in names}
_NUMERIC_DATE = re.compile(r"\b(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})\b")
_WORD_DATE = re.compile(r"\b(\d{1,2})\.?\s+([a-z]+)\.?,?\s+(\d{4})\b|\b([a-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})\b")
_CHECKED = ("string", "number", "integer", "date", "datetime", "time")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    text = re.sub(r"-\s*\n\s*", "", text)  # a word hyphenated across a line break
    return _SPACE.sub(" ", text).casefold().strip()


class PageText:
    """A page's text layer, read once into what the checks compare against."""

    def __init__(self, text: str):
        self.text = normalize(text)
        self.numbers = numbers_in(self.text)
        self.dates = dates_in(self.text)

    def has_text(self, value: str) -> bool:
        wanted = normalize(value)
        if not wanted or wanted in self.text:
            return True
        return len(wanted) >= MIN_FUZZY_CHARS and fuzz.partial_ratio(wanted, self.text) >= FUZZY_SCORE

    def has(self, kind: str, value: Any) -> bool:
        if kind == "string":
            return self.has_text(value)
        if kind in ("number", "integer"):
            return any(abs(n - value) <= 1e-9 * max(1.0, abs(value)) for n in self.numbers)
        if kind == "date":
            return value in self.dates
        if kind == "datetime":
            return value.date() in self.dates
        return f"{value.hour}:{value.minute:02d}" in self.text  # time: 08:15 and 8:15 both


def numbers_in(text: str) -> set[float]:
    """Every value a number-like token of `text` may mean, under both decimal conventions."""
    found: set[float] = set()
    tokens = _NUMBER.findall(text)
    for token in tokens + [piece for t in tokens for piece in t.split() if piece != t]:
        negative = token.startswith(("-", "("))
        digits = re.sub(r"[\s'\u00a0\u202f]", "", token.lstrip("-+("))
        for decimal, thousands in ((".", ","), (",", ".")):
            plain = digits.replace(thousands, "")
            if plain.count(decimal) <= 1:
                try:
                    number = float(plain.replace(decimal, "."))
                except ValueError:
                    continue
                found.add(-number if negative else number)
    return found


def dates_in(text: str) -> set[datetime.date]:
    """Every calendar date a date-like token of `text` may mean (D/M/Y and M/D/Y both)."""
    found: set[datetime.date] = set()
    for a, b, c in _NUMERIC_DATE.findall(text):
        if len(a) == 4:
            candidates = [(a, b, c)]
        elif len(c) == 4:
            candidates = [(c, b, a), (c, a, b)]
        else:
            continue  # two-digit years are not read
        for year, month, day in candidates:
            _add(found, int(year), int(month), int(day))
    for d1, m1, y1, m2, d2, y2 in _WORD_DATE.findall(text):
        day, month, year = (d1, m1, y1) if d1 else (d2, m2, y2)
        if month in _MONTHS:
            _add(found, int(year), _MONTHS[month], int(day))
    return found


def _add(found: set, year: int, month: int, day: int) -> None:
    try:
        found.add(datetime.date(year, month, day))
    except ValueError:
        pass


def leaves(node: Mapping[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, kind, value) for each checked, non-null value of a coerced `fields` value."""
    if value is None:
        return
    kind = node_kind(node)
    if kind == "object":
        for name, child, _ in iter_properties(node):
            yield from leaves(child, value.get(name), child_path(path, name))
    elif kind == "array":
        for index, element in enumerate(value):
            yield from leaves(node["items"], element, f"{path}[{index}]")
    elif kind in _CHECKED:
        yield path, kind, value


def ground(json_schema: Mapping[str, Any], fields: Any, text: str | None) -> dict[str, Any]:
    """The grounding columns of a row: `grounded_fraction` (null without a text layer or without
    a checked value) and `ungrounded_fields` (paths of the values not found; null without text)."""
    if fields is None or text is None or not text.strip():
        return {"grounded_fraction": None, "ungrounded_fields": None}
    page = PageText(text)
    checked = list(leaves(json_schema, fields))
    missing = [path for path, kind, value in checked if not page.has(kind, value)]
    fraction = (len(checked) - len(missing)) / len(checked) if checked else None
    return {"grounded_fraction": fraction, "ungrounded_fields": missing}


def grounded_at(json_schema: Mapping[str, Any], fields: Any, where) -> list[dict[str, Any]]:
    """A document row's `grounding`: per checked value of `fields`, {"field": path, "found",
    "page"}, where `where(path, kind, value)` gives (found or None without text, page or None)."""
    out = []
    for path, kind, value in leaves(json_schema, fields):
        found, page = where(path, kind, value)
        out.append({"field": path, "found": found, "page": page})
    return out


def ground_merged(json_schema: Mapping[str, Any], merged: Merged,
                  unfound: Mapping[int, list[str] | None]) -> list[dict[str, Any]]:
    """A merged document's `grounding`: each value as the page it came from grounded it, given
    each page's `ungrounded_fields` (`found` null where that page had no text layer)."""
    def where(path: str, kind: str, value: Any) -> tuple[bool | None, int | None]:
        page, page_path = merged.origin(path) or (None, path)
        missing = unfound.get(page)
        return (None if missing is None else page_path not in missing), page
    return grounded_at(json_schema, merged.fields, where)


def ground_in_text(json_schema: Mapping[str, Any], fields: Any, text: str | None) -> list[dict[str, Any]]:
    """A multi-image document's `grounding`: each value looked for in the text of all its pages
    (`found` null without text; `page` null, the page a value came from being unknown)."""
    pages = PageText(text) if text else None

    def where(path: str, kind: str, value: Any) -> tuple[bool | None, int | None]:
        return (None if pages is None else pages.has(kind, value)), None
    return grounded_at(json_schema, fields, where)
