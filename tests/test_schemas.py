"""Built-in schemas and what is derived from a schema: id, generation schema, Arrow type,
prompt and summary. (Coercion: test_schemas_coerce.py; refusals: test_schemas_refusals.py.)"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pyarrow as pa
import pytest
import xgrammar

from pageray.schemas import (ExtractionSchema, SchemaError, arrow_type, build_prompt, generation_schema,
                     list_builtin, load_schema, schema_summary)
from pageray.schemas.patterns import DATE_PATTERN

BUILTINS = ["form", "invoice", "paper", "receipt", "table", "transcribe"]


def compile_grammar(gs: dict) -> xgrammar.Grammar:
    return xgrammar.Grammar.from_json_schema(json.dumps(gs), any_whitespace=False,
                                             separators=(",", ":"))


def grammar_accepts():
    """xgrammar's (private) helper that runs a whole string through a grammar."""
    testing = pytest.importorskip("xgrammar.testing")
    helper = getattr(testing, "_is_grammar_accept_string", None)
    if helper is None:
        pytest.skip("this xgrammar has no string-acceptance helper")
    return helper


def reversed_keys(value):
    """The same data with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


def make(properties: dict, required: list[str] | None = None, **extra) -> ExtractionSchema:
    json_schema = {"type": "object", "properties": properties, **extra}
    if required is not None:
        json_schema["required"] = required
    return ExtractionSchema(name="t", version="1", description="Test.", json_schema=json_schema)


def field(type_, **kw) -> dict:
    return {"type": type_, "description": "A field.", **kw}


# --- built-ins -----------------------------------------------------------------------------

def test_list_builtin_names_every_builtin():
    assert list_builtin() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_is_complete(name):
    schema = load_schema(name)
    assert (schema.name, schema.version) == (name, "1")
    assert re.fullmatch(r"[0-9a-f]{16}", schema.id), schema.id
    assert schema.description.strip()
    assert load_schema(name) == schema and hash(load_schema(name)) == hash(schema)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_generation_schema_compiles_with_xgrammar(name):
    compile_grammar(generation_schema(load_schema(name)))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_id_does_not_depend_on_key_order(name):
    schema = load_schema(name)
    shuffled = ExtractionSchema(**reversed_keys(schema.to_dict()))
    assert shuffled.id == schema.id


def test_id_is_sha256_of_canonical_json():
    schema = load_schema("invoice")
    canonical = json.dumps(schema.to_dict(), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    assert schema.id == hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_id_changes_with_content():
    base = make({"a": field("string")})
    changed = make({"a": field("string", description="Another.")})
    assert base.id != changed.id


def test_schema_is_frozen_and_keeps_its_own_copy():
    properties = {"a": field("string")}
    schema = make(properties)
    before = schema.id
    properties["a"]["description"] = "Changed behind its back."
    assert schema.id == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        schema.name = "other"  # type: ignore[misc]


def test_required_choices_in_builtins():
    gs = generation_schema(load_schema("invoice"))["properties"]
    assert gs["total"] == {"type": "number"}
    assert gs["line_items"]["type"] == "array"
    assert gs["invoice_date"]["anyOf"][1] == {"type": "null"}


# --- generation schema ---------------------------------------------------------------------

def test_generation_schema_follows_the_contract_exactly():
    schema = make({
        "s": field("string"),
        "d": field("string", format="date"),
        "n": field("number"),
        "i": field(["integer", "null"]),
        "b": field("boolean", nullable=True),
        "e": {"enum": ["x", "y", None], "description": "Choice."},
        "o": field("object", properties={"z": field("string")}, required=["z"]),
        "a": field("array", items=field("number")),
    }, required=["s", "d", "n", "i", "o", "a"], title="ignored", additionalProperties=False)
    assert generation_schema(schema) == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "d": {"type": "string", "pattern": DATE_PATTERN},
            "n": {"type": "number"},
            "i": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "b": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            "e": {"anyOf": [{"enum": ["x", "y"]}, {"type": "null"}]},
            "o": {"type": "object", "properties": {"z": {"type": "string"}}, "required": ["z"],
                  "additionalProperties": False},
            "a": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["s", "d", "n", "i", "b", "e", "o", "a"],
        "additionalProperties": False,
    }


def test_optional_fields_become_nullable_but_stay_required_keys():
    gs = generation_schema(make({"b": field("string"), "a": field("string")}))
    assert gs["required"] == ["b", "a"]
    assert gs["properties"]["a"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}


def test_generation_schema_rejects_impossible_dates():
    grammar = compile_grammar(generation_schema(make({"d": field("string", format="date")},
                                                     required=["d"])))
    accepts = grammar_accepts()
    assert accepts(grammar, '{"d":"2024-02-29"}')
    assert not accepts(grammar, '{"d":"2023-02-29"}')
    assert not accepts(grammar, '{"d":"2023-04-31"}')


# --- Arrow ---------------------------------------------------------------------------------

def test_invoice_arrow_type():
    struct = arrow_type(load_schema("invoice"))
    assert struct.field("total").type == pa.float64()
    assert struct.field("invoice_date").type == pa.date32()
    line_items = struct.field("line_items").type
    assert pa.types.is_list(line_items) and pa.types.is_struct(line_items.value_type)
    assert line_items.value_type.field("amount").type == pa.float64()
    assert [f.name for f in struct] == list(load_schema("invoice").json_schema["properties"])
    assert all(f.nullable for f in struct)


def test_arrow_scalar_and_enum_types():
    struct = arrow_type(make({
        "i": field("integer"), "b": field("boolean"), "t": field("array", items=field("string")),
        "es": {"enum": ["a", "b"], "description": "Text choice."},
        "en": {"enum": [1, 2.5, None], "description": "Number choice."},
    }))
    assert [f.type for f in struct] == [pa.int64(), pa.bool_(), pa.list_(pa.string()),
                                        pa.string(), pa.float64()]

# --- prompt and summary --------------------------------------------------------------------

def test_prompt_lists_every_field_with_type_and_description():
    schema = load_schema("invoice")
    prompt = build_prompt(schema)
    assert schema.description in prompt
    assert "- invoice_date (date YYYY-MM-DD): The date the invoice was issued" in prompt
    assert "\n  - line_items[].amount (number): " in prompt
    assert "- total (number, required): " in prompt
    for words in ("one JSON object", "null", "YYYY-MM-DD", "thousands separators",
                  "currency symbols"):
        assert words in prompt
    assert build_prompt(load_schema("invoice")) == prompt


def test_prompt_shows_enums_examples_and_defaults():
    prompt = build_prompt(make({
        "kind": {"enum": ["a", "b"], "description": "Kind.", "examples": ["a"]},
        "n": field("integer", default=0, title="Count"),
    }))
    assert '- kind (one of "a", "b"): Kind. Examples: "a".' in prompt
    assert "- n (integer): Count. A field. Default: 0." in prompt


@pytest.mark.parametrize("name", BUILTINS)
def test_generation_schema_uses_only_contract_keywords(name):
    allowed = {"type", "properties", "required", "additionalProperties", "items", "enum",
               "pattern", "anyOf"}

    def check(node):
        assert set(node) <= allowed, node
        for child in node.get("properties", {}).values():
            check(child)
        for child in [node["items"]] if "items" in node else node.get("anyOf", []):
            check(child)
        if node.get("type") == "object":
            assert node["required"] == list(node["properties"])
            assert node["additionalProperties"] is False

    check(generation_schema(load_schema(name)))


def test_schema_summary_shows_header_and_field_tree():
    schema = load_schema("invoice")
    summary = schema_summary(schema)
    for part in ("name:        invoice", f"id:          {schema.id}", "version:     1",
                 "\n  total*: number", "\n    amount: number", "\n  vendor: object"):
        assert part in summary


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)
