"""Output token budgets (schemas.budget): derived from the fields, set by a schema file or a
Pydantic model, resolved against --max-new-tokens. No model, no Ray."""
from __future__ import annotations

import copy
import json

import pytest

from pageray.pipeline.config import RunConfig
from pageray.pipeline.errors import ConfigError
from pageray.schemas import ExtractionSchema, SchemaError, list_builtin, load_schema
from pageray.schemas.budget import (DERIVED_MAX, DERIVED_MIN, MAX_TOKENS, MIN_TOKENS, ROUND_TO,
                            derived_budget, effective_budget)


def field(type_="string", description="A field.", **kw) -> dict:
    return {"type": type_, "description": description, **kw}


def fields(**properties) -> dict:
    return {"type": "object", "properties": properties}


def make(max_new_tokens=None, **properties) -> ExtractionSchema:
    return ExtractionSchema(name="t", version="1", description="Test.",
                            json_schema=fields(**properties), max_new_tokens=max_new_tokens)


LINE = fields(description=field(), amount=field("number"))


# --- the derived default -------------------------------------------------------------------

def test_a_small_schema_gets_the_floor_and_a_huge_one_the_ceiling():
    assert derived_budget(fields(a=field())) == DERIVED_MIN
    huge = fields(**{f"f{i}": field("array", items=field("array", items=LINE)) for i in range(6)})
    assert derived_budget(huge) == DERIVED_MAX


def test_budgets_are_round_numbers_and_the_function_is_pure():
    schema = fields(**{f"f{i}": field("number") for i in range(40)})
    before = copy.deepcopy(schema)
    budget = derived_budget(schema)
    assert DERIVED_MIN < budget < DERIVED_MAX and budget % ROUND_TO == 0
    assert derived_budget(schema) == budget and schema == before


def test_more_fields_never_cost_less():
    small = fields(**{f"f{i}": field() for i in range(20)})
    larger = fields(**{f"f{i}": field() for i in range(30)})
    assert derived_budget(larger) > derived_budget(small)


def test_arrays_of_objects_and_free_text_cost_more_than_a_scalar():
    scalar = fields(items=field())
    listed = fields(items=field("array", items=LINE))
    assert derived_budget(fields(a=field(), **{f"n{i}": field("number") for i in range(20)})) \
        < derived_budget(fields(a=field("array", items=LINE), **{f"n{i}": field("number") for i in range(20)}))
    assert derived_budget(listed) > derived_budget(scalar)
    # free text by name, or by description
    assert derived_budget(fields(text=field())) > derived_budget(fields(title=field()))
    assert derived_budget(fields(x=field(description="The page's full text."))) > derived_budget(fields(x=field()))


def test_nullable_fields_cost_what_their_value_costs():
    many = {f"n{i}": field("number") for i in range(30)}
    nullable = {k: {**v, "type": ["number", "null"]} for k, v in many.items()}
    assert derived_budget(fields(**nullable)) == derived_budget(fields(**many))


def test_length_and_item_bounds_are_used_where_a_schema_has_them():
    # read from the raw keys, so they count once the subset accepts them (schemas.constraints)
    assert derived_budget({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3000}}}) \
        > derived_budget(fields(a=field()))
    unbounded = {"type": "array", "items": LINE}
    assert derived_budget(fields(a={**unbounded, "maxItems": 2})) < derived_budget(fields(a=unbounded)) \
        < derived_budget(fields(a={**unbounded, "minItems": 30}))


# --- the schema's own budget ---------------------------------------------------------------

def test_builtins_that_read_long_answers_set_their_budget_the_others_derive_one():
    budgets = {name: effective_budget(None, load_schema(name)) for name in list_builtin()}
    assert budgets["transcribe"] == (1536, "schema")
    assert budgets["table"] == (1024, "schema")
    assert budgets["invoice"] == (768, "schema")
    assert {budgets[n][1] for n in ("form", "paper", "receipt")} == {"derived"}
    assert budgets["receipt"][0] < budgets["invoice"][0]


def test_the_budget_is_not_part_of_the_id():
    assert make(None, a=field()).id == make(1024, a=field()).id
    assert make(None, a=field()) != make(1024, a=field())  # but the schemas are not equal
    assert make(1024, a=field()) == make(1024, a=field())


