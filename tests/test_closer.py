"""`extractors.closer.Closer` against its reference, `extractors.completion.shortest_completion`.

Documents of the built-in generation schemas and of random normalized schemas (the schema
strategies of tests/test_completion.py, copied rather than imported, since that module loads
xgrammar) are fed in random chunks; after each chunk tail() must equal shortest_completion of the
bytes fed. Corrupted documents and byte-by-byte walks through what the reference accepts check
that feed raises ValueError at exactly the first prefix the reference rejects.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageray.extractors.closing.closer import Closer
from pageray.extractors.closing.completion import literal_for, min_instance, shortest_completion
from pageray.extractors.closing.partial_json import INTEGER, NUMBER
from pageray.schemas import generation_schema, list_builtin, load_schema

from schema_builders import B, D, I, N, S, arr, null, obj  # noqa: E402,F401


BUILTIN = {name: generation_schema(load_schema(name)) for name in list_builtin()}


def reference(schema: dict, prefix: bytes):
    try:
        return shortest_completion(schema, prefix)
    except ValueError:
        return None


def closer_after(schema: dict, *chunks: bytes) -> Closer:
    closer = Closer(schema)
    for chunk in chunks:
        closer.feed(chunk)
    return closer


# ---------------------------------------------------------------- strategies

_keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=4)
_texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6) | st.sampled_from(
    ["", "a\"b\\c", "\n\t\x00\x1f\x7f", "é€😀", "\u2028", "/</", "\U0010ffff"])
_enum_values = st.one_of(_texts, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
_leaves = st.one_of(
    st.sampled_from([S, D, N, I, B]),
    st.lists(_enum_values, min_size=1, max_size=4, unique_by=literal_for).map(lambda v: {"enum": v}))


def _objects(values, min_size: int = 0):
    return st.dictionaries(_keys, values, min_size=min_size, max_size=3).map(lambda p: obj(**p))


def _schemas_of_depth(depth: int):
    plain = _leaves if depth == 1 else st.one_of(_leaves, _schemas_of_depth(depth - 1).map(arr),
                                                 _objects(_schemas_of_depth(depth - 1)))
    return st.one_of(plain, plain.map(null))


_schemas = st.integers(0, 3).flatmap(lambda k: _objects(_schemas_of_depth(2), min_size=1) if k else _schemas_of_depth(3))

# String bodies in every spelling the grammar allows: escapes in either hex case, surrogate pairs,
# raw UTF-8 of each length (and an encoded surrogate, which xgrammar lets through).
_pieces = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8).map(
        lambda t: json.dumps(t, ensure_ascii=False)[1:-1].encode()),
    st.sampled_from([b'\\"', b"\\\\", b"\\/", b"\\b", b"\\f", b"\\n", b"\\r", b"\\t", b"\xed\xa0\x80", b"\xf4\x8f\xbf\xbf",
                     b"\\ud800", b"\\uDBFF", b"\\udc00"]),  # lone surrogate escapes too
    st.integers(0, 0xFFFF).filter(lambda u: not 0xD800 <= u < 0xE000).flatmap(
        lambda u: st.sampled_from([b"\\u%04x" % u, b"\\u%04X" % u])),
    st.tuples(st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)).map(lambda p: b"\\u%04x\\u%04X" % p),
)


def _string(long: bool = False):
    return st.lists(_pieces, max_size=40 if long else 4).map(lambda ps: b'"' + b"".join(ps) + b'"')


def _instance(schema: dict, long: bool = False):
    """Compact documents for `schema`, as bytes in the grammar's spelling."""
    if "anyOf" in schema:
        return st.just(b"null") | _instance(schema["anyOf"][0], long)
    if "enum" in schema:
        return st.sampled_from(schema["enum"]).map(literal_for)
    kind = schema["type"]
    if kind == "object":
        keys = list(schema["properties"])
        parts = st.tuples(*(_instance(schema["properties"][k], long) for k in keys))
        return parts.map(lambda vs: b"{" + b",".join(literal_for(k) + b":" + v for k, v in zip(keys, vs)) + b"}")
    if kind == "array":
        return st.lists(_instance(schema["items"], long), max_size=3).map(lambda vs: b"[" + b",".join(vs) + b"]")
    if kind == "string":
        return st.dates().map(lambda d: b'"%s"' % d.isoformat().encode()) if "pattern" in schema else _string(long)
    if kind == "boolean":
        return st.sampled_from([b"true", b"false"])
    return st.from_regex(NUMBER if kind == "number" else INTEGER, fullmatch=True).map(str.encode)


@st.composite
def _cases(draw):
    if draw(st.booleans()):
        schema = BUILTIN[draw(st.sampled_from(sorted(BUILTIN)))]
        return schema, draw(_instance(schema, long=True))
    schema = draw(_schemas)
    return schema, draw(_instance(schema))


