"""Shortest completions of constrained scalars (a `pattern` or `format` string, a `minLength`
string, a number with a range), found by the grammar engine itself.

Why: the hand-written closer (`extractors.completion`) knows JSON's structure, but the shortest
way to finish "A-1" under `^[A-Z]{2}-[0-9]{3}$`, or "1" under `minimum: 100000`, is a question
about a regular language. Answering it with a second hand-written regex engine would be a second
grammar to keep in step with xgrammar's; instead xgrammar compiles the scalar's own schema over
a byte vocabulary (one token per byte), and a breadth-first search over forked matchers finds
the shortest bytes after which the scalar may end. Every answer is accepted by a real matcher
before it is returned, so a completion is valid by construction even where the search's
de-duplication (by the matcher's printed parser state) were too eager; it could then only be
longer than the shortest.

Costs: a search is a few hundred forks (tens of ms); answers are cached per parser state, and a
scalar has few states, so rows inside their reserve window mostly hit the cache. The parser
state is read from `_debug_print_internal_state`, an xgrammar internal: the pin in
pyproject.toml keeps it, and tests/test_grammar_leaf.py fails if its meaning changes.
"""
from __future__ import annotations

import json
from functools import lru_cache

import xgrammar as xgr

from pageray.extractors.closing.partial_json import bare_token
from pageray.schemas.constraints import NUMERIC
from pageray.schemas.patterns import DATE_PATTERN

STOP = 256
MAX_FORKS = 20_000  # per search; far above what the supported formats need (uuid: ~700)
# Bounding every state's tail explores at most this many states and forks (searches included);
# beyond them the bound is FALLBACK_BOUND. It keeps a grammar's set-up well under a second.
MAX_EXPLORED_STATES = 64
MAX_EXPLORED_FORKS = 4_000
FALLBACK_BOUND = 128
# Bytes tried in this order, so ties between equally short completions break towards 0, a, A.
_ORDER = tuple(sorted(range(256), key=lambda b: (
    0 if chr(b) in "0aA" else 1 if chr(b).isalnum() else 2 if 32 <= b < 127 else 3, b)))


@lru_cache(maxsize=1)
def _compiler() -> xgr.GrammarCompiler:
    vocab = [bytes([i]) for i in range(256)] + [b"</s>"]
    info = xgr.TokenizerInfo(vocab, vocab_type=xgr.VocabType.RAW, stop_token_ids=[STOP])
    return xgr.GrammarCompiler(info)


@lru_cache(maxsize=512)
def leaf(schema_json: str) -> "GrammarLeaf":
    """The shared GrammarLeaf of a scalar schema, given as canonical JSON."""
    return GrammarLeaf(json.loads(schema_json))


def leaf_for(schema: dict) -> "GrammarLeaf":
    return leaf(json.dumps(schema, sort_keys=True))