@pytest.mark.parametrize("bad", [MIN_TOKENS - 1, MAX_TOKENS + 1, 0, -5, "1024", 512.0, True])
def test_a_budget_outside_the_bounds_is_refused_naming_the_range(bad):
    with pytest.raises(SchemaError, match=f"max_new_tokens {bad!r} is not usable.*{MIN_TOKENS} to {MAX_TOKENS}"):
        make(bad, a=field())


@pytest.mark.parametrize("good", [MIN_TOKENS, MAX_TOKENS])
def test_the_bounds_themselves_are_accepted(good):
    assert make(good, a=field()).max_new_tokens == good


def test_a_schema_file_sets_its_budget_and_a_bad_one_names_the_file(tmp_path):
    text = ("name: memo\nversion: \"2\"\nmax_new_tokens: 1200\ndescription: An internal memo.\n"
            "schema:\n  type: object\n  properties:\n    subject: {type: string, description: A field.}\n")
    path = tmp_path / "memo.yaml"
    path.write_text(text)
    schema = load_schema(str(path))
    assert schema.max_new_tokens == 1200 and effective_budget(None, schema) == (1200, "schema")
    path.write_text(text.replace("1200", "9000"))
    with pytest.raises(SchemaError, match=f"{path}: memo: max_new_tokens 9000 is not usable"):
        load_schema(str(path))
    path.write_text(text.replace("max_new_tokens", "max_tokens"))
    with pytest.raises(SchemaError, match="'max_tokens'.*allowed keys are .*max_new_tokens"):
        load_schema(str(path))


def test_a_pydantic_model_sets_its_budget_with_a_class_attribute():
    from pydantic import BaseModel, Field

    class Memo(BaseModel):
        """An internal memo."""
        __max_new_tokens__ = 1024
        subject: str = Field(description="The memo's subject line.")

    class LongMemo(Memo):
        """A memo with a body: its budget is its own, not inherited."""
        body: str = Field(description="The memo's text.")

    assert "__max_new_tokens__" not in json.dumps(Memo.model_json_schema())
    assert load_schema(Memo).max_new_tokens == 1024
    assert load_schema(LongMemo).max_new_tokens is None
    Memo.__max_new_tokens__ = 4
    with pytest.raises(SchemaError, match="max_new_tokens 4 is not usable"):
        load_schema(Memo)


# --- resolution against the flag -----------------------------------------------------------

def test_the_flag_wins_over_the_schema_which_wins_over_the_derived_default():
    derived = derived_budget(fields(a=field()))
    assert effective_budget(64, make(1024, a=field())) == (64, "flag")
    assert effective_budget(None, make(1024, a=field())) == (1024, "schema")
    assert effective_budget(None, make(None, a=field())) == (derived, "derived")


def test_the_run_config_leaves_the_budget_to_the_schema_and_resolves_it_once(tmp_path):
    values = dict(inputs=[str(tmp_path)], out=str(tmp_path / "out"), schema_ref="transcribe")
    config = RunConfig.build(**values)
    assert config.max_new_tokens is None
    resolved, source = config.with_budget(config.extraction_schema())
    assert (resolved.max_new_tokens, source) == (1536, "schema")
    assert resolved.extract_settings().max_new_tokens == 1536
    assert resolved.model_dump()["max_new_tokens"] == 1536  # what the run record saves
    given, source = RunConfig.build(**values, max_new_tokens=300).with_budget(config.extraction_schema())
    assert (given.max_new_tokens, source) == (300, "flag")


def test_the_flag_has_the_schemas_bounds():
    values = dict(inputs=["x"], out="o", schema_ref="invoice")
    for good in (MIN_TOKENS, MAX_TOKENS):
        assert RunConfig.build(**values, max_new_tokens=good).max_new_tokens == good
    for bad in (MIN_TOKENS - 1, MAX_TOKENS + 1):
        with pytest.raises(ConfigError, match=f"--max-new-tokens: max_new_tokens {bad} is not usable.*"
                                              f"{MIN_TOKENS} to {MAX_TOKENS}"):
            RunConfig.build(**values, max_new_tokens=bad)
