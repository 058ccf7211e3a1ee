"""The Closer's string frames (extractors.closer): a JSON string lexed a byte at a time, and a
length-limited (minLength/maxLength) raw string counted in code points. Each frame's `step` eats
bytes and pops itself at the closing quote; `tail` is what closes it from where it stands."""
from __future__ import annotations

from pageray.extractors.closing.partial_json import HEX, PLAIN, SIMPLE_ESCAPES, utf8_lead


class CountedString:
    """completion.counted_string a byte at a time: raw characters, `count` of the `least`
    (minLength) begun, at most `most` (maxLength), `need` more bytes of a UTF-8 character (the
    next in `lo`..`hi`)."""
    __slots__ = ("least", "most", "count", "need", "lo", "hi", "open", "after")

    def __init__(self, least, most=None):
        self.least, self.most, self.count, self.need, self.open = least, most, 0, 0, False

    def step(self, stack, data, pos):
        if not self.open:
            if data[pos] != 0x22:
                raise ValueError(f"expected b'\"', got {bytes(data[pos:pos + 1])!r}")
            self.open = True
            return pos + 1
        for pos in range(pos, len(data)):
            byte = data[pos]
            if self.need:
                if not self.lo <= byte <= self.hi:
                    raise ValueError(f"invalid UTF-8 continuation {byte:#04x}")
                self.need, self.lo, self.hi = self.need - 1, 0x80, 0xBF
            elif byte == 0x22:
                if self.count < self.least:
                    raise ValueError(f"a string of at least {self.least} characters closed early")
                stack.pop()
                return pos + 1
            elif byte in b"\\\r\n" or self.count == self.most:
                raise ValueError(f"byte {byte:#04x} cannot continue a length-limited string")
            else:
                self.count += 1
                if byte >= 0x80:
                    length, self.lo, self.hi = utf8_lead(byte)
                    self.need = length - 1
        return len(data)

    def tail(self):
        cut = bytes([self.lo]) + b"\x80" * (self.need - 1) if self.need else b""
        return cut + b"0" * max(0, self.least - self.count) + b'"'


class StringFrame:
    """partial_json.string a byte at a time. state: 0 before '"', 1 in text, 2 after "\\", 3 in
    \\uXXXX (`digits`), 4 in a UTF-8 character (`need` more bytes, the next in `lo`..`hi`)."""
    __slots__ = ("state", "high", "digits", "need", "lo", "hi", "after")

    def __init__(self):
        self.state, self.high = 0, False  # high: the text ends with a high-surrogate escape

    def step(self, stack, data, pos):
        n = len(data)
        while pos < n:
            state, byte = self.state, data[pos]
            if state == 1:
                end = PLAIN.match(data, pos).end()
                self.high = self.high and end == pos
                if end == n:
                    return n
                pos, byte = end, data[end]
                if byte == 0x22:
                    stack.pop()
                    return pos + 1
                self.high = False
                if byte == 0x5C:
                    self.state = 2
                elif byte >= 0x80:
                    length, self.lo, self.hi = utf8_lead(byte)
                    self.need, self.state = length - 1, 4
                else:
                    raise ValueError(f"raw control byte {byte:#04x} inside a string")
            elif state == 4:
                if not self.lo <= byte <= self.hi:
                    raise ValueError(f"invalid UTF-8 continuation {byte:#04x}")
                self.need, self.lo, self.hi = self.need - 1, 0x80, 0xBF
                self.state = 4 if self.need else 1
            elif state == 3:
                if byte not in HEX:
                    raise ValueError(f"bad \\u escape digit {bytes([byte])!r}")
                self.digits += bytes([byte])
                if len(self.digits) == 4:
                    self.state, self.high = 1, b"d800" <= self.digits.lower() < b"dc00"
            elif state == 2:
                if byte != 0x75 and byte not in SIMPLE_ESCAPES:
                    raise ValueError(f"bad escape {bytes([byte])!r}")
                self.state, self.digits = 3 if byte == 0x75 else 1, b""
            elif byte != 0x22:
                raise ValueError(f"expected b'\"', got {bytes([byte])!r}")
            else:
                self.state = 1
            pos += 1
        return pos

    def tail(self):
        if self.state == 1:
            return b'\\udc00"' if self.high else b'"'
        if self.state == 2:
            return b'n"'
        if self.state == 3:
            code = self.digits.lower().ljust(4, b"0")
            return code[len(self.digits):] + (b"\\udc00" if b"d800" <= code < b"dc00" else b"") + b'"'
        return bytes([self.lo]) + b"\x80" * (self.need - 1) + b'"'  # lo is 80 after the first
