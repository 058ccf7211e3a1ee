"""Schemas users already have: Pydantic models (the class, "file.py:Class", its
model_json_schema() dumped to a file) and plain JSON Schema files, rewritten into pageray's
dialect and checked as usual; and what is refused, naming the field and the fix."""
from __future__ import annotations

import datetime
import json
import textwrap
from typing import List, Union

import pytest
import yaml
from pydantic import BaseModel, Field

from pageray.extractors.closing.completion import min_instance
from pageray.schemas import ExtractionSchema, SchemaError, arrow_type, build_prompt, generation_schema, \
    load_schema
from pageray.schemas.generation import validation_schema
from pageray.schemas.patterns import DATE_PATTERN

MODELS_PY = '''
import datetime
import enum
from typing import Literal, Optional

from pydantic import BaseModel, Field


class Status(str, enum.Enum):
    paid = "paid"
    open = "open"
    overdue = "overdue"


class Party(BaseModel):
    """A company or person on the invoice."""

    name: str = Field(description="The party's name.")
    address: Optional[str] = Field(None, description="The postal address as one line.")


class LineItem(BaseModel):
    description: str = Field(description="What was billed.")
    quantity: Optional[float] = Field(None, description="How many units.")
    amount: float = Field(description="The line total.")


class Invoice(BaseModel):
    """An invoice: who billed whom, when, and for what."""

    number: Optional[str] = Field(None, description="The invoice number as printed.")
    issued: Optional[datetime.date] = Field(None, description="The date of issue.")
    vendor: Party = Field(description="Who issued the invoice.")
    customer: Optional[Party] = Field(None, description="Who is billed.")
    status: Status = Field(description="Whether it is paid.")
    kind: Literal["invoice", "credit_note"] = Field(description="The document kind.")
    currency: Literal["EUR"] = Field(description="The currency (always EUR here).")
    line_items: list[LineItem] = Field(description="Every billed line.")
    total: float = Field(description="The amount due.")
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The models above, defined in a real file so that "file.py:Invoice" can load them too."""
    path = tmp_path_factory.mktemp("models") / "models.py"
    path.write_text(MODELS_PY, encoding="utf-8")
    namespace: dict = {"__name__": "invoice_models_in_test"}
    exec(compile(MODELS_PY, str(path), "exec", dont_inherit=True), namespace)  # our own code
    return path, namespace


def write(tmp_path, filename: str, document) -> str:
    path = tmp_path / filename
    text = (json.dumps(document) if filename.endswith(".json")
            else yaml.safe_dump(document, sort_keys=False))
    path.write_text(text, encoding="utf-8")
    return str(path)


def refused(spec) -> str:
    with pytest.raises(SchemaError) as caught:
        load_schema(spec)
    return str(caught.value)


# --- the nine-field Invoice, three ways -----------------------------------------------------

def test_pydantic_invoice_loads_three_ways_as_one_schema(models, tmp_path):
    path, namespace = models
    invoice = namespace["Invoice"]
    from_class = load_schema(invoice)
    from_file = load_schema(f"{path}:Invoice")
    from_dump = load_schema(write(tmp_path, "invoice.json", invoice.model_json_schema()))
    for other in (from_file, from_dump):
        assert generation_schema(other) == generation_schema(from_class)
        assert arrow_type(other) == arrow_type(from_class)
        assert other == from_class and other.id == from_class.id
    assert from_class.name == "invoice"
    assert from_class.description == "An invoice: who billed whom, when, and for what."
    assert len(from_class.version) == 8  # the schema's hash: stable across the three
    assert from_class.version == from_dump.version


def test_pydantic_invoice_is_rewritten_into_the_dialect(models):
    schema = load_schema(models[1]["Invoice"])
    props = schema.json_schema["properties"]
    assert list(props) == ["number", "issued", "vendor", "customer", "status", "kind",
                           "currency", "line_items", "total"]
    assert props["number"] == {"type": ["string", "null"],
                               "description": "The invoice number as printed."}
    assert props["issued"]["type"] == ["string", "null"] and props["issued"]["format"] == "date"
    assert props["vendor"]["type"] == "object"
    # The field's description wins over the nested model's docstring.
    assert props["vendor"]["description"] == "Who issued the invoice."
    assert props["customer"]["type"] == ["object", "null"]
    assert props["status"]["enum"] == ["paid", "open", "overdue"]
    assert props["currency"]["enum"] == ["EUR"]
    assert props["line_items"]["items"]["properties"]["quantity"]["type"] == ["number", "null"]
    text = json.dumps(schema.json_schema)
    for gone in ("$ref", "$defs", "anyOf", "const", '"title"', '"default"'):
        assert gone not in text


def test_pydantic_invoice_types_and_grammar(models):
    schema = load_schema(models[1]["Invoice"])
    struct = arrow_type(schema)
    assert str(struct.field("issued").type) == "date32[day]"
    assert str(struct.field("vendor").type) == "struct<name: string, address: string>"
    assert str(struct.field("status").type) == "string"
    assert str(struct.field("line_items").type).startswith("list<item: struct<description")
    gs = generation_schema(schema)
    assert gs["properties"]["issued"] == {"anyOf": [{"type": "string", "pattern": DATE_PATTERN},
                                                    {"type": "null"}]}
    assert gs["properties"]["vendor"]["required"] == ["name", "address"]
    assert validation_schema(schema)["required"] == ["vendor", "status", "kind", "currency",
                                                     "line_items", "total"]
    # The decoder can always close a row of this grammar.
    assert json.loads(min_instance(gs))["line_items"] == []
    prompt = build_prompt(schema)
    assert "issued (date YYYY-MM-DD): The date of issue." in prompt
    assert "Default: null" not in prompt and "Number." not in prompt


def test_wrapped_model_dump_loads_too(models, tmp_path):
    document = {"name": "invoice", "version": "3", "description": "An invoice.",
                "schema": models[1]["Invoice"].model_json_schema()}
    schema = load_schema(write(tmp_path, "wrapped.yaml", document))
    assert generation_schema(schema) == generation_schema(load_schema(models[1]["Invoice"]))
    assert schema.version == "3"


# --- plain JSON Schema files ----------------------------------------------------------------

def test_plain_file_name_description_and_version(tmp_path):
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "Purchase Order", "description": "A purchase order.",
                "type": "object",
                "definitions": {"money": {"type": "number", "description": "An amount."}},
                "properties": {"total": {"$ref": "#/definitions/money"},
                               "po": {"type": "string", "description": "The PO number.",
                                      "title": "PO"}},
                "required": ["total"]}
    schema = load_schema(write(tmp_path, "po.yaml", document))
    assert (schema.name, schema.description) == ("purchase_order", "A purchase order.")
    assert schema.json_schema["properties"]["total"] == {"type": "number",
                                                         "description": "An amount."}
    assert schema.json_schema["properties"]["po"]["title"] == "PO"  # a real title is kept
    again = load_schema(write(tmp_path, "po2.json", dict(reversed(list(document.items())))))
    assert again.version == schema.version
    del document["title"]
    assert load_schema(write(tmp_path, "Field-Notes.json", document)).name == "field-notes"


def test_plain_file_without_description_says_where_it_goes(tmp_path):
    document = {"type": "object", "properties": {"a": {"type": "string", "description": "A."}}}
    message = refused(write(tmp_path, "memo.json", document))
    assert "memo: the JSON Schema has no top-level 'description'" in message
    assert "docstring" in message


def test_allof_wrapper_and_nested_optionals_are_inlined(tmp_path):
    document = {"title": "Memo", "description": "A memo.", "type": "object",
                "$defs": {"Person": {"title": "Person", "type": "object", "properties": {
                    "name": {"type": "string", "description": "The name."}}}},
                "properties": {
                    "author": {"allOf": [{"$ref": "#/$defs/Person"}], "description": "Who."},
                    "editor": {"anyOf": [{"allOf": [{"$ref": "#/$defs/Person"}]},
                                         {"type": "null"}], "description": "Who edited."},
                    "pages": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                              "default": 1, "description": "The page count."}}}
    props = load_schema(write(tmp_path, "memo.json", document)).json_schema["properties"]
    assert props["author"] == {"type": "object", "description": "Who.", "properties": {
        "name": {"type": "string", "description": "The name."}}}
    assert props["editor"]["type"] == ["object", "null"]
    assert props["pages"] == {"type": ["integer", "null"], "default": 1,
                              "description": "The page count."}  # a real default is kept


# --- refusals -------------------------------------------------------------------------------

class TreeNode(BaseModel):
    """A node of a tree."""

    label: str = Field(description="The label.")
    children: List["TreeNode"] = Field(description="The subtrees.")


class Shape(BaseModel):
    """A shape."""

    size: Union[int, str] = Field(description="The size.")


class Priced(BaseModel):
    """A priced thing."""

    name: str = Field(description="The name.")
    price: float = Field(ge=0, multiple_of=0.01, description="The price.")


class Stamped(BaseModel):
    """A timestamped thing."""

    at: datetime.datetime = Field(description="When.")


def test_recursive_model_is_refused_naming_the_path():
    message = refused(TreeNode)
    assert "tree_node: field 'children[]'" in message
    assert "recursive" in message and "Parquet column" in message


def test_union_is_refused_naming_the_field_and_the_fix():
    message = refused(Shape)
    assert "shape: field 'size': 'anyOf' of integer, string is not supported" in message
    assert "use one type, or Optional[X]" in message


def test_constraints_the_decoder_cannot_enforce_are_refused_not_dropped():
    message = refused(Priced)
    assert "priced: field 'price': unsupported keyword 'multipleOf'" in message
    assert "the decoder cannot enforce it; remove it" in message
    assert "minimum" not in message  # enforced, so accepted
    assert load_schema(Stamped).json_schema["properties"]["at"]["format"] == "date-time"


def test_missing_and_remote_references_are_refused(tmp_path):
    document = {"title": "Memo", "description": "A memo.", "type": "object",
                "$defs": {"Other": {"type": "string"}},
                "properties": {"author": {"$ref": "#/$defs/Person", "description": "Who."}}}
    message = refused(write(tmp_path, "memo.json", document))
    assert "memo: field 'author': '$ref' '#/$defs/Person' does not point to a schema" in message
    document["properties"]["author"]["$ref"] = "https://example.com/person.json"
    assert "only local references" in refused(write(tmp_path, "memo.json", document))
    document["properties"]["author"]["$ref"] = "#"
    message = refused(write(tmp_path, "memo.json", document))
    assert "field 'author': '$ref' '#' refers back" in message


def test_all_problems_are_listed_at_once(tmp_path):
    document = {"title": "Memo", "description": "A memo.", "type": "object", "properties": {
        "a": {"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "A."},
        "b": {"oneOf": [{"type": "number"}, {"type": "boolean"}], "description": "B."},
        "c": {"$ref": "#/$defs/Missing", "description": "C."}}}
    message = refused(write(tmp_path, "memo.json", document))
    assert "3 problems" in message
    assert "field 'b': 'oneOf' of number, boolean" in message
    assert "field 'c': '$ref' '#/$defs/Missing' does not point" in message
    document["properties"] = {
        "b": {"type": "number", "multipleOf": 3, "description": "B."},
        "c": {"type": "string", "pattern": "^(?=x)x$", "description": "C."}}
    message = refused(write(tmp_path, "memo.json", document))
    assert "2 problems" in message
    assert "field 'b': unsupported keyword 'multipleOf'" in message
    assert "field 'c': 'pattern' '^(?=x)x$' uses lookaround" in message


def test_not_a_model_and_bad_specs(tmp_path, models):
    assert "not a Pydantic model class" in refused(dict)
    assert "has no 'Nope'" in refused(f"{models[0]}:Nope")
    assert "its models:" in refused(f"{models[0]}:Nope")
    assert "was not found" in refused(f"{tmp_path / 'missing.py'}:Invoice")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    assert "RuntimeError: boom" in refused(f"{broken}:Invoice")
    assert "importing module" in refused("no_such_module_xyz:Invoice")


def test_module_spec_and_version_attribute(monkeypatch, tmp_path):
    (tmp_path / "user_models_mod.py").write_text(textwrap.dedent('''
        from pydantic import BaseModel, Field

        class HTTPResponse(BaseModel):
            """An HTTP response printed on a page."""
            __version__ = "7"
            status: int = Field(description="The status code.")
    '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    schema = load_schema("user_models_mod:HTTPResponse")
    assert (schema.name, schema.version) == ("http_response", "7")


def test_dialect_schemas_are_unchanged_by_the_rewrite():
    # ExtractionSchema itself still accepts only the dialect: the rewrite lives in loading.
    with pytest.raises(SchemaError, match="unsupported keyword 'anyOf'"):
        ExtractionSchema(name="x", version="1", description="X.", json_schema={
            "type": "object", "properties": {"a": {"anyOf": [{"type": "string"}],
                                                   "description": "A."}}})
    builtin = load_schema("invoice")
    assert builtin.version == "1" and "title" not in json.dumps(builtin.json_schema)
