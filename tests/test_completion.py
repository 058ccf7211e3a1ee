"""`extractors.completion`: shortest valid completions, checked against xgrammar itself.

The oracle is the grammar xgrammar compiles from the schema exactly as the decoder does
(`any_whitespace=False, separators=(",", ":")`): `prefix + completion` must be accepted and
complete, parse with `json.loads` and validate with `jsonschema`. The property tests do this for
every byte prefix of random documents of random normalized schemas and along random byte-by-byte
walks through the grammar itself (xgrammar's next-byte masks over a 256-byte vocabulary), and
check the converse too: a prefix xgrammar rejects makes `shortest_completion` raise ValueError.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import xgrammar as xgr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageray.extractors.closing.completion import literal_for, min_instance, shortest_completion

# ---------------------------------------------------------------- the oracle

from grammar_oracle import assert_valid_completion, compiled as _compiled, next_bytes, xgr_accepts  # noqa: E402


# ---------------------------------------------------------------- schemas

from schema_builders import B, D, I, N, S, arr, null, obj  # noqa: E402,F401


INVOICE = obj(
    number=S,
    date=null(D),
    total=N,
    count=I,
    paid=B,
    currency={"enum": ["EUR", "USD", 3]},
    lines=arr(obj(sku=S, qty=null(I))),
)

# ---------------------------------------------------------------- hand-written cases

CASES = [
    # (schema, prefix, expected completion)
    (INVOICE, b"", b'{"number":"","date":null,"total":0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"num', b'ber":"","date":null,"total":0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"A1"', b',"date":null,"total":0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"A1","date":n', b'ull,"total":0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"A1","date":"2024-04-3', b'0","total":0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"A1","date":null,"total":-', b'0,"count":0,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":-', b'1,"paid":false,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":t', b'rue,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":fa', b'lse,"currency":3,"lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":"U', b'SD","lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":"', b'EUR","lines":[]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":"USD","lines":[', b"]}"),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[{', b'"sku":"","qty":null}]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[{"sku":"x","qty":1}', b"]}"),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[{"sku":"x","qty":1},', b'{"sku":"","qty":null}]}'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[]', b"}"),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[]}', b""),
    # strings: escapes, cut-off UTF-8 (E0/ED/F0/F4 leads), surrogate escapes
    (S, b'"ab', b'"'),
    (S, b'"a\\', b'n"'),
    (S, b'"a\\u', b'0000"'),
    (S, b'"a\\u12', b'00"'),
    (S, b'"a\\u1234', b'"'),
    (S, b'"a\\ud8', b'00\\udc00"'),
    (S, b'"a\\ud83d', b'\\udc00"'),
    (S, b'"a\\ud83d\\ude00', b'"'),
    (S, b'"\xc3', b'\x80"'),
    (S, b'"\xe0', b'\xa0\x80"'),
    (S, b'"\xe0\xa4', b'\x80"'),
    (S, b'"\xed', b'\x80\x80"'),
    (S, b'"\xe2\x82', b'\x80"'),
    (S, b'"\xf0', b'\x90\x80\x80"'),
    (S, b'"\xf0\x9f\x98', b'\x80"'),
    (S, b'"\xf4', b'\x80\x80\x80"'),
    (S, b'"\xf3\xa0', b'\x80\x80"'),
    (S, b'"a"', b""),
    # numbers and integers
    (N, b"-", b"0"),
    (N, b"1.", b"0"),
    (N, b"1e", b"0"),
    (N, b"1E+", b"0"),
    (N, b"-0", b""),
    (N, b"12.5e-3", b""),
    (I, b"-", b"1"),
    (I, b"0", b""),
    (I, b"-12", b""),
    (arr(N), b"[1.5", b"]"),
    (arr(N), b"[1.5,", b"0]"),
    (arr(N), b"[1.5,2", b"]"),
    (arr(arr(S)), b'[["a"],["b', b'"]]'),
    # literals and nullable values
    (null(B), b"", b"null"),
    (null(B), b"nu", b"ll"),
    (null(B), b"t", b"rue"),
    (null(S), b'"', b'"'),
    (null(arr(I)), b"[", b"]"),
    (null(obj(a=I)), b'{"a"', b":0}"),
    # dates: partial dates become calendar dates
    (D, b'"', b'2001-01-01"'),
    (D, b'"2024-04-3', b'0"'),
    (D, b'"2024-05-3', b'1"'),
    (D, b'"2023-02-2', b'1"'),
    (D, b'"2024-02-2', b'1"'),
    (D, b'"2024-1', b'1-01"'),
    (D, b'"2024-0', b'1-01"'),
    (D, b'"0', b'001-01-01"'),
    (D, b'"2024-02-29', b'"'),
    # enums: the shortest value extending the partial text, in xgrammar's spelling
    ({"enum": ["bb", "a", 3]}, b"", b"3"),
    ({"enum": ["abc", "ab", "b"]}, b'"a', b'b"'),
    ({"enum": [12, 1, 123]}, b"1", b""),
    ({"enum": [123, 12]}, b"1", b"2"),
    ({"enum": [3.0, 0.1]}, b"0", b".1"),
    ({"enum": ["a/b", "x\ny", "\x7f", "é"]}, b'"x', b'\\ny"'),
    ({"enum": ["a/b", "x\ny", "\x7f", "é"]}, b'"\\', b'u007f"'),
    ({"enum": ["a/b", "x\ny", "\x7f", "é"]}, b'"\xc3', b'\xa9"'),
    # objects: empty, awkward keys spelled as xgrammar spells them
    (obj(), b"", b"{}"),
    (obj(), b"{", b"}"),
    (obj(**{"é/\t\"": S}), b'{"\xc3\xa9/\\', b't\\"":""}'),
    (obj(a=obj(b=obj(c=arr(I)))), b'{"a":{"b":{"c":[1', b"]}}}"),
]


@pytest.mark.parametrize("schema, prefix, expected", CASES)
def test_hand_written_completions(schema, prefix, expected):
    assert xgr_accepts(schema, prefix, complete=False), "the case itself is not a valid prefix"
    assert assert_valid_completion(schema, prefix) == expected


INVALID = [
    (INVOICE, b'{"date"'),  # keys come in schema order
    (INVOICE, b'{ "number"'),  # no whitespace at all
    (INVOICE, b'{"number":"","date":"2023-02-29"'),  # not a calendar date
    (INVOICE, b'{"number":"","date":"2023-02-3'),
    (INVOICE, b'{"number":"","date":null,"total":01'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":-0'),  # "-0" is no integer
    (INVOICE, b'{"number":"","date":null,"total":0,"count":1.'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":tx'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":"EU"'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":4'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[,'),
    (INVOICE, b'{"number":"","date":null,"total":0,"count":0,"paid":true,"currency":3,"lines":[]}x'),
    (S, b'"a\x01'),  # raw control characters
    (S, b'"a\n'),
    (S, b'"\\q'),
    (S, b'"\\u12g'),
    (S, b'"\xc0\x80'),  # overlong
    (S, b'"\xe0\x80'),
    (S, b'"\xf0\x80'),
    (S, b'"\xf4\x90'),  # above U+10FFFF
    (S, b'"\xf5'),
    (S, b'"\x80'),  # stray continuation byte
    (S, b'"\xc3\xa9\xa9'),
    (N, b"1.e"),
    (N, b"--"),
    (N, b"+1"),
    (null(I), b"nil"),
    ({"enum": ["ab"]}, b'"b'),
]


@pytest.mark.parametrize("schema, prefix", INVALID)
def test_invalid_prefixes_raise(schema, prefix):
    assert not xgr_accepts(schema, prefix, complete=False), "xgrammar accepts it after all"
    with pytest.raises(ValueError):
        shortest_completion(schema, prefix)


def test_encoded_surrogates_follow_xgrammar():
    """xgrammar's UTF-8 check lets ED A0..BF (encoded UTF-16 surrogates) through; so do we, since
    the decoder must still close such a row, but a lone ED gets 80 80 (U+D000, valid UTF-8)."""
    assert xgr_accepts(S, b'"\xed\xa0', complete=False)
    assert shortest_completion(S, b'"\xed\xa0') == b'\x80"'
    assert xgr_accepts(S, b'"\xed\xa0\x80"')


def test_enum_literals_use_xgrammars_spelling():
    expected = {
        3.0: b"3", 100.0: b"100", -0.0: b"-0", 0.1: b"0.1", 1.5e-7: b"1.5e-07", 2.0**63: b"9.223372036854776e+18", 5e-324: b"4.94065645841247e-324",
        2**60: b"1152921504606846976", 10**20: b"1e+20", 123456789.5: b"123456789.5",
        "a/b": b'"a/b"', "\x7f\x1f\t": b'"\\u007f\\u001f\\t"', "é😀": '"é😀"'.encode(),
    }
    for value, literal in expected.items():
        assert literal_for(value) == literal
        assert xgr_accepts({"enum": [value]}, literal)


# ---------------------------------------------------------------- property tests

_keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=4)
_texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6) | st.sampled_from(
    ["", "a\"b\\c", "\n\t\x00\x1f\x7f", "é€😀", "\u2028", "/</", "\U0010ffff"]
)
_enum_values = st.one_of(
    _texts,
    st.integers(-(2**63), 2**63 - 1),  # beyond int64 xgrammar rounds enum values to doubles
    st.floats(allow_nan=False, allow_infinity=False),
)
_leaves = st.one_of(
    st.sampled_from([S, D, N, I, B]),
    st.lists(_enum_values, min_size=1, max_size=4, unique_by=literal_for).map(lambda v: {"enum": v}),
)


def _objects(values: st.SearchStrategy, min_size: int = 0) -> st.SearchStrategy:
    return st.dictionaries(_keys, values, min_size=min_size, max_size=3).map(lambda p: obj(**p))


def _schemas_of_depth(depth: int) -> st.SearchStrategy:
    """Normalized schemas nesting at most `depth` containers (anyOf-null wraps a non-anyOf)."""
    if depth == 1:
        plain = _leaves
    else:
        sub = _schemas_of_depth(depth - 1)
        plain = st.one_of(_leaves, sub.map(arr), _objects(sub))
    return st.one_of(plain, plain.map(null))


# Mostly objects at the root, as extraction schemas are; sometimes anything. (A plain one_of
# here gives objects ~5%: hypothesis steers toward branches where it finds new examples faster.)
_root_objects = _objects(_schemas_of_depth(2), min_size=1)
_schemas = st.integers(0, 3).flatmap(lambda k: _root_objects if k else _schemas_of_depth(3))


def _instance(schema: dict) -> st.SearchStrategy:
    """Compact documents for `schema`, as bytes in the grammar's spelling."""
    if "anyOf" in schema:
        return st.just(b"null") | _instance(schema["anyOf"][0])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]).map(literal_for)
    kind = schema["type"]
    if kind == "object":
        keys = list(schema["properties"])
        parts = st.tuples(*(_instance(schema["properties"][k]) for k in keys))
        return parts.map(lambda vs: b"{" + b",".join(literal_for(k) + b":" + v for k, v in zip(keys, vs)) + b"}")
    if kind == "array":
        return st.lists(_instance(schema["items"]), max_size=3).map(lambda vs: b"[" + b",".join(vs) + b"]")
    values = {
        "string": st.dates().map(dt.date.isoformat) if "pattern" in schema else _texts,
        "number": st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False),
        "integer": st.integers(-(10**20), 10**20),
        "boolean": st.booleans(),
    }[kind]
    return values.map(lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())


