"""A model's answer as a row holds it: mended to the user's schema, checked against it, typed.

The decoding grammar writes every key and lets an optional one be null (schemas.generation), and
the truncation closer fills the keys a cut-off answer lacks with null. The user's schema may not
allow null there: a Pydantic `kind: Literal[...] = "invoice"` or `items: list[X] =
Field(default_factory=list)` is optional but never null. So before anything is checked, such a
null (or missing) key takes the user's `default`, and without one it is left out (the Parquet
struct then holds null). A key whose schema allows null keeps the null the model wrote.

`valid` then means: the answer is an instance of the schema the user gave
(`ExtractionSchema.source_schema`, checked by `jsonschema`, which a Pydantic model's
`model_validate` accepts too), as well as of the rewritten one the Arrow values come from.
OpenAPI's `nullable: true`, which pageray's schema files allow, is honoured as allowing null.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Mapping

import jsonschema

from pageray.schemas.coerce import coerce, error_messages
from pageray.schemas.model import ExtractionSchema
from pageray.schemas.nodes import explicitly_nullable, iter_properties, node_kind


def _or_nullable(check):
    def validate(validator, value, instance, schema):
        if instance is None and schema.get("nullable") is True:
            return
        yield from check(validator, value, instance, schema)
    return validate


_BASE = jsonschema.Draft202012Validator
_Validator = jsonschema.validators.extend(_BASE, {
    "type": _or_nullable(_BASE.VALIDATORS["type"]), "enum": _or_nullable(_BASE.VALIDATORS["enum"])})


def mend(node: Mapping[str, Any], value: Any) -> Any:
    """`value` with each null or missing key whose schema does not allow null given its default,
    or left out when it has none; `node` is a property schema in pageray's dialect."""
    kind = node_kind(node)
    if kind == "object" and isinstance(value, dict):
        out = {}
        for name, child, required in iter_properties(node):
            present = value.get(name)
            if present is not None:
                out[name] = mend(child, present)
            elif child.get("default") is not None and not (name in value and explicitly_nullable(child)):
                out[name] = copy.deepcopy(child["default"])
            elif name in value and (explicitly_nullable(child) or required):
                out[name] = None  # allowed, or an error that validation names
        out.update((k, v) for k, v in value.items() if k not in node["properties"])  # refused below
        return out
    if kind == "array" and isinstance(value, list):
        return [mend(node["items"], item) for item in value]
    return value


class AnswerReader:
    """`reader(text)` -> the row's raw_text, valid, fields and error for one generated answer."""

    def __init__(self, schema: ExtractionSchema):
        self.schema = schema
        _Validator.check_schema(schema.source_schema)
        self.source = _Validator(schema.source_schema)

    def __call__(self, value: Any, text: str) -> dict[str, Any]:
        """`value`: the parsed `text`. raw_text is `text`, or the mended answer's JSON when
        mending changed it."""
        mended = mend(self.schema.json_schema, value) if isinstance(value, dict) else value
        raw = text if mended == value else json.dumps(mended, ensure_ascii=False, separators=(",", ":"))
        fields, errors = coerce(self.schema, mended)
        if not errors:
            errors = error_messages(self.source, mended)
            fields = None if errors else fields
        if errors:
            return {"raw_text": raw, "valid": False, "fields": None, "error": "; ".join(errors)[:2000]}
        return {"raw_text": raw, "valid": True, "fields": fields, "error": None}
