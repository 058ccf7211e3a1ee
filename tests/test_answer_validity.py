"""A row that says `valid` is an instance of the schema the user gave, and of their class.

Random Pydantic models and hand-written JSON Schemas of the supported subset (defaults,
default_factory, Literal and Enum defaults, nested optional models, lists with bounds) are
loaded as users load them; random walks through the real decoding grammar (xgrammar, compiled as
the decoder compiles it, over single bytes), cut at random points and closed by the real Closer,
are read as the extractor reads them (`schemas.answer.AnswerReader`). Every closed answer must be
valid (but one holding a number beyond 64 bits, which no Parquet column holds), and its raw_text
must pass `jsonschema` on the user's original schema and the class's `model_validate`.
"""
from __future__ import annotations

import datetime
import enum
import itertools
import json
import re
import tempfile
from pathlib import Path
from typing import Literal, Optional

import jsonschema
import pytest
import xgrammar as xgr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from pageray.extractors.closing.closer import Closer
from pageray.extractors.answer_fields import clean_text
from pageray.schemas import generation_schema, load_schema
from pageray.schemas.answer import AnswerReader

from grammar_oracle import compiled, next_bytes, xgr_accepts


class LineItem(BaseModel):
    description: str = Field(description="What was sold")
    amount: float = Field(description="Line total")


class Invoice(BaseModel):
    """An invoice."""
    kind: Literal["invoice", "credit_note", "receipt"] = Field("invoice", description="Document kind")
    items: list[LineItem] = Field(default_factory=list, description="Billed lines")
    total: float = Field(description="Total due")


def read(schema, text: str) -> dict:
    """The row fields of one closed answer, read as the extractor reads it."""
    return AnswerReader(schema)(clean_text(json.loads(text, strict=False)), text)


def closed(schema, prefix: bytes) -> str:
    """`prefix` closed by the decoder's Closer, as the decoder's text."""
    closer = Closer(generation_schema(schema))
    closer.feed(prefix)
    return (prefix + closer.tail()).decode("utf-8", errors="replace")


# ---------------------------------------------------------------- the issue's invoice

def test_a_closed_invoice_takes_the_users_defaults_and_validates_under_the_class():
    schema = load_schema(Invoice)
    row = read(schema, closed(schema, b'{"kind":'))
    assert row["valid"] is True
    assert json.loads(row["raw_text"]) == {"kind": "invoice", "total": 0}  # items: no default in the schema
    assert row["fields"] == {"kind": "invoice", "items": None, "total": 0.0}
    Invoice.model_validate_json(row["raw_text"])
    jsonschema.validate(json.loads(row["raw_text"]), Invoice.model_json_schema())


def test_a_null_the_model_writes_where_the_user_allows_none_is_mended_the_same_way():
    schema = load_schema(Invoice)
    row = read(schema, '{"kind":null,"items":[{"description":"x","amount":1}],"total":3}')
    assert row["valid"] and json.loads(row["raw_text"])["kind"] == "invoice"
    assert Invoice.model_validate_json(row["raw_text"]).items[0].description == "x"


class Note(BaseModel):
    """A note."""
    title: Optional[str] = Field("untitled", description="Title")
    tags: Optional[list[str]] = Field(None, description="Tags")


def test_a_null_the_users_schema_allows_is_kept():
    schema = load_schema(Note)
    row = read(schema, '{"title":null,"tags":null}')
    assert row["valid"] and json.loads(row["raw_text"]) == {"title": None, "tags": None}


def test_a_hand_written_nullable_field_keeps_its_null_and_the_original_schema_is_kept(tmp_path):
    path = tmp_path / "memo.yaml"
    path.write_text("name: memo\nversion: '1'\ndescription: A memo.\nschema:\n  type: object\n"
                    "  required: [body]\n  properties:\n    body: {type: string, nullable: true}\n"
                    "    date: {type: string, format: date}\n    pages: {type: integer, default: 1}\n",
                    encoding="utf-8")
    schema = load_schema(str(path))
    assert schema.source_schema["properties"]["body"] == {"type": "string", "nullable": True}
    row = read(schema, '{"body":null,"date":null,"pages":null}')
    assert row["valid"] and json.loads(row["raw_text"]) == {"body": None, "pages": 1}
    assert row["fields"] == {"body": None, "date": None, "pages": 1}


