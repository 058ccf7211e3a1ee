"""Field schemas outside the supported JSON-Schema subset or its limits, and what the refusal
says: each message names the schema, the field path and the fix. (Files: test_schemas_load.py.)"""
from __future__ import annotations

import pytest

from pageray.schemas import ExtractionSchema, SchemaError, build_prompt, generation_schema, schema_summary


def field(type_="string", **kw) -> dict:
    return {"type": type_, "description": "A field.", **kw}


def build(properties: dict, name: str = "invoice", **extra) -> ExtractionSchema:
    return ExtractionSchema(name=name, version="1", description="Test.",
                            json_schema={"type": "object", "properties": properties, **extra})


def refused(properties: dict, **extra) -> str:
    with pytest.raises(SchemaError) as caught:
        build(properties, **extra)
    return str(caught.value)


def nested(levels: int) -> dict:
    """Properties whose innermost field sits `levels` objects deep (a.a.a...)."""
    node = field()
    for _ in range(levels - 1):
        node = field("object", properties={"a": node})
    return {"a": node}


# --- the JSON-Schema subset ----------------------------------------------------------------

@pytest.mark.parametrize("keyword, value, fix", [
    ("multipleOf", 0.5, "cannot enforce it; remove it"),
    ("anyOf", [{"type": "number"}], "one type"),
    ("oneOf", [{"type": "number"}], "one type"),
    ("$ref", "#/$defs/x", "inline"),
    ("uniqueItems", True, "cannot enforce it; remove it"),
    ("const", 1, "enum"),
])
def test_unsupported_keyword_names_keyword_field_and_fix(keyword, value, fix):
    item = field("object", properties={"amount": field("number", **{keyword: value})})
    message = refused({"line_items": field("array", items=item)})
    assert message.startswith("invoice: field 'line_items[].amount': ")
    assert f"unsupported keyword '{keyword}'" in message and fix in message


def test_pattern_properties_and_other_formats_are_refused():
    message = refused({"o": field("object", properties={"x": field()},
                                  patternProperties={"^x": field()})})
    assert "field 'o': unsupported keyword 'patternProperties'" in message
    message = refused({"host": field(format="hostname")})
    assert "field 'host': unsupported format 'hostname'; supported: date, date-time" in message


def test_a_field_without_description_is_named_in_the_prompt_and_warned_about():
    schema = build({"vendor": field("object", properties={"name": {"type": "string"},
                                                          "vat_id": {"type": "string",
                                                                     "title": "VAT number"}})})
    prompt = build_prompt(schema)
    assert "- vendor.name (string): Name." in prompt
    assert "- vendor.vat_id (string): VAT number." in prompt
    summary = schema_summary(schema)
    assert "warning: 2 fields have no description" in summary and "vendor.name, vendor.vat_id" in summary


def test_too_deep_is_refused_with_the_limit():
    build(nested(6))
    message = refused(nested(7))
    assert "field 'a.a.a.a.a.a.a'" in message and "the limit is 6" in message


def test_arrays_count_as_nesting_levels():
    deep = field()
    for _ in range(6):
        deep = field("array", items=deep)
    assert "the limit is 6" in refused({"grid": deep})


def test_too_many_fields_is_refused_with_the_limit():
    build({f"f{i}": field() for i in range(200)})
    message = refused({f"f{i}": field() for i in range(201)})
    assert "field 'f200'" in message and "the limit is 200" in message


@pytest.mark.parametrize("name", ["1st", "has space", "x" * 65, "prix_unité", "a-b", ""])
def test_property_names_must_be_column_names(name):
    message = refused({name: field()})
    assert f"property name {name!r}" in message and "letters, digits and '_'" in message


def test_property_names_differing_only_in_case_are_refused():
    assert "only in case" in refused({"Total": field(), "total": field()})


@pytest.mark.parametrize("node, words", [
    (field("array"), "needs 'items'"),
    (field("array", items=[field()]), "needs 'items'"),
    (field("object"), "at least one field"),
    (field("object", properties={"x": field()}, additionalProperties=True), "only be false"),
    (field("string", items=field()), "'items' applies only to type array"),
    (field(["string", "number"]), "not supported"),
    (field("null"), "unknown type"),
    (field(None), "has no 'type'"),
    (field(description="x" * 2001), "the limit is 2000"),
    (field(description=""), "non-empty"),
    (field(nullable="yes"), "'nullable' must be true or false"),
    (field(examples="INV-1"), "'examples' must be a list"),
    ({"enum": list(range(257)), "description": "Big."}, "the limit is 256"),
    ({"enum": ["a", 1], "description": "Mixed."}, "all strings or all numbers"),
    ({"enum": [True, False], "description": "Bools."}, "all strings or all numbers"),
    ({"enum": [None], "description": "Only null."}, "at least one non-null"),
    ({"enum": ["a", "a"], "description": "Twice."}, "twice"),
    (field("number", enum=["a"]), "does not match"),
    (field("integer", enum=[1.5]), "use type: number"),
    (field("number", format="date"), "only to type string"),
    ({"enum": ["a"], "format": "date", "description": "E."}, "cannot be combined"),
])
def test_field_shape_errors_name_the_field(node, words):
    message = refused({"x": node})
    assert "field 'x'" in message and words in message, message


def test_required_must_name_existing_properties():
    message = refused({"x": field()}, required=["x", "y"])
    assert "'required' names 'y'" in message and "schema root" in message


def test_root_must_be_a_plain_object():
    for json_schema in ({"type": "string", "description": "x"}, [],
                        {"type": ["object", "null"], "properties": {"x": field()}}):
        with pytest.raises(SchemaError, match="schema root"):
            ExtractionSchema(name="t", version="1", description="T.", json_schema=json_schema)


def test_all_problems_are_reported_at_once():
    message = refused({"a": {"type": "strin"}, "b": field(minimum=1)})
    assert message.startswith("invoice: 2 problems") and "'a'" in message and "'b'" in message


def test_supported_nullable_spellings_are_accepted():
    schema = build({"a": field(["string", "null"]), "b": field(nullable=True),
                    "c": {"enum": ["x", None], "description": "C."},
                    "d": field("string", format="date", examples=["2024-01-31"], default=None,
                               title="D")}, required=["a", "b", "c", "d"])
    properties = generation_schema(schema)["properties"]
    for name in "abc":
        assert properties[name]["anyOf"][1] == {"type": "null"}
    assert "anyOf" not in properties["d"]  # required, and a null default does not make it nullable


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "My Invoice"}, "e.g. 'my_invoice'"),
    ({"name": "x" * 65}, "1-64 characters"),
    ({"version": 1}, 'quote numbers: version: "1"'),
    ({"description": " "}, "non-empty 'description'"),
    ({"description": "d" * 2001}, "the limit is 2000"),
])
def test_schema_header_is_checked(kwargs, words):
    args = {"name": "t", "version": "1", "description": "T.",
            "json_schema": {"type": "object", "properties": {"x": field()}}, **kwargs}
    with pytest.raises(SchemaError) as caught:
        ExtractionSchema(**args)
    assert words in str(caught.value)


def test_non_json_values_are_refused_with_their_path():
    message = refused({"x": field(default=float("nan"))})
    assert "schema.properties.x.default" in message and "finite" in message
