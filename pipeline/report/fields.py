"""Per field: how often the model filled it, and how often what it wrote is printed on the page.

A field is a path of the schema as pipeline.evaluation and extractors.grounding name them:
`total`, `vendor.name`, a list `line_items` and the leaves of its items `line_items[].amount`.
Fill rate is counted where a value could be: a page's field over the ok pages, an item's leaf
over the items of that list. A value is filled when it is not null and not "" (a list: not
empty). Grounding rate is over the values extractors.grounding checked (pages with a text layer,
non-null strings, numbers, dates and times; not booleans or enums): the share not listed in the
row's `ungrounded_fields`. Scans have no text layer, so no grounding rate, never a zero one.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from pageray.extractors.grounding import leaves
from pageray.schemas.nodes import child_path, item_path, iter_properties, node_kind

_INDEX = re.compile(r"\[\d+\]")


def paths(node: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """Every field path of a JSON schema node, in the schema's order, a list before its items'."""
    kind = node_kind(node)
    if kind == "object":
        for name, child, _ in iter_properties(node):
            yield from paths(child, child_path(path, name))
    elif kind == "array":
        yield path
        if node_kind(node["items"]) in ("object", "array"):
            yield from paths(node["items"], item_path(path))
    else:
        yield path


def filled(node: Mapping[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, bool]]:
    """(path, filled) for each place a value could be in one page's `fields`."""
    kind = node_kind(node)
    if kind == "object":
        for name, child, _ in iter_properties(node):
            yield from filled(child, (value or {}).get(name), child_path(path, name))
    elif kind == "array":
        yield path, bool(value)
        if node_kind(node["items"]) in ("object", "array"):
            for element in value or []:
                yield from filled(node["items"], element, item_path(path))
    else:
        yield path, value is not None and value != ""


def field_of(checked_path: str) -> str:
    """The field a grounding path belongs to: `line_items[2].amount` -> `line_items[].amount`, and
    an item of a list of scalars, `authors[0]`, -> the list `authors`."""
    path = _INDEX.sub("[]", checked_path)
    return path[:-2] if path.endswith("[]") else path


def field_stats(json_schema: Mapping[str, Any], fields: Iterable[Any], ungrounded: Iterable[Any],
                order: Iterable[str] = ()) -> pd.DataFrame:
    """One line per field path: places, filled, fill_rate, checked, grounded, grounding_rate (NaN
    where nothing was checked). `fields` and `ungrounded` are the `fields` and `ungrounded_fields`
    values of the ok rows, in the same order. Paths come in `order` (the rows' Arrow type keeps the
    user's order, a run record's schema has its keys sorted), then in the schema's."""
    places, full, checked, missed = Counter(), Counter(), Counter(), Counter()
    for value, not_found in zip(fields, ungrounded):
        for path, present in filled(json_schema, value):
            places[path] += 1
            full[path] += present
        if value is None or not_found is None:  # no text layer: nothing was checked
            continue
        checked.update(field_of(p) for p, _, _ in leaves(json_schema, value))
        missed.update(field_of(p) for p in not_found)
    known = list(paths(json_schema))
    order = [p for p in dict.fromkeys(order) if p in known]
    order += [p for p in known if p not in order]
    stats = pd.DataFrame({"places": [places[p] for p in order], "filled": [full[p] for p in order],
                          "checked": [checked[p] for p in order],
                          "grounded": [max(checked[p] - missed[p], 0) for p in order]},
                         index=pd.Index(order, name="field"))
    stats["fill_rate"] = stats["filled"] / stats["places"].where(stats["places"] > 0)
    stats["grounding_rate"] = stats["grounded"] / stats["checked"].where(stats["checked"] > 0)
    return stats
