"""Finding and reading schemas: built-in names, or user files in JSON or YAML.

Schema files are untrusted: the size is checked before parsing, YAML is read with
`yaml.safe_load` only (no tags that build Python objects), and every key is accounted for.
File format: a mapping with `name`, `version`, `description` and `schema` (the JSON Schema
of the fields).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from schemas.model import ExtractionSchema, SchemaError

MAX_FILE_BYTES = 256 * 1024
FILE_KEYS = ("name", "version", "description", "schema")
SUFFIXES = (".json", ".yaml", ".yml")


def list_builtin() -> list[str]:
    """Names of the built-in schemas, sorted."""
    return sorted(p.name[: -len(".json")] for p in _builtin_dir().iterdir()
                  if p.name.endswith(".json"))


def load_schema(spec: str) -> ExtractionSchema:
    """A built-in schema by name, or the schema in a .json / .yaml / .yml file at path `spec`.

    A built-in name wins over a file of the same name in the working directory.
    """
    if spec in list_builtin():
        builtin = _builtin_dir() / f"{spec}.json"
        return _from_document(_parse(builtin.read_text(encoding="utf-8"), ".json", spec),
                              f"built-in schema {spec!r}")
    path = Path(spec)
    if not path.is_file() and (path.suffix.lower() in SUFFIXES or len(path.parts) > 1):
        raise SchemaError(f"schema file {spec!r} not found (and it is no built-in name: "
                          f"{', '.join(list_builtin())})")
    if not path.is_file():
        raise SchemaError(
            f"schema {spec!r} is neither a built-in schema nor an existing file; use one of "
            f"{', '.join(list_builtin())}, or the path of a .json or .yaml schema file")
    return load_schema_file(path)


def load_schema_file(path: Path) -> ExtractionSchema:
    """The schema in one user file; every failure names the file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SchemaError(f"{path}: unsupported file type {path.suffix!r}; schema files end in "
                          f"{', '.join(SUFFIXES)}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SchemaError(f"{path}: the file has {size} bytes; schema files are limited to "
                          f"{MAX_FILE_BYTES} bytes (256 KiB), shorten the descriptions or "
                          "split the schema")
    with path.open("rb") as handle:
        # Read one byte past the limit: the file may have grown since stat().
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise SchemaError(f"{path}: the file is over {MAX_FILE_BYTES} bytes (256 KiB); "
                          "shorten it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "save the file as UTF-8") from None
    return _from_document(_parse(text, suffix, str(path)), str(path))


def _parse(text: str, suffix: str, where: str) -> Any:
    try:
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg}") from None
    except yaml.constructor.ConstructorError as exc:
        if "tag" not in (exc.problem or ""):
            raise SchemaError(f"{where}: invalid YAML: {exc.problem}{_mark(exc)}") from None
        raise SchemaError(f"{where}: YAML tag not allowed ({exc.problem}{_mark(exc)}); schema "
                          "files hold plain data only, remove the tag") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SchemaError(f"{where}: invalid YAML: {problem}{_mark(exc)}") from None
    except ValueError as exc:
        # JSON: a duplicate key (see _no_duplicate_keys). YAML: a value it misread, typically
        # an unquoted impossible date such as 2024-02-30.
        hint = "" if suffix == ".json" else "; quote values YAML may misread, such as dates"
        raise SchemaError(f"{where}: {exc}{hint}") from None
    except RecursionError:
        raise SchemaError(f"{where}: the document is nested too deeply; flatten it") from None


def _from_document(document: Any, where: str) -> ExtractionSchema:
    if not isinstance(document, dict):
        raise SchemaError(f"{where}: a schema file must be a mapping with the keys "
                          f"{', '.join(FILE_KEYS)}")
    unknown = [str(k) for k in document if k not in FILE_KEYS]
    if unknown:
        raise SchemaError(f"{where}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                          f"the allowed keys are {', '.join(FILE_KEYS)} (the field definitions "
                          "go under 'schema')")
    missing = [k for k in FILE_KEYS if k not in document]
    if missing:
        raise SchemaError(f"{where}: missing top-level key(s) {', '.join(missing)}; a schema "
                          f"file needs all of {', '.join(FILE_KEYS)}")
    try:
        return ExtractionSchema(name=document["name"], version=document["version"],
                                description=document["description"],
                                json_schema=document["schema"])
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last duplicate; in a hand-written schema that hides a
    # field the author believes is there.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one mapping; keep one")
        out[key] = value
    return out


def _mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _builtin_dir() -> Any:
    return resources.files("schemas") / "builtin"