def _chunked(document: bytes, sizes: list) -> list:
    chunks, at = [], 0
    for size in sizes:
        if at >= len(document):
            break
        chunks.append(document[at:at + size])
        at += size
    return chunks + ([document[at:]] if at < len(document) else [])


_settings = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- properties

@_settings
@given(_cases(), st.lists(st.integers(1, 9), max_size=300))
def test_tail_equals_the_reference_after_every_chunk(case, sizes):
    schema, document = case
    closer = Closer(schema)
    assert closer.tail() == min_instance(schema)
    fed = b""
    for chunk in _chunked(document, sizes):
        closer.feed(chunk)
        fed += chunk
        assert closer.tail() == shortest_completion(schema, fed), fed
    assert fed == document and closer.tail() == b""


@_settings
@given(_cases(), st.data())
def test_feed_raises_where_the_reference_first_raises(case, data):
    """One byte replaced, inserted or deleted: fed byte by byte, the Closer agrees with the
    reference up to the first prefix it rejects and raises exactly there (and every longer
    prefix is rejected too, so raising at that feed loses nothing)."""
    schema, document = case
    at = data.draw(st.integers(0, len(document)))
    byte = bytes([data.draw(st.integers(0, 255) | st.sampled_from(b'"\\{}[],:-+.0eE9ntfu \xc3\xed\xf0'))])
    edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    corrupt = document[:at] + (b"" if edit == "delete" else byte) + document[at + (edit != "insert"):]
    closer = Closer(schema)
    for cut in range(1, len(corrupt) + 1):
        expected = reference(schema, corrupt[:cut])
        if expected is None:
            with pytest.raises(ValueError):
                closer.feed(corrupt[cut - 1:cut])
            assert all(reference(schema, corrupt[:k]) is None for k in range(cut, len(corrupt) + 1))
            with pytest.raises(ValueError):
                closer.tail()
            return
        closer.feed(corrupt[cut - 1:cut])
        assert closer.tail() == expected


_STRUCTURAL = b'"]},:0'
_ALPHABET = b'"\\{}[],:-+.0123456789eEuUabcdfnlrstxyzDd \x00\x1f\x7f\x80\xa0\xbf\xc2\xc3\xe0\xed\xef\xf0\xf4\xf5\xff'


@settings(_settings, max_examples=80)
@given(st.one_of(_schemas, st.sampled_from(sorted(BUILTIN)).map(BUILTIN.get)), st.randoms(use_true_random=False))
def test_walks_through_what_the_reference_accepts(schema, rng):
    """Random byte-by-byte walks: each step a few candidate bytes are tried on fresh Closers (a
    refused one must raise), and one the reference accepts is fed to the walking Closer; the
    completion's first byte is always acceptable, which gets walks through object keys."""
    closer, prefix = Closer(schema), b""
    for _ in range(60):
        tail = shortest_completion(schema, prefix)
        if not tail:
            break
        accepted = [tail[:1]] * 3
        for byte in rng.sample(_ALPHABET, 6) + list(_STRUCTURAL):
            candidate = prefix + bytes([byte])
            expected = reference(schema, candidate)
            if expected is None:
                with pytest.raises(ValueError):
                    closer_after(schema, candidate)
            else:
                accepted.append(candidate[-1:])
        if not accepted:
            break
        step = rng.choice(accepted)
        closer.feed(step)
        prefix += step
        assert closer.tail() == shortest_completion(schema, prefix)


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_empty_prefix_is_the_minimal_instance(name):
    assert Closer(BUILTIN[name]).tail() == min_instance(BUILTIN[name])
    assert closer_after(BUILTIN[name], b"").tail() == min_instance(BUILTIN[name])


