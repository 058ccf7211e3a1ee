"""Closing truncated output under value constraints (ranges, lengths, item counts, patterns,
formats), with xgrammar as the oracle as in tests/test_completion.py: every completion is
accepted by the grammar the decoder compiles, validates with jsonschema, fits the reserve, and
the incremental Closer gives the reference's bytes after every byte."""
from __future__ import annotations

import json

import pytest
import xgrammar as xgr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageray.extractors.closing.closer import Closer
from pageray.extractors.closing.completion import max_completion_len, min_instance, shortest_completion
from pageray.extractors.closing.grammar_leaf import leaf_for
from grammar_oracle import assert_valid_completion, compiled, next_bytes, xgr_accepts
from schema_builders import I, S, arr, null, obj
from pageray.schemas.patterns import DATETIME_PATTERN, TIME_PATTERN

CODE = {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}
UUID = {"type": "string", "format": "uuid"}
EMAIL = {"type": "string", "format": "email"}
URI = {"type": "string", "format": "uri"}
STAMP = {"type": "string", "pattern": DATETIME_PATTERN}
CLOCK = {"type": "string", "pattern": TIME_PATTERN}
PERCENT = {"type": "integer", "minimum": 0, "maximum": 100}
BIG = {"type": "integer", "minimum": 100000, "maximum": 200000}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
RATE = {"type": "number", "minimum": -1.5, "maximum": 2.25}
SHORT = {"type": "string", "minLength": 3, "maxLength": 5}
CAPPED = {"type": "string", "maxLength": 4}
PAIR = {"type": "array", "items": I, "minItems": 2}
SOME = {"type": "array", "items": PERCENT, "minItems": 1, "maxItems": 3}
LEAVES = [CODE, UUID, EMAIL, URI, STAMP, CLOCK, PERCENT, BIG, POSITIVE, RATE, SHORT, CAPPED, PAIR,
          SOME]


CASES = [
    (CODE, b'"A', b'A-000"'),
    (CODE, b'"AB-1', b'00"'),
    (UUID, b'"0123', b'0000-0000-0000-0000-000000000000"'),
    (EMAIL, b'"', b'0@0"'),
    # a quoted local part's escaped quote does not close the string (found by the random walks)
    (EMAIL, b'"\\"', b'\\"@0"'),
    (obj(e=EMAIL, n=BIG), b'{"e":"\\"', b'\\"@0","n":100000}'),
    (STAMP, b'"2024-02-2', b'0T00:00"'),
    (STAMP, b'"', b'0001-01-01T00:00"'),  # no year 0000: no timestamp holds it
    (CLOCK, b'"2', b'0:00"'),
    (PERCENT, b"", b"0"),
    (BIG, b"1", b"00000"),
    (BIG, b"", b"100000"),
    (POSITIVE, b"0", b".1"),
    (RATE, b"-1.", b"0"),
    (SHORT, b'"', b'000"'),
    (SHORT, b'"a\xc3', b'\x800"'),
    (SHORT, b'"abcd', b'"'),
    (CAPPED, b'"', b'"'),
    (PAIR, b"[", b"0,0]"),
    (PAIR, b"[1", b",0]"),
    (PAIR, b"[1,2", b"]"),
    (SOME, b"[", b"0]"),
    (obj(n=BIG, u=null(UUID)), b'{"n":12', b'0000,"u":null}'),
    (obj(n=BIG, u=null(UUID)), b'{"n":120000,"u":"ab', b'000000-0000-0000-0000-000000000000"}'),
]


@pytest.mark.parametrize("schema, prefix, expected", CASES)
def test_hand_written_completions(schema, prefix, expected):
    assert assert_valid_completion(schema, prefix) == expected
    closer = Closer(schema)
    closer.feed(prefix)
    assert closer.tail() == expected


INVALID = [(CODE, b'"a'), (PERCENT, b"1000"), (PERCENT, b"-"), (SHORT, b'"ab"'), (SHORT, b'"a\\'),
           (CAPPED, b'"abcde'), (PAIR, b"[1]"), (PAIR, b"[]"), (UUID, b'"g'), (CLOCK, b'"24')]


@pytest.mark.parametrize("schema, prefix", INVALID)
def test_prefixes_the_grammar_refuses_raise(schema, prefix):
    assert not xgr_accepts(schema, prefix, complete=False)
    with pytest.raises(ValueError):
        shortest_completion(schema, prefix)
    with pytest.raises(ValueError):
        Closer(schema).feed(prefix)


@pytest.mark.parametrize("schema", LEAVES, ids=lambda s: json.dumps(s)[:40])
def test_minimal_instance_is_valid_and_the_bound_holds(schema):
    assert assert_valid_completion(schema, b"") == min_instance(schema)
    assert max_completion_len(schema) >= len(min_instance(schema))


_schemas = st.one_of(
    st.sampled_from(LEAVES),
    st.lists(st.sampled_from(LEAVES + [S]), min_size=1, max_size=3).map(
        lambda leaves: obj(**{f"k{i}": null(v) if i % 2 else v for i, v in enumerate(leaves)})),
    st.sampled_from(LEAVES).map(lambda v: arr(obj(v=v))),
)
_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_schemas, st.randoms(use_true_random=False))
def test_random_walks_through_the_grammar(schema, rng):
    """Byte by byte through what xgrammar allows: every prefix completes validly, the Closer
    fed the same bytes agrees with the reference, and a sample of refused bytes raise."""
    matcher = xgr.GrammarMatcher(compiled(json.dumps(schema)))
    closer, prefix = Closer(schema), b""
    for _ in range(70):
        assert closer.tail() == assert_valid_completion(schema, prefix)
        allowed = next_bytes(matcher)
        if not allowed:
            break
        refused = sorted(set(range(256)) - set(allowed))
        for byte in rng.sample(refused, min(4, len(refused))):
            with pytest.raises(ValueError):
                shortest_completion(schema, prefix + bytes([byte]))
        closing = [b for b in allowed if b in b'"]},']
        byte = rng.choice(closing if closing and rng.random() < 0.2 else allowed)
        assert matcher.accept_string(bytes([byte]))
        prefix += bytes([byte])
        closer.feed(bytes([byte]))


def test_answers_are_verified_and_cached_per_parser_state():
    leaf = leaf_for(CODE)
    assert leaf.tail(b'"A') == leaf.tail(b'"B') == b'A-000"'  # one state, one search
    assert leaf.max_tail() == len(b'"AA-000"')  # from the empty prefix
    with pytest.raises(ValueError):
        leaf.tail(b'"a')