@st.composite
def _schema_and_document(draw):
    schema = draw(_schemas)
    return schema, draw(_instance(schema))


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_schema_and_document())
def test_every_prefix_completes_to_a_valid_document(case):
    schema, document = case
    assert xgr_accepts(schema, document), f"generator bug: xgrammar rejects {document!r}"
    assert assert_valid_completion(schema, b"") == min_instance(schema)
    for cut in range(len(document) + 1):
        assert_valid_completion(schema, document[:cut])
    assert shortest_completion(schema, document) == b""


@_settings
@given(_schema_and_document(), st.data())
def test_agrees_with_xgrammar_on_corrupted_prefixes(case, data):
    """One byte of a valid document replaced, inserted or deleted: wherever xgrammar still accepts
    the prefix, the completion is valid; wherever it does not, ValueError."""
    schema, document = case
    at = data.draw(st.integers(0, len(document)))
    byte = bytes([data.draw(st.integers(0, 255) | st.sampled_from(b'"\\{}[],:-.0e9ntf \xc3\xed\xf0'))])
    edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    corrupt = document[:at] + (b"" if edit == "delete" else byte) + document[at + (edit != "insert") :]
    for cut in range(at, len(corrupt) + 1):
        prefix = corrupt[:cut]
        if xgr_accepts(schema, prefix, complete=False):
            assert_valid_completion(schema, prefix)
        else:
            with pytest.raises(ValueError):
                shortest_completion(schema, prefix)


_STRUCTURAL = b'"]},:0'


@_settings
@given(_schemas, st.randoms(use_true_random=False))
def test_random_walks_through_the_grammar(schema, rng):
    """Byte-by-byte walks through everything xgrammar allows, not only json.dumps spellings (any
    escape, exponents, -0.0, encoded surrogates, every UTF-8 length): at each step a sample of the
    allowed next bytes complete validly and a sample of the refused ones raise ValueError."""
    matcher = xgr.GrammarMatcher(_compiled(json.dumps(schema)))
    prefix = b""
    for _ in range(80):
        assert_valid_completion(schema, prefix)
        allowed = next_bytes(matcher)
        if not allowed:
            break
        refused = sorted(set(range(256)) - set(allowed))
        for byte in rng.sample(allowed, min(8, len(allowed))):
            assert_valid_completion(schema, prefix + bytes([byte]))
        for byte in rng.sample(refused, min(8, len(refused))):
            with pytest.raises(ValueError):
                shortest_completion(schema, prefix + bytes([byte]))
        closing = [b for b in allowed if b in _STRUCTURAL]
        byte = rng.choice(closing if closing and rng.random() < 0.3 else allowed)
        assert matcher.accept_string(bytes([byte]))
        prefix += bytes([byte])
