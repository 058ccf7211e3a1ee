"""Output token budgets: how many tokens a page's answer may take, per schema.

A budget that is too small truncates answers (the row is closed early and marked `truncated`);
one that is too large costs KV-cache memory (smaller automatic batches) and time on pages whose
answer runs on. How much a page needs depends on what is read: a receipt's few fields fit in a
few hundred tokens, a full-page transcription needs well over a thousand. So the budget comes,
in this order, from the `--max-new-tokens` flag, from the schema (`max_new_tokens` in a schema
file, `__max_new_tokens__` on a Pydantic model), or from `derived_budget`, an estimate of the
compact JSON the schema's fields produce. `effective_budget` is the one place that decides.
"""
from __future__ import annotations

import math
import re
from typing import Any, Protocol

# Bounds of any budget, from a schema or the --max-new-tokens flag (pipeline.config checks it with budget_problems).
MIN_TOKENS, MAX_TOKENS = 8, 8192
# Bounds of a derived budget: below 256 even a small schema's answer can be cut off by a page with
# a few more items than expected; above 2048 a guess is better replaced by the schema's own value.
DERIVED_MIN, DERIVED_MAX = 256, 2048

# Rough token costs of compact JSON in a Llama/Mistral-style tokenizer (Idefics2's), which spells
# digits one by one: a number like 1234.56 is ~7 tokens, a date ~14 with its quotes.
BASE = 32            # outer braces, the stop token, slack for the model's spelling choices
KEY = 3              # a key's quotes, colon and the comma before the next one ...
KEY_CHARS = 4        # ... plus one token per ~4 characters of its name
NUMBER = 8
BOOLEAN = 2
DATE = 14
FORMATS = {"date": DATE, "date-time": 26, "time": 10, "email": 16, "uri": 32, "uuid": 32}
CHARS_PER_TOKEN = 3  # for a maxLength: conservative, as answers are short words and digits
SHORT_TEXT = 16      # a name, an address line, an identifier
FREE_TEXT = 384      # a paragraph or more: an abstract, a page's text
ARRAY_ITEMS = 8      # items assumed per array (line items, authors, table rows, cells of a row)
ROUND_TO = 64        # a budget that reads as chosen, not computed to the token

# Free text is told apart from short strings by a maxLength, else by the field's name or
# description; a wrong guess only moves the default, which the schema or the flag can set.
_FREE_TEXT_NAMES = frozenset({"text", "content", "body", "abstract", "summary", "transcript",
                              "transcription", "notes", "comments", "paragraph", "paragraphs"})
_FREE_TEXT_WORDS = re.compile(r"full text|paragraph|transcri|verbatim|free[- ]text|body text",
                              re.IGNORECASE)


def budget_problems(value: Any) -> list[str]:
    """Why `value` cannot be a schema's `max_new_tokens` (empty when it can; None is no budget)."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_TOKENS <= value <= MAX_TOKENS:
        return [f"max_new_tokens {value!r} is not usable; give a whole number of tokens from "
                f"{MIN_TOKENS} to {MAX_TOKENS} (the output budget per page), or leave it out to "
                "derive one from the fields"]
    return []


def derived_budget(json_schema: dict[str, Any]) -> int:
    """An output budget for a schema that sets none: its estimated answer length in tokens,
    rounded up to a multiple of ROUND_TO and clamped to [DERIVED_MIN, DERIVED_MAX]. Pure."""
    estimate = BASE + _node_tokens(json_schema, "")
    rounded = ROUND_TO * math.ceil(estimate / ROUND_TO)
    return max(DERIVED_MIN, min(DERIVED_MAX, rounded))


class Budgeted(Protocol):
    """What a budget is resolved from: an ExtractionSchema (schemas.model, which imports this
    module for the bounds, so it is not named here)."""
    max_new_tokens: int | None
    json_schema: dict[str, Any]


def effective_budget(requested: int | None, schema: Budgeted) -> tuple[int, str]:
    """The budget a run uses and where it came from: the flag ("flag") wins over the schema's
    own value ("schema"), which wins over the derived default ("derived")."""
    if requested is not None:
        return requested, "flag"
    if schema.max_new_tokens is not None:
        return schema.max_new_tokens, "schema"
    return derived_budget(schema.json_schema), "derived"


def _node_tokens(node: Any, name: str) -> int:
    if not isinstance(node, dict):
        return SHORT_TEXT
    kind = _kind(node)
    if kind == "object":
        properties = node.get("properties") or {}
        return 2 + sum(KEY + math.ceil(len(key) / KEY_CHARS) + _node_tokens(sub, key)
                       for key, sub in properties.items())
    if kind == "array":
        # An item of an array is named like the array ("paragraphs" -> free-text items).
        return 2 + _items(node) * (1 + _node_tokens(node.get("items"), name))
    if "enum" in node:
        values = [v for v in node["enum"] if v is not None] or [""]
        return 2 + max(math.ceil(len(str(v)) / KEY_CHARS) for v in values)
    if kind in ("number", "integer"):
        return NUMBER
    if kind == "boolean":
        return BOOLEAN
    if node.get("format") in FORMATS:
        return FORMATS[node["format"]]
    if isinstance(node.get("maxLength"), int):
        return 2 + math.ceil(node["maxLength"] / CHARS_PER_TOKEN)
    return FREE_TEXT if _is_free_text(node, name) else SHORT_TEXT


def _items(node: dict[str, Any]) -> int:
    """Items assumed for an array: ARRAY_ITEMS, within its minItems..maxItems where it has them."""
    count = ARRAY_ITEMS
    if isinstance(node.get("maxItems"), int):
        count = min(count, node["maxItems"])
    if isinstance(node.get("minItems"), int):
        count = max(count, node["minItems"])
    return count


def _kind(node: dict[str, Any]) -> str | None:
    """The node's type, ignoring "null" (a nullable field costs what its value costs)."""
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _is_free_text(node: dict[str, Any], name: str) -> bool:
    words = set(re.split(r"[^a-z]+", name.lower()))
    return bool(words & _FREE_TEXT_NAMES) or bool(_FREE_TEXT_WORDS.search(str(node.get("description", ""))))
