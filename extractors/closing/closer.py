"""Incremental `shortest_completion`: close a growing generation in O(new bytes) per step.

Why: once a row is within its reserve, the decoder asks at every step for the bytes that close
what it has generated. `extractors.completion.shortest_completion` (the reference, unchanged)
re-parses the whole prefix each time, O(len(prefix)) per row per step. A `Closer` is fed only the
new bytes and answers `tail()`, byte for byte the reference's answer, in O(depth + len(tail)).

How: a pushdown machine, one frame per open value: sequences of literals and values (an object's
`{"a":` A `,"b":` B `}`, true/false/null, the document itself), arrays, strings (lexer state kept
incrementally, \\uXXXX surrogates and UTF-8 included: a transcription runs to thousands of bytes)
and short scalars (numbers, enum values, dates) that the reference's scanners re-lex. Each frame
carries `after`, what its parent appends once it is complete (missing keys with minimal values,
an array's "]"); `tail()` is the top frame's tail plus the `after`s. Schemas are compiled once
and cached by id (do not mutate one afterwards): `Closer(schema)` is O(1). `feed` raises
ValueError at the first byte of a prefix the reference rejects (so is every longer prefix); the
Closer is then unusable. An unsupported schema raises at construction.
"""

from __future__ import annotations

from functools import partial

from pageray.extractors.closing import grammar_leaf
from pageray.extractors.closing.closer_strings import CountedString, StringFrame
from pageray.extractors.closing.completion import is_counted, date_step, enum_step, is_date, non_null_branch, object_parts, min_instance
from pageray.extractors.closing.partial_json import INTEGER, NUMBER, literal_for, number

_BARE = bytes(c in b"-+.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" for c in range(256))
_CACHE: dict = {}  # id(schema) -> (schema, node); holding the schema keeps its id unique


class _Node:
    """A compiled schema node: its kind, minimal instance and what its frames need."""
    __slots__ = ("kind", "min", "parts", "rest", "sub", "lex", "least", "most")

    def __init__(self, schema: dict, memo: dict):
        memo[id(schema)] = self
        self.min, self.kind = min_instance(schema), schema.get("type")
        sub = lambda s: memo.get(id(s)) or _Node(s, memo)  # noqa: E731  (shared sub-dicts once)
        if "anyOf" in schema:
            self.kind, self.sub = "nullable", sub(non_null_branch(schema))
        elif "enum" in schema:
            self.kind, self.lex = "short", partial(enum_step, [literal_for(v) for v in schema["enum"]])
        elif grammar_leaf.is_leaf(schema):
            self.kind, self.lex = "short", partial(grammar_leaf.scan, schema)
        elif is_counted(schema):
            self.kind, self.least, self.most = "counted", schema.get("minLength", 0), schema.get("maxLength")
        elif self.kind == "object":
            self.parts = [p if isinstance(p, bytes) else sub(p) for p in object_parts(schema)]
            pieces = [p if isinstance(p, bytes) else p.min for p in self.parts]
            self.rest = [b"".join(pieces[i:]) for i in range(len(pieces) + 1)]
        elif self.kind == "array":
            self.sub, self.least, self.most = sub(schema["items"]), schema.get("minItems", 0), schema.get("maxItems")
        elif self.kind in ("number", "integer"):
            self.kind, self.lex = "short", partial(number, grammar=NUMBER if self.kind == "number" else INTEGER)
        elif self.kind == "string" and is_date(schema):
            self.kind, self.lex = "short", date_step


def _start(node: _Node, byte: int, after: bytes):
    """The frame for a value of `node` whose first byte, still to be read, is `byte`."""
    while node.kind == "nullable" and byte != 0x6E:  # no non-null value starts with "n"
        node = node.sub
    if node.kind == "string":
        frame = StringFrame()
    elif node.kind == "object":
        frame = _Seq(node.parts, node.rest)
    elif node.kind == "array":
        frame = _Array(node.sub, node.least, node.most)
    elif node.kind == "counted":
        frame = CountedString(node.least, node.most)
    elif node.kind == "short":
        frame = _Short(node.lex, byte != 0x22)
    else:
        boolean = node.kind == "boolean"
        text = b"true" if boolean and byte == 0x74 else b"false" if boolean else b"null"
        frame = _Seq((text,), (text, b""))
    frame.after = after
    return frame


