"""Property tests: any answer the generation schema admits is accepted by the compiled grammar,
passes `coerce`, and fits the Arrow type; so the grammar, validation and Parquet agree."""
from __future__ import annotations

import datetime
import json

import hypothesis.strategies as st
import pyarrow as pa
import pytest
import xgrammar
from hypothesis import HealthCheck, given, settings

from pageray.schemas import arrow_type, coerce, generation_schema, list_builtin, load_schema

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def answers(gs: dict) -> st.SearchStrategy:
    """Values valid under a normalized generation schema, keys in schema order."""
    if "anyOf" in gs:
        return st.none() | answers(gs["anyOf"][0])
    if "enum" in gs:
        return st.sampled_from(gs["enum"])
    kind = gs["type"]
    if kind == "object":
        keys = list(gs["properties"])
        # Rebuilt in schema order: the grammar fixes the key order, hypothesis does not.
        return st.fixed_dictionaries({k: answers(v) for k, v in gs["properties"].items()}).map(
            lambda drawn: {k: drawn[k] for k in keys})
    if kind == "array":
        return st.lists(answers(gs["items"]), max_size=3)
    if kind == "string" and "pattern" in gs:
        return st.dates().map(datetime.date.isoformat)
    if kind == "string":
        return st.text(max_size=12)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
    if kind == "integer":
        return st.integers(-(2**63), 2**63 - 1)
    return st.booleans()


def grammar_accepts():
    testing = pytest.importorskip("xgrammar.testing")
    helper = getattr(testing, "_is_grammar_accept_string", None)
    if helper is None:
        pytest.skip("this xgrammar has no string-acceptance helper")
    return helper


@pytest.mark.parametrize("name", list_builtin())
def test_generated_answers_pass_grammar_coerce_and_arrow(name):
    schema = load_schema(name)
    gs = generation_schema(schema)
    grammar = xgrammar.Grammar.from_json_schema(json.dumps(gs), any_whitespace=False,
                                                separators=(",", ":"))
    accepts = grammar_accepts()

    @SETTINGS
    @given(answers(gs))
    def check(answer):
        assert accepts(grammar, json.dumps(answer, separators=(",", ":")))
        value, errors = coerce(schema, answer)
        assert errors == []
        pa.array([value], type=arrow_type(schema))

    check()


@SETTINGS
@given(st.dates())
def test_every_calendar_date_passes_and_comes_back_as_a_date(day):
    schema = load_schema("paper")
    value, errors = coerce(schema, {"authors": [], "affiliations": [], "date": day.isoformat()})
    assert errors == [] and value["date"] == day
