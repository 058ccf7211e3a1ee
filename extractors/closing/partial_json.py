"""Lexical scanners for truncated compact JSON, as xgrammar's JSON-Schema grammar spells it.

Every scanner takes `(data, pos)` and returns a `Step`, `(end, tail)`: tail is None when the token
ended at `end`; otherwise the input ran out inside the token (end == len(data)) and tail is the
shortest bytes that complete it. Bytes that cannot continue any valid token raise ValueError.
`extractors.completion` drives these scanners from a schema.

Grammar details mirrored here (checked against xgrammar 0.2.8 in tests/test_completion.py):
- strings: raw bytes except controls 00-1F, '"' and '\\'; escapes \\["\\/bfnrt] and \\uXXXX;
  UTF-8 as xgrammar checks it: E0 needs A0-BF next, F0 90-BF, F4 80-8F, but ED takes all of
  80-BF (xgrammar lets encoded surrogates through, which are not valid UTF-8).
- numbers -?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?; integers 0|-?[1-9][0-9]* (no "-0").
- enum values and object keys are literals re-serialized by picojson, see `literal_for`.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

Step = Tuple[int, Optional[bytes]]

NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
INTEGER = re.compile(r"0|-?[1-9][0-9]*")
_BARE = re.compile(rb"[-+.0-9A-Za-z]*")  # an unquoted scalar token
PLAIN = re.compile(rb'[^"\\\x00-\x1f\x80-\xff]*')  # string bytes that need no attention
SIMPLE_ESCAPES = b'"\\/bfnrt'
HEX = b"0123456789abcdefABCDEF"
_ESCAPE_CHAR = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def literal_for(value: Any) -> bytes:
    """The exact bytes xgrammar's grammar accepts for an enum value or (a str) an object key.

    xgrammar re-serializes the schema with picojson: strings with picojson's escapes (\\" \\\\ \\b
    \\f \\n \\r \\t, \\u00XX for other controls and for DEL) except that '/' stays raw and non-ASCII
    stays raw UTF-8; int64 integers verbatim; other numbers as doubles, with "%.f" when integral
    and below 2**53, else the shortest of "%.15g", "%.16g", "%.17g" that reads back as the same
    double (so 3.0 -> 3, 0.1 -> 0.1, 10**20 -> 1e+20, 2**63 -> 9.223372036854776e+18). This is
    xgrammar 0.2.9's spelling (0.2.8 always used "%.17g"), hence the pin in pyproject.toml.
    """
    if isinstance(value, str):
        body = "".join(
            _ESCAPE_CHAR.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
            for c in value
        )
        return f'"{body}"'.encode("utf-8", "surrogatepass")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return str(value).encode()
    number = float(value)
    if abs(number) < 2**53 and number.is_integer():
        return ("%.f" % number).encode()
    return next(text for text in ("%.15g" % number, "%.16g" % number, "%.17g" % number)
                if float(text) == number).encode()


def literal(data: bytes, pos: int, text: bytes) -> Step:
    """The fixed bytes `text` at `pos`, possibly cut short by the end of the input."""
    got = data[pos : pos + len(text)]
    if not text.startswith(got):
        raise ValueError(f"expected {text!r} at byte {pos}, got {got!r}")
    if len(got) < len(text):
        return len(data), text[len(got) :]
    return pos + len(text), None


def bare_token(data: bytes, pos: int) -> int:
    """End of the unquoted scalar (number or literal) starting at `pos`."""
    return _BARE.match(data, pos).end()


def number(data: bytes, pos: int, grammar: re.Pattern = NUMBER) -> Step:
    """A number (or, with grammar=INTEGER, an integer); at the end of input one digit at most."""
    end = bare_token(data, pos)
    text = data[pos:end].decode("ascii")
    if end < len(data):
        if grammar.fullmatch(text):
            return end, None
    else:  # "-", "1.", "1e", "1e+" need a digit; "-" needs "1" as an integer
        for suffix in ("", "0", "1"):
            if grammar.fullmatch(text + suffix):
                return end, suffix.encode()
    raise ValueError(f"{text!r} at byte {pos} is not a prefix of a match of {grammar.pattern!r}")


def utf8_lead(byte: int) -> Tuple[int, int, int]:
    """(sequence length, lowest, highest second byte) for a UTF-8 lead byte, as xgrammar has it."""
    if 0xC2 <= byte <= 0xDF:
        return 2, 0x80, 0xBF
    if 0xE0 <= byte <= 0xEF:
        return 3, 0xA0 if byte == 0xE0 else 0x80, 0xBF
    if 0xF0 <= byte <= 0xF4:
        return 4, 0x90 if byte == 0xF0 else 0x80, 0x8F if byte == 0xF4 else 0xBF
    raise ValueError(f"byte {byte:#04x} cannot start a UTF-8 character")


def string(data: bytes, pos: int) -> Step:
    """A string literal. A cut-off UTF-8 character gets its lowest valid continuation, a lone
    backslash `n`, a cut-off \\u escape zeros; a trailing high surrogate escape gets \\udc00 so the
    text stays encodable."""
    pos, _ = literal(data, pos, b'"')
    i, n = pos, len(data)
    high_surrogate_end = -1  # end of the last \uD800-\uDBFF escape
    while (i := PLAIN.match(data, i).end()) < n:
        byte = data[i]
        if byte == ord('"'):
            return i + 1, None
        if byte == ord("\\"):
            kind = data[i + 1 : i + 2]
            if not kind:
                return n, b'n"'
            if kind == b"u":
                digits = data[i + 2 : i + 6]
                if not all(d in HEX for d in digits):
                    raise ValueError(f"bad \\u escape {data[i:i + 6]!r} at byte {i}")
                if i + 6 > n:
                    code = digits.lower().ljust(4, b"0")
                    pair = b"\\udc00" if b"d800" <= code < b"dc00" else b""
                    return n, code[len(digits) :] + pair + b'"'
                if b"d800" <= digits.lower() < b"dc00":
                    high_surrogate_end = i + 6
                i += 6
            elif kind in SIMPLE_ESCAPES:
                i += 2
            else:
                raise ValueError(f"bad escape {data[i:i + 2]!r} at byte {i}")
        elif byte >= 0x80:
            length, low, high = utf8_lead(byte)
            for k, cont in enumerate(data[i + 1 : i + length]):
                lo, hi = (low, high) if k == 0 else (0x80, 0xBF)
                if not lo <= cont <= hi:
                    raise ValueError(f"invalid UTF-8 continuation {cont:#04x} at byte {i + 1 + k}")
            if i + length > n:
                have = n - i - 1  # continuation bytes present
                return n, bytes([low if have == 0 else 0x80]) + b"\x80" * (length - 2 - have) + b'"'
            i += length
        else:
            raise ValueError(f"raw control byte {byte:#04x} inside a string at byte {i}")
    return n, (b"\\udc00" if high_surrogate_end == n else b"") + b'"'