# Frames: step(stack, data, pos) reads from data[pos] (pos < len(data)) and returns the new pos,
# having read at least one byte or pushed or popped a frame; tail() is its own part of the tail.
class _Seq:
    """Literal bytes and value nodes in order; rest[i]: the minimal bytes from part i on."""
    __slots__ = ("parts", "rest", "idx", "k", "after")

    def __init__(self, parts, rest, after=b""):
        self.parts, self.rest, self.idx, self.k, self.after = parts, rest, 0, 0, after

    def step(self, stack, data, pos):
        if self.idx == len(self.parts):  # only the root, whose last part is the document, gets here
            raise ValueError(f"unexpected {bytes(data[pos:pos + 10])!r} after the complete document")
        part = self.parts[self.idx]
        if part.__class__ is not bytes:  # the value of part idx starts here
            self.idx += 1
            stack.append(_start(part, data[pos], self.rest[self.idx]))
            return pos
        k = self.k
        m = min(len(part) - k, len(data) - pos)
        if data[pos:pos + m] != part[k:k + m]:
            raise ValueError(f"expected {part[k:]!r}, got {bytes(data[pos:pos + m])!r}")
        self.k = k + m
        if self.k == len(part):
            self.k, self.idx = 0, self.idx + 1
            if self.idx == len(self.parts):
                stack.pop()
        return pos + m

    def tail(self):
        return self.rest[self.idx][self.k:]


class _Array:
    """state: 0 before "[", 1 after "[", 2 after an item, 3 after ","; `count` items begun, of
    the `least` (minItems) that the tail must reach with minimal items, `most` (maxItems) at most."""
    __slots__ = ("item", "state", "least", "most", "count", "after")

    def __init__(self, item, least=0, most=None):
        self.item, self.state, self.least, self.most, self.count = item, 0, least, most, 0

    def step(self, stack, data, pos):
        byte, state = data[pos], self.state
        if state == 0 and byte != 0x5B or state == 2 and byte not in b",]":
            raise ValueError(f"unexpected {bytes([byte])!r} in an array")
        if state == 0 or state == 2 and byte == 0x2C:
            self.state = state + 1
        elif state != 3 and byte == 0x5D:
            if self.count < self.least:
                raise ValueError(f"an array of at least {self.least} items closed after {self.count}")
            stack.pop()
        elif self.count == self.most:
            raise ValueError(f"an array of at most {self.most} items gets another")
        else:
            self.state, self.count = 2, self.count + 1
            stack.append(_start(self.item, byte, self._more(self.count)))
            return pos
        return pos + 1

    def _more(self, count):
        return (b"," + self.item.min) * max(0, self.least - count) + b"]"

    def tail(self):
        if self.state == 3 or self.state == 1 and self.least:
            return self.item.min + self._more(self.count + 1)
        return self._more(self.count)


class _Short:
    """A number, enum value or date, re-lexed from its start by the reference's scanner `lex` at
    each byte. A quoted one ends at its closing quote, a bare one before a byte that is not bare."""
    __slots__ = ("lex", "bare", "text", "rest", "after")

    def __init__(self, lex, bare):
        self.lex, self.bare, self.text = lex, bare, b""

    def step(self, stack, data, pos):
        byte = data[pos:pos + 1]
        if self.bare and not _BARE[byte[0]]:
            self.lex(self.text + byte, 0)  # raises unless the token ending here is complete
            stack.pop()
            return pos
        self.text += byte
        _, self.rest = self.lex(self.text, 0)
        if self.rest is None:
            stack.pop()
        return pos + 1

    def tail(self):
        return self.rest


class Closer:
    """`c = Closer(schema); c.feed(a); c.feed(b)`: `c.tail() == shortest_completion(schema, a + b)`."""

    @staticmethod
    def compile(schema: dict) -> _Node:
        """The compiled form of `schema`, built on first use and then shared."""
        entry = _CACHE.get(id(schema))
        if entry is None or entry[0] is not schema:
            if len(_CACHE) >= 256:
                _CACHE.clear()
            entry = _CACHE[id(schema)] = (schema, _Node(schema, {}))
        return entry[1]

    def __init__(self, schema: dict):
        root = Closer.compile(schema)
        self._stack: list = [_Seq((root,), (root.min, b""))]

    def feed(self, data: bytes) -> None:
        """Append `data`: amortised O(len(data)). ValueError where no document begins so."""
        stack, pos, n = self._stack, 0, len(data)
        if not stack:
            raise ValueError("this Closer has seen an invalid prefix")
        try:
            while pos < n:
                pos = stack[-1].step(stack, data, pos)
        except ValueError:
            stack.clear()
            raise

    def tail(self) -> bytes:
        """`shortest_completion(schema, everything fed)`, in O(depth + len(tail))."""
        stack = self._stack
        if not stack:
            raise ValueError("this Closer has seen an invalid prefix")
        return stack[-1].tail() + b"".join([frame.after for frame in stack[::-1]])
