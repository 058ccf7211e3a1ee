"""Schema-derived text: the model's instructions (`build_prompt`) and the CLI view
(`schema_summary`).

The prompt carries everything the grammar cannot: what each field means (descriptions,
titles, examples, defaults) and the spelling conventions the parser relies on. It is
deterministic so that the same schema always gives the same prompt (and cache hits).
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from pageray.schemas.model import ExtractionSchema
from pageray.schemas.nodes import child_path, item_path, iter_properties, node_kind, \
    property_nullable, type_label

SUMMARY_DESCRIPTION_CHARS = 80


def build_prompt(schema: ExtractionSchema, page: tuple[int, int] | None = None, pages: int | None = None) -> str:
    """The instruction text: the task, every field, and the answer format. For one page alone
    (page scope); for page `page = (index, count)` of a document (0-based index: "page 2 of 3"),
    so the model knows a total may be on another page; or for all `pages` images of a short
    document in one prompt (extractors.multi_image). Only the first line and the null rule change,
    and they follow the image(s), so image tokens sit at the same positions in every variant."""
    fields = list(_fields(schema.json_schema))
    if pages is not None:
        task = f"Read these {pages} pages of one document, in order, and extract the following for the whole document."
    elif page is not None:
        task = f"Read this document page (page {page[0] + 1} of {page[1]}) and extract the following from this page."
    else:
        task = "Read this document page and extract the following."
    lines = [f"{task} {_flat(schema.description)}", "", "Fields:"]
    for path, node, required, depth in fields:
        marks = ", required" if required else ""
        lines.append(f"{'  ' * depth}- {path} ({type_label(node)}{marks}): {_details(node, path)}")
    lines += [
        "",
        "Answer with one JSON object that has exactly the keys listed above, nested as shown, "
        "and no other keys.",
        ("Use null when a value is not in the document." if pages is not None else
         "Use null when a value is not on the page.")
        + (" Fields marked required are never null (an empty list is []). "
           if any(required for _, _, required, _ in fields) else ""),
        "Write dates as YYYY-MM-DD, times as HH:MM:SS, date-times as YYYY-MM-DDTHH:MM:SS "
        "(with Z or +HH:MM when the page gives a time zone).",
        'Write numbers as plain JSON numbers with "." as the decimal point, without currency '
        'symbols or thousands separators (1234.5, not "$1,234.50" or "1.234,50").',
        "Copy text as it is printed on the page; do not translate or summarize it.",
    ]
    return "\n".join(line.rstrip() for line in lines)


def schema_summary(schema: ExtractionSchema) -> str:
    """Name, id, version, description and the field tree (`*` marks required fields)."""
    lines = [
        f"name:        {schema.name}",
        f"id:          {schema.id}",
        f"version:     {schema.version}",
        f"description: {_flat(schema.description)}",
        "fields (* = required):",
    ]
    for path, node, required, depth in _fields(schema.json_schema):
        name = path.rsplit(".", 1)[-1]
        text = _flat(node.get("description", ""))
        if len(text) > SUMMARY_DESCRIPTION_CHARS:
            text = text[: SUMMARY_DESCRIPTION_CHARS - 3] + "..."
        lines.append(f"{'  ' * (depth + 1)}{name}{'*' if required else ''}: "
                     f"{type_label(node)}  - {text}")
    bare = [path for path, node, _, _ in _fields(schema.json_schema) if "description" not in node]
    if bare:
        lines.append(f"warning: {len(bare)} field{'s have' if len(bare) > 1 else ' has'} no "
                     f"description (descriptions are the model's instructions; the prompt names "
                     f"them by title or name): {', '.join(bare)}")
    return "\n".join(lines)


def _fields(node: Mapping[str, Any], path: str = "",
            depth: int = 0) -> Iterator[tuple[str, Mapping[str, Any], bool, int]]:
    """(path, node, required and non-nullable, indent level) for every field, depth first.

    Elements of lists of objects are reached through `[]` in the path: line_items[].amount.
    """
    for name, child, user_required in iter_properties(node):
        path_here = child_path(path, name)
        yield path_here, child, not property_nullable(child, user_required), depth
        inner, inner_path = child, path_here
        while node_kind(inner) == "array":
            inner, inner_path = inner["items"], item_path(inner_path)
        if node_kind(inner) == "object":
            yield from _fields(inner, inner_path, depth + 1)


def _details(node: Mapping[str, Any], path: str) -> str:
    parts = []
    if "title" in node:
        parts.append(f"{_flat(node['title'])}.")
    elif "description" not in node:  # the field's own name is all the model has
        parts.append(path.rsplit(".", 1)[-1].rstrip("[]").replace("_", " ").capitalize() + ".")
    parts.append(_flat(node.get("description", "")))
    if node.get("examples"):
        examples = ", ".join(json.dumps(e, ensure_ascii=False) for e in node["examples"])
        parts.append(f"Examples: {examples}.")
    if "default" in node:
        parts.append(f"Default: {json.dumps(node['default'], ensure_ascii=False)}.")
    return " ".join(p for p in parts if p)


def _flat(text: str) -> str:
    # One line per field keeps the field list readable for the model; authors' line breaks
    # inside a description carry no meaning there.
    return " ".join(text.split())
