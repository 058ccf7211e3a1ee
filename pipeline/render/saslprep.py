"""SASLprep (RFC 4013): how PDF 2.0 turns a typed password into the bytes an AES-256 (R6) file is keyed with.

ISO 32000-2 (7.6.4.3.3) has a conforming writer pass the password through SASLprep before UTF-8
encoding, so "Ⅸ" keys a file as "IX", and "pass\\u00adword" (a soft hyphen) as "password". MuPDF
hashes the bytes it is given as they are: the normalised form is the one that opens such a file.
pipeline.render.passwords tries it beside the password as written.

The standard library has the stringprep tables (RFC 3454, Unicode 3.2) and the normalisation; the
profile is these few lines. The maintained SASL libraries on PyPI keep their saslprep private
(scramp) or are unmaintained (passlib), so it is written here, against the RFC's own examples in
tests/test_passwords.py.
"""
from __future__ import annotations

import stringprep
import unicodedata

# RFC 4013 2.3: C.1.2 (mapped away before this check, listed as the RFC lists it) to C.9.
_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22, stringprep.in_table_c3,
    stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
    stringprep.in_table_c8, stringprep.in_table_c9,
)


class SASLprepError(ValueError):
    """The string has no SASLprep form. The message never quotes it: it is a password."""


def saslprep(text: str, allow_unassigned: bool = True) -> str:
    """`text` prepared by RFC 4013. Unassigned code points are allowed by default: a password we
    try is a "query" in RFC 3454's terms; a writer keying a file ("stored string") refuses them."""
    # 2.1 mapping: non-ASCII spaces become U+0020, "commonly mapped to nothing" (B.1) goes
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    # 2.2 normalisation: NFKC of the stringprep tables' Unicode version, not the running Python's
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for position, char in enumerate(prepared):
        if any(prohibited(char) for prohibited in _PROHIBITED):
            raise SASLprepError(f"a prohibited character (RFC 4013 2.3) at position {position}")
        if not allow_unassigned and stringprep.in_table_a1(char):
            raise SASLprepError(f"an unassigned code point (RFC 4013 2.5) at position {position}")
    # 2.4 bidirectional text (RFC 3454 6): right-to-left text may not mix in left-to-right
    # characters, and must begin and end with a right-to-left one
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            raise SASLprepError("right-to-left and left-to-right characters mixed (RFC 3454 6)")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise SASLprepError("right-to-left text must begin and end with a right-to-left character")
    return prepared
