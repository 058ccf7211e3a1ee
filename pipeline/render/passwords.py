"""Known passwords for encrypted PDFs (`--passwords FILE`): read once in the driver, tried in the render child.

The file, UTF-8, in one of two forms, chosen by its extension:

- any name but *.yaml, *.yml, *.json: one password per line, each tried on every encrypted file.
  A line is taken as it is, spaces included, less its line ending; empty lines are skipped. There
  are no comments: "#" is a character a password may start with.
- *.yaml, *.yml or *.json: a mapping from a file name or glob to a password or a list of them,
  or a plain list (tried on every file). A key matches a document when it matches its file name,
  its whole path or URI, or any end of it that starts after a "/" ("2024/*.pdf"); `*` also
  matches "/", matching is case-sensitive, and every matching key's passwords are tried, in file
  order. In YAML, quote keys that start with "*" and passwords YAML would read as numbers.

Each document gets its candidates (PasswordBook.for_document, in the render step, which knows the
whole URI): the empty password is tried first (unlock), then each candidate as written and, where it
differs, its SASLprep form (pipeline.render.saslprep), the one PDF 2.0 writers key AES-256 files
with. A file no candidate opens stays an `encrypted` row.

Passwords are secrets: no row, log line, run record or saved config holds one. The config keeps
the file's path; the objects that carry passwords to the workers print as a count; no message here
quotes a line or value of the file.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pageray.pipeline.render.saslprep import SASLprepError, saslprep

STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")
# pageray opens files with the passwords their owners gave; a file this large is a word list for guessing
MAX_PASSWORD_FILE_BYTES = 1024 * 1024


class PasswordFileError(ValueError):
    """The password file cannot be used; the message says why without quoting a password."""


class Candidates(tuple):
    """The passwords to try on one document. A tuple whose repr hides them: it travels as a process
    argument, and a repr of arguments may end up in a traceback or a log."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} password(s), hidden>"

    __str__ = __repr__


def candidates(passwords: Iterable[str]) -> Candidates:
    """Each password as written, then its SASLprep form where that differs; no empty one, no repeats."""
    out: dict[str, None] = {}
    for password in passwords:
        out[password] = None
        try:
            out[saslprep(password)] = None
        except SASLprepError:
            pass  # no normalised form: as written is all there is to try
    out.pop("", None)  # the empty password is always tried first, by the caller
    return Candidates(out)


@dataclass(frozen=True, repr=False)
class PasswordBook:
    """A password file's contents: passwords for every file, and (glob, passwords) pairs."""

    everywhere: tuple[str, ...] = ()
    by_pattern: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.everywhere or self.by_pattern)

    def __repr__(self) -> str:
        count = len(self.everywhere) + sum(len(passwords) for _, passwords in self.by_pattern)
        return f"PasswordBook(<{count} password(s), {len(self.by_pattern)} pattern(s), hidden>)"

    def for_document(self, uri: str) -> Candidates:
        if not self:
            return Candidates()
        # the whole path or URI, and each end of it after a "/": the last one is the file name
        ends = [uri] + [uri[index + 1:] for index, char in enumerate(uri) if char == "/"]
        matched = [password for pattern, passwords in self.by_pattern
                   if any(fnmatch.fnmatchcase(end, pattern) for end in ends) for password in passwords]
        return candidates([*self.everywhere, *matched])


NO_PASSWORDS = PasswordBook()


def load_password_file(path: str | Path) -> PasswordBook:
    """The book of the file at `path`, or PasswordFileError saying what to fix (see the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise PasswordFileError("it is a folder; give a file of passwords")
        if size > MAX_PASSWORD_FILE_BYTES:
            raise PasswordFileError(f"it is {size:,} bytes, over {MAX_PASSWORD_FILE_BYTES:,}: pageray tries the "
                                    "passwords you know for your files, it does not guess them")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PasswordFileError("no such file; give a file of passwords: one per line, or a YAML/JSON mapping "
                                "of file names or globs to passwords") from None
    except PermissionError:
        raise PasswordFileError("it cannot be read (permission denied); make it readable by the user running "
                                "pageray") from None
    except OSError as exc:
        raise PasswordFileError(f"it cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PasswordFileError(f"it is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if path.suffix.lower() in STRUCTURED_SUFFIXES:
        book = _structured(_parse(text, path.suffix.lower()))
    else:
        # split on "\n" only: str.splitlines() would also cut at characters a password may hold (U+2028, \x1c)
        book = PasswordBook(everywhere=tuple(line.removesuffix("\r") for line in text.split("\n")
                                             if line.removesuffix("\r")))
    if not book:
        raise PasswordFileError("it holds no password")
    return book


def _parse(text: str, suffix: str):
    # The parsers' own messages quote the text around a mistake, which may be a password: only
    # the position is passed on, and the original exception is dropped (`from None`).
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PasswordFileError(f"it is not valid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise PasswordFileError(f"it is not valid YAML{where}; quote keys that start with '*', as in "
                                "'*.pdf': password") from None


def _passwords(value, where: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, str):
            found = "nothing" if item is None else f"a {type(item).__name__}"
            raise PasswordFileError(f"{where}: a password must be text, found {found}; put it in quotes")
    if not values:
        raise PasswordFileError(f"{where}: an empty list; give a password or a list of them")
    return tuple(values)


def _structured(document) -> PasswordBook:
    if isinstance(document, list):
        return PasswordBook(everywhere=_passwords(document, "the list"))
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise PasswordFileError(f"it must be a mapping of file name or glob to password(s), or a list of passwords; "
                                f"found {found}")
    # Entries are named by position, not by key: a key is meant to be a file name, but one written
    # by mistake ("hunter2:" with no value) would be a password.
    pairs = []
    for number, (key, value) in enumerate(document.items(), 1):
        if not isinstance(key, str) or not key:
            raise PasswordFileError(f"entry {number}: the key is not a file name or glob; put it in quotes")
        pairs.append((key, _passwords(value, f"entry {number}")))
    return PasswordBook(by_pattern=tuple(pairs))


def unlock(doc, passwords: Candidates = Candidates()) -> bool:
    """Authenticate an encrypted `doc` with the empty password, then each candidate: True once one
    opens it. Call it before anything reads the pages: MuPDF counts 0 pages in some encrypted files
    whose page tree was read before authentication, and the page count read then is kept."""
    if not doc.needs_pass:
        return True
    return any(doc.authenticate(password) for password in ("", *passwords))