EDGES = [
    (S, [b'"a\\', b"u", b"d8", b"3d"]),  # cut inside a \u escape, then after a high surrogate
    (S, [b'"a\\ud83d', b"\\", b"u", b"DE", b"00", b"x"]),  # a surrogate pair, any hex case
    (S, [b'"\\ud83d', b"a"]),  # a lone high surrogate followed by text
    (S, [b'"\\ud83d', b"\\", b"n"]),  # ... by a simple escape
    (S, [b'"\\ud800', b"\xc3", b"\xa9", b"\\udc00"]),  # ... by UTF-8; a lone low surrogate
    (S, [b'"\xf0', b"\x9f", b"\x98", b"\x80", b'"']),  # a 4-byte character one byte at a time
    (S, [b'"\xed', b"\xa0", b"\x80"]),
    ({"enum": ["abc", "ab", "b", 12, 1, 123]}, [b'"', b"a", b"b", b"c", b'"']),
    ({"enum": ["abc", "ab", "b", 12, 1, 123]}, [b"1", b"2", b"3"]),
    ({"enum": [123, 12]}, [b"1", b"2"]),
    (obj(c={"enum": [3.0, 0.1]}, d=I), [b'{"c":', b"0", b".", b"1", b',"d":1', b"}"]),
    (D, [b'"', b"2024-0", b"2-", b"2", b"9", b'"']),  # leap day
    (D, [b'"2023-04-', b"3", b"0"]),  # day "3" in a 30-day month: the second template
    (D, [b'"2023-05-', b"3", b"1"]),
    (null(D), [b"n", b"u", b"l", b"l"]),  # nullable fields starting with "n"
    (obj(a=null(S), b=null(arr(null(I)))), [b'{"a":n', b'ull,"b":[n', b"ull,", b"-", b"1", b",n"]),
    (obj(a=null(B), b=null(N)), [b'{"a":', b"t", b'rue,"b":', b"n"]),
    (arr(obj(sku=S, qty=null(I), tags=arr(arr(S)))),
     [b"[", b'{"sku":"x', b'","qty":1', b'0,"tags":[["a"],[', b"]]},", b'{"sk', b'u":"', b'y","qty":null,"tags":[]}', b"]"]),
    (arr(arr(N)), [b"[[1e", b"+", b"5,", b"-0.", b"5],[", b"]", b",[]]"]),
    (obj(), [b"{", b"}"]),
]


@pytest.mark.parametrize("schema, chunks", EDGES)
def test_edge_cases_chunk_by_chunk(schema, chunks):
    closer, fed = Closer(schema), b""
    for chunk in chunks:
        closer.feed(chunk)
        fed += chunk
        assert closer.tail() == shortest_completion(schema, fed), fed


INVALID = [
    (S, b'"a\\u12g'), (S, b'"\\q'), (S, b'"\\x'), (S, b'"\\U'), (S, b'"a\n'), (S, b'"\xc0\x80'), (S, b'"\xe0\x80'), (S, b'"\xf4\x90'),
    (S, b'"\xc3\xa9\xa9'), (N, b"1.e"), (N, b"01"), (N, b"+1"), (N, b"1.]"), (I, b"-0"), (I, b"1."),
    (arr(N), b"[1.]"), (arr(N), b"[,"), (arr(N), b"[1,]"), (arr(N), b"[1 "), (null(I), b"nil"), (null(B), b"tx"),
    ({"enum": ["ab"]}, b'"b'), ({"enum": ["ab"]}, b'"ab"x'), ({"enum": [12]}, b"1,"), (arr({"enum": [12]}), b"[1]"),
    (obj(a={"enum": [12, "x"]}, b=I), b'{"a":1,"b"'), ({"enum": [12]}, b"{"),
    (D, b'"2023-02-29"'), (D, b'"2023-02-3'), (D, b'"2024-01-01x'), (obj(a=I), b'{"b"'), (obj(a=I), b'{ "a"'),
    (obj(a=I), b'{"a":1}}'), (BUILTIN["invoice"], b'{"invoice_number":"x","invoice_date":"2024-13'),
]


@pytest.mark.parametrize("schema, prefix", INVALID)
def test_invalid_prefixes_raise_like_the_reference(schema, prefix):
    with pytest.raises(ValueError):
        shortest_completion(schema, prefix)
    with pytest.raises(ValueError):
        closer_after(schema, prefix)
    with pytest.raises(ValueError):  # and at the byte that makes it invalid
        closer_after(schema, *(prefix[i:i + 1] for i in range(len(prefix))))
    closer = Closer(schema)
    with pytest.raises(ValueError):
        closer.feed(prefix)
    with pytest.raises(ValueError):  # a Closer that raised stays unusable
        closer.feed(b"")


def test_construction_is_shared_per_schema():
    assert Closer.compile(BUILTIN["invoice"]) is Closer.compile(BUILTIN["invoice"])
    first, second = Closer(BUILTIN["invoice"]), Closer(BUILTIN["invoice"])
    first.feed(b'{"invoice_number":"A')
    assert second.tail() == min_instance(BUILTIN["invoice"])  # compiled form shared, state not


def test_long_string_feed_is_incremental():
    """A 40,000-byte transcription fed 3 bytes at a time, tail() after each: the string frame
    keeps its lexer state, so this is linear (the reference would re-read the prefix each step)."""
    schema = BUILTIN["transcribe"]
    document = b'{"text":"' + b"abc\\n\\u00e9\xc3\xa9 " * 2500 + b'"}'
    closer = Closer(schema)
    for at in range(0, len(document), 3):
        closer.feed(document[at:at + 3])
        closer.tail()
    assert closer.tail() == shortest_completion(schema, document) == b""
