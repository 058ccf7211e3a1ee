"""One document's value from its pages' values: the deterministic merge of page extractions.

Why: what users extract lives in documents (line items over three pages, the total on the last,
the title on the first), but pages are extracted one by one. The merge is a pure function of the
schema and the page results, so a document row is reproducible from the page rows it came from.

Rules, per field of the user's schema (recursively inside objects):
- a list concatenates the pages' lists in page order;
- a scalar takes one page's value among the pages where it is not null, chosen by the field's
  `merge` keyword: "first" (titles, authors: the first page that has it), "last" (totals: the
  last page that has it), or "confidence" (the default: the page whose extraction was most
  confident; ties go to the earlier page);
- different non-null values of a scalar on different pages are a conflict: the chosen value is
  kept and the conflict is recorded (field, values, pages), never hidden; so is a list cut to
  its maxItems (the merged value must stay valid for the schema, as every row is).
Only pages whose row is `ok` (or `generation_timeout`, which is valid) take part. Each field's
provenance is the pages its value came from, and each value's origin (`Merged.origin`: the page
and the path it had there, `line_items[3]` of the document being `line_items[1]` of page 2) says
where to look it up in that page's own grounding (pipeline.ledger.documents).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from pageray.schemas.nodes import child_path, iter_properties, node_kind

RULES = ("first", "last", "confidence")
DEFAULT_RULE = "confidence"


@dataclasses.dataclass(frozen=True)
class PageValue:
    page_index: int
    fields: Mapping[str, Any] | None
    confidence: float | None = None


@dataclasses.dataclass
class Merged:
    fields: dict[str, Any] | None
    field_pages: list[dict[str, Any]]  # [{"field": path, "pages": [page indexes]}], in schema order
    conflicts: list[dict[str, Any]]    # [{"field": path, "values": [JSON texts], "pages": [...]}]
    chosen: dict[str, int] = dataclasses.field(default_factory=dict)  # scalar path -> its page
    items: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # item path -> (page, path there)

    def origin(self, path: str) -> tuple[int, str] | None:
        """(page index, path on that page) of a value of the merged fields, e.g. of a grounding
        leaf. A list item comes whole from one page, so the first `[i]` of a path decides."""
        cut = path.find("]")
        if cut >= 0:
            found = self.items.get(path[:cut + 1])
            return (found[0], found[1] + path[cut + 1:]) if found else None
        page = self.chosen.get(path)
        return None if page is None else (page, path)


def merge_pages(json_schema: Mapping[str, Any], pages: list[PageValue]) -> Merged:
    """The document's `fields` from its pages' (page order is taken from page_index)."""
    usable = sorted((p for p in pages if p.fields is not None), key=lambda p: p.page_index)
    merged = Merged(None, [], [])
    if usable:
        merged.fields = _object(json_schema, [(p, p.fields) for p in usable], "", merged)
    return merged


def _object(node: Mapping[str, Any], values: list[tuple[PageValue, Any]], path: str,
            merged: Merged) -> dict[str, Any]:
    out = {}
    for name, child, _ in iter_properties(node):
        here = child_path(path, name)
        present = [(page, value.get(name)) for page, value in values if isinstance(value, Mapping)]
        out[name] = _value(child, present, here, merged)
    return out


def _value(node: Mapping[str, Any], values: list[tuple[PageValue, Any]], path: str,
           merged: Merged) -> Any:
    kind = node_kind(node)
    found = [(page, value) for page, value in values if value is not None]
    if kind == "array":
        if not found:
            return None if all(v is None for _, v in values) else []
        items = [item for _, value in found for item in value]
        pages = [page.page_index for page, value in found if value]
        origins = [(page.page_index, f"{path}[{j}]") for page, value in found for j in range(len(value))]
        merged.items.update({f"{path}[{i}]": o for i, o in enumerate(origins[:node.get("maxItems", len(origins))])})
        if pages:
            merged.field_pages.append({"field": path, "pages": pages})
        most = node.get("maxItems")
        if most is not None and len(items) > most:  # the row stays valid; the cut is recorded
            merged.conflicts.append({"field": path, "pages": pages, "values": [
                f"{len(items)} items over the pages, maxItems {most}: the first {most} kept"]})
            items = items[:most]
        return items
    if kind == "object":
        return _object(node, found, path, merged) if found else None
    if not found:
        return None
    page, value = _choose(node.get("merge", DEFAULT_RULE), found)
    merged.field_pages.append({"field": path, "pages": [page.page_index]})
    merged.chosen[path] = page.page_index
    distinct = {_text(v) for _, v in found}
    if len(distinct) > 1:
        merged.conflicts.append({"field": path, "values": sorted(distinct),
                                 "pages": [p.page_index for p, _ in found]})
    return value


def _choose(rule: str, found: list[tuple[PageValue, Any]]) -> tuple[PageValue, Any]:
    if rule == "first":
        return found[0]
    if rule == "last":
        return found[-1]
    # the most confident page; an unknown confidence ranks lowest, ties go to the earlier page
    return max(found, key=lambda pv: (pv[0].confidence if pv[0].confidence is not None else -1.0,
                                      -pv[0].page_index))


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