class GrammarLeaf:
    """`tail(partial)`: the shortest bytes that complete the partial scalar `partial` (its
    opening quote included for a string) into one the schema accepts, b"" if it already is one."""

    def __init__(self, schema: dict):
        # The same options as the page grammar (extractors.decoding), so the languages agree.
        self._grammar = _compiler().compile_json_schema(
            schema, any_whitespace=False, separators=(",", ":"))
        self._mask = xgr.allocate_token_bitmask(1, STOP + 1)
        self._tails: dict[str, bytes] = {}
        self._forks = 0
        self.min = self.tail(b"")
        self._bound: int | None = None

    def tail(self, partial: bytes) -> bytes:
        matcher = xgr.GrammarMatcher(self._grammar)
        if partial and not matcher.accept_string(partial):
            raise ValueError(f"{partial[:40]!r} begins no value of this constrained field")
        key = _state(matcher)
        cached = self._tails.get(key)
        if cached is not None and self._completes(matcher.fork(), cached):
            return cached
        found = self._search(matcher)
        if len(self._tails) < 4096:
            self._tails[key] = found
        return found

    def max_tail(self) -> int:
        """An upper bound on len(tail(p)) over every valid partial value p: the largest tail
        of any parser state reachable from the start, or FALLBACK_BOUND past the exploration
        limit (a bound that is too small only lets a row overrun its budget, never break)."""
        if self._bound is None:
            self._bound = self._explore()
        return self._bound

    def _allowed(self, matcher: xgr.GrammarMatcher) -> list[int]:
        matcher.fill_next_token_bitmask(self._mask)
        words = self._mask[0].tolist()
        return [b for b in (*_ORDER, STOP) if words[b >> 5] >> (b & 31) & 1]

    def _completes(self, matcher: xgr.GrammarMatcher, tail: bytes) -> bool:
        return (not tail or matcher.accept_string(tail)) and STOP in self._allowed(matcher)

    def _search(self, start: xgr.GrammarMatcher) -> bytes:
        frontier, seen, forks = [(start, b"")], {_state(start)}, 0
        while frontier:
            following = []
            for matcher, path in frontier:
                allowed = self._allowed(matcher)
                if STOP in allowed:
                    return path
                for byte in allowed:
                    child = matcher.fork()
                    child.accept_token(byte)
                    forks += 1
                    self._forks += 1
                    key = _state(child)
                    if key not in seen:
                        seen.add(key)
                        following.append((child, path + bytes([byte])))
                if forks > MAX_FORKS:
                    raise ValueError("the constrained field is too complex to close")
            frontier = following
        raise ValueError("no completion: the partial value cannot be finished")

    def _explore(self) -> int:
        start = xgr.GrammarMatcher(self._grammar)
        frontier, states, worst = [(start, b"")], {_state(start)}, 0
        self._forks = 0
        while frontier:
            following = []
            for matcher, path in frontier:
                worst = max(worst, len(self.tail(path)))
                for byte in self._allowed(matcher):
                    if byte == STOP:
                        continue
                    child = matcher.fork()
                    child.accept_token(byte)
                    self._forks += 1
                    key = _state(child)
                    if key not in states:
                        states.add(key)
                        following.append((child, path + bytes([byte])))
                if len(states) > MAX_EXPLORED_STATES or self._forks > MAX_EXPLORED_FORKS:
                    return max(worst, FALLBACK_BOUND)
            frontier = following
        return worst


def _state(matcher: xgr.GrammarMatcher) -> str:
    # The first line counts the bytes seen so far; the parser state is the rest.
    return matcher._debug_print_internal_state().split("\n", 1)[-1]


def is_leaf(schema: dict) -> bool:
    """Whether the scalar `schema` of a normalized page schema is closed by a GrammarLeaf:
    a string with a pattern (other than the date's, which `extractors.completion` closes by
    template) or a format, or a number with a bound."""
    kind = schema.get("type")
    if kind == "string":
        return "format" in schema or schema.get("pattern", DATE_PATTERN) != DATE_PATTERN
    return kind in ("number", "integer") and any(key in schema for key in NUMERIC)


def _string_end(data: bytes, pos: int) -> int:
    """Just past the quote that closes the string opened at `pos`, or 0 if none has yet. Most
    leaf strings hold no escapes (xgrammar writes them raw), but an email's quoted local part may
    hold an escaped quote (`"\\""@host`, found by the grammar's random walks), which does not close it."""
    start = pos + 1
    while (quote := data.find(b'"', start)) >= 0:
        backslashes = quote - len(data[pos + 1:quote].rstrip(b"\\")) - pos - 1
        if backslashes % 2 == 0:
            return quote + 1
        start = quote + 1
    return 0


def scan(schema: dict, data: bytes, pos: int) -> tuple[int, bytes | None]:
    """A `partial_json` scanner for a leaf: (end, None) for a whole value, else (len(data),
    its shortest tail)."""
    if schema["type"] == "string":
        end = _string_end(data, pos)
    else:
        end = bare_token(data, pos)
        end = end if end < len(data) else 0
    if not end:
        return len(data), leaf_for(schema).tail(bytes(data[pos:]))
    if leaf_for(schema).tail(bytes(data[pos:end])):
        raise ValueError(f"{bytes(data[pos:end])[:40]!r} at byte {pos} ends before the field's "
                         "constraint is met")
    return end, None