def test_valid_means_valid_under_the_original_schema(tmp_path):
    """A constraint the rewritten schema does not carry still makes the row invalid: here a
    default the user's own schema refuses."""
    path = tmp_path / "bad_default.json"
    path.write_text(json.dumps({"title": "Bad", "description": "d", "type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "default": 0}}}), encoding="utf-8")
    schema = load_schema(str(path))
    row = read(schema, '{"n":null}')
    assert row["valid"] is False and "field 'n'" in row["error"] and row["fields"] is None


def test_the_grammar_writes_no_date_that_no_class_holds():
    """Year 0000 is no Python date (nor a Pydantic `date`); the grammar stops it, and the Closer too."""
    class Dated(BaseModel):
        """A dated page."""
        day: datetime.date = Field(description="Day")

    generated = generation_schema(load_schema(Dated))
    assert not xgr_accepts(generated, b'{"day":"0000-01-01"}')
    assert xgr_accepts(generated, b'{"day":"0001-01-01"}') and xgr_accepts(generated, b'{"day":"0400-02-29"}')
    with pytest.raises(ValueError):
        Closer(generated).feed(b'{"day":"0000')


def test_the_source_schema_survives_pickling_and_the_api_s_resolution(tmp_path):
    import pickle

    from pageray.pipeline.driver.api import resolve_run

    schema = load_schema(Invoice)
    assert pickle.loads(pickle.dumps(schema)).source_schema == Invoice.model_json_schema()
    again = resolve_run([str(tmp_path)], Invoice, tmp_path / "out").schema
    assert again.source_schema == Invoice.model_json_schema() and again.id == schema.id


# ---------------------------------------------------------------- random models and schemas

class Colour(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    S = 1
    L = 3


_names = itertools.count()
_SCALARS = [
    (str, st.text("ab z", max_size=3)),
    (int, st.integers(-5, 5)),
    (float, st.floats(-5, 5)),
    (bool, st.booleans()),
    (datetime.date, st.dates(datetime.date(1, 1, 1)).map(datetime.date.isoformat)),
    (Literal["a", "b"], st.sampled_from(["a", "b"])),
    (Colour, st.sampled_from(["red", "green"])),
    (Size, st.sampled_from([1, 3])),
]


@st.composite
def _type(draw, depth: int):
    """(annotation, Field kwargs for its constraints, a strategy for a default or None)."""
    kind = draw(st.integers(0, len(_SCALARS) + (1 if depth else -1)))
    if kind < len(_SCALARS):
        annotation, defaults = _SCALARS[kind]
        if annotation is str and draw(st.booleans()):
            return str, {"max_length": draw(st.integers(3, 6))}, defaults
        if annotation is int and draw(st.booleans()):
            return int, {"ge": -5, "le": draw(st.integers(5, 9))}, defaults
        return annotation, {}, defaults
    if kind == len(_SCALARS):
        item, _, _ = draw(_type(depth - 1))
        least = draw(st.integers(0, 2))
        return list[item], {"min_length": least, "max_length": least + draw(st.integers(0, 2))}, None
    return draw(_models(depth - 1)), {}, None


@st.composite
def _models(draw, depth: int = 2):
    fields = {}
    for i in range(draw(st.integers(1, 4))):
        annotation, constraints, defaults = draw(_type(depth))
        how = draw(st.sampled_from(["required", "default", "factory", "optional", "optional_value",
                                    "nullable_required"]))
        if how == "default" and defaults is not None:
            value = draw(defaults)
            if annotation is datetime.date:
                value = datetime.date.fromisoformat(value)
            elif annotation in (Colour, Size):
                value = annotation(value)
            field = Field(value, description=f"field {i}", **constraints)
        elif how == "factory" and str(annotation).startswith("list"):
            field = Field(default_factory=list, description=f"field {i}", **constraints)
        elif how.startswith("optional"):
            annotation = Optional[annotation]
            value = draw(defaults) if how == "optional_value" and defaults is not None else None
            field = Field(value, **constraints)
        elif how == "nullable_required":
            annotation, field = Optional[annotation], Field(**constraints)
        else:
            field = Field(**constraints)
        fields[f"f{i}"] = (annotation, field)
    return create_model(f"Model{next(_names)}", __doc__="A page.", **fields)


@st.composite
def _hand_written(draw, depth: int = 2):
    """A JSON Schema as a user writes one by hand (pageray's file format, no nullable: true)."""
    properties, required = {}, []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["string", "integer", "number", "boolean", "date", "enum"]
                                    + (["array", "object"] if depth else [])))
        node = {"string": {"type": "string", "maxLength": 5}, "integer": {"type": "integer", "minimum": 0},
                "number": {"type": "number"}, "boolean": {"type": "boolean"},
                "date": {"type": "string", "format": "date"}, "enum": {"enum": ["x", "y"]}}.get(kind)
        if kind == "array":
            node = {"type": "array", "items": draw(_hand_written(depth - 1)) if draw(st.booleans())
                    else {"type": "string"}, "maxItems": 2}
        elif kind == "object":
            node = draw(_hand_written(depth - 1))
        if draw(st.booleans()) and kind in ("string", "integer", "enum"):
            node["default"] = {"string": "dflt", "integer": 2, "enum": "y"}[kind]
        if draw(st.booleans()) and "type" in node:
            node["type"] = [node["type"], "null"]
        properties[f"p{i}"] = node
        if draw(st.booleans()):
            required.append(f"p{i}")
    return {"type": "object", "properties": properties, "required": required}


_LIKELY = b'n{}[],:"0123456789tf-'


def _walk(schema, rng, steps: int) -> bytes:
    """A random path through the decoding grammar: `steps` bytes it allows (fewer if it ends)."""
    matcher = xgr.GrammarMatcher(compiled(json.dumps(generation_schema(schema))))
    out = b""
    for _ in range(steps):
        allowed = next_bytes(matcher)
        if not allowed:
            break
        likely = [b for b in allowed if b in _LIKELY]
        byte = rng.choice(likely if likely and rng.random() < 0.85 else allowed)
        assert matcher.accept_token(byte)
        out += bytes([byte])
    return out


def _check(schema, rng, steps) -> dict:
    prefix = _walk(schema, rng, steps)
    text = closed(schema, prefix)
    assert xgr_accepts(generation_schema(schema), text.encode("utf-8"))
    row = read(schema, text)
    if not row["valid"]:  # the grammar lets a number past 64 bits (1E310, -1E19); no Parquet column holds it
        assert re.search(r"64.bit", row["error"]), (text, row["error"])
        return None
    jsonschema.validate(json.loads(row["raw_text"], strict=False), schema.source_schema)
    return json.loads(row["raw_text"], strict=False)


_settings = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@_settings
@given(_models(), st.randoms(use_true_random=False), st.integers(0, 150))
def test_every_closed_answer_of_a_pydantic_model_validates_under_its_class(model, rng, steps):
    schema = load_schema(model)
    assert schema.source_schema == model.model_json_schema()
    value = _check(schema, rng, steps)
    if value is not None:
        jsonschema.validate(value, model.model_json_schema())
        model.model_validate(value)


@_settings
@given(_hand_written(), st.randoms(use_true_random=False), st.integers(0, 150))
def test_every_closed_answer_of_a_hand_written_schema_validates_under_it(json_schema, rng, steps):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.json"
        path.write_text(json.dumps({"name": "page", "version": "1", "description": "A page.",
                                    "schema": json_schema}), encoding="utf-8")
        schema = load_schema(str(path))
    assert schema.source_schema == json_schema
    value = _check(schema, rng, steps)
    if value is not None:
        jsonschema.validate(value, json_schema)


@pytest.mark.parametrize("steps", [0, 3, 12, 40])
def test_the_issue_s_invoice_at_every_cut(steps):
    import random

    schema = load_schema(Invoice)
    value = _check(schema, random.Random(steps), steps)
    assert value is not None
    Invoice.model_validate(value)
