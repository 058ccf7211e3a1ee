"""ExtractionSchema: what to read from a page, as a named, versioned, self-checking value.

An ExtractionSchema that exists is usable: construction runs every check (plain JSON, the
supported JSON-Schema subset, the limits), so code downstream (grammar, Arrow type, prompt)
never has to handle a malformed schema.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from pageray.schemas.budget import budget_problems
from pageray.schemas.plain_json import canonical_json, json_value_problems
from pageray.schemas.validate import MAX_TEXT_CHARS, field_problems

NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
MAX_VERSION_CHARS = 64
MAX_PROBLEMS_SHOWN = 10


class SchemaError(ValueError):
    """A schema or schema file pageray cannot use; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ExtractionSchema:
    """A schema of the fields to extract. `json_schema` is the JSON Schema of those fields.

    The object keeps a private deep copy of `json_schema`, so the id and everything derived
    from it stay valid if the caller later changes the dict it passed in. Treat the attribute
    as read-only: its nested dicts cannot be frozen without changing its type.
    """

    name: str
    version: str
    description: str
    json_schema: dict[str, Any]
    # The output token budget this schema's pages need (schemas.budget); None: derived from the
    # fields. Not part of `to_dict()` and so not of the id: the id pins what an output folder's
    # rows mean (pipeline.ledger.records refuses to mix ids), and the budget only decides how much
    # of a long answer fits, as --max-new-tokens does. Raising it after seeing truncated rows
    # must not make the folder refuse the schema as a different one.
    max_new_tokens: int | None = None
    # The JSON Schema as the user gave it (a Pydantic model's model_json_schema(), $defs and
    # all); None: `json_schema` itself. A valid row is an instance of it (schemas.answer), so it
    # travels with the schema to the workers and into the run record. Not in the id: it admits
    # what `json_schema` admits (schemas.jsonschema only rewrites how that is spelled), and
    # `json_schema` keeps the defaults that decide what a row holds.
    source_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        header = _header_problems(self.name, self.version, self.description) \
            + budget_problems(self.max_new_tokens)
        if header:
            raise SchemaError(format_problems(display_label(self.name), header))
        problems = json_value_problems(self.json_schema) or field_problems(self.json_schema)
        if problems:
            raise SchemaError(format_problems(self.name, problems))
        object.__setattr__(self, "json_schema", json.loads(json.dumps(self.json_schema)))
        source = self.json_schema if self.source_schema is None else self.source_schema
        problems = json_value_problems(source, root="source_schema") if isinstance(source, dict) \
            else ["'source_schema' must be a JSON Schema mapping"]
        if problems:
            raise SchemaError(format_problems(self.name, problems))
        object.__setattr__(self, "source_schema", json.loads(json.dumps(source)))

    @property
    def id(self) -> str:
        """First 16 hex digits of the sha256 of the canonical JSON of `to_dict()`.

        Canonical JSON sorts keys, so the id does not depend on how a file ordered them.
        """
        digest = hashlib.sha256(canonical_json(self.to_dict()).encode("utf-8"))
        return digest.hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """name, version, description and json_schema, as fresh plain data: what the id hashes
        (the budget, `max_new_tokens`, is kept apart, see above)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "json_schema": json.loads(json.dumps(self.json_schema)),
        }

    # Compared by content, not identity; hashable so it can key caches (e.g. compiled grammars).
    # Equal schemas have equal ids (so equal hashes); two that differ only in budget are unequal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtractionSchema):
            return NotImplemented
        return canonical_json(self.to_dict()) == canonical_json(other.to_dict()) \
            and self.max_new_tokens == other.max_new_tokens

    def __hash__(self) -> int:
        return hash(self.id)


def format_problems(label: str, problems: list[str]) -> str:
    """One message for a list of problems, each on its own line after the schema's label."""
    if len(problems) == 1:
        return f"{label}: {problems[0]}"
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    lines = [f"{label}: {len(problems)} problems in the schema:"] + [f"  {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def _header_problems(name: Any, version: Any, description: Any) -> list[str]:
    problems = []
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append(f"schema name {name!r} is not usable; use 1-64 characters from a-z, "
                        f"0-9, '_' and '-' (e.g. {_suggest_slug(name)!r})")
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_CHARS:
        problems.append(f"version {version!r} must be non-empty text of at most "
                        f"{MAX_VERSION_CHARS} characters; in YAML quote numbers: version: \"1\"")
    if not isinstance(description, str) or not description.strip():
        problems.append("the schema needs a non-empty 'description' (it tells the model what "
                        "the page is read for)")
    elif len(description) > MAX_TEXT_CHARS:
        problems.append(f"the schema 'description' has {len(description)} characters; the "
                        f"limit is {MAX_TEXT_CHARS}, shorten it")
    return problems


def display_label(name: Any) -> str:
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    return f"schema {name!r}" if isinstance(name, str) else "schema"


def _suggest_slug(name: Any) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "_", str(name).lower()).strip("_")[:64]
    return slug or "my_schema"
