"""Finding and reading schemas: built-in names, or user files in JSON or YAML.

Schema files are untrusted: the size is checked before parsing, YAML is read with
`yaml.safe_load` only (no tags that build Python objects), and every key is accounted for.
File format: a mapping with `name`, `version`, `description` and `schema` (the JSON Schema
of the fields), optionally `max_new_tokens` (the output budget per page, schemas.budget), or a
plain JSON Schema as `model_json_schema()` or another generator writes it
(name from its `title` or the file name, description from its `description`, version from its
hash). Either way generator constructs ($ref, Optional's anyOf, const) are first rewritten
into pageray's dialect (schemas.jsonschema), then checked as usual.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pageray.schemas import pydantic_models
from pageray.schemas.jsonschema import normalize
from pageray.schemas.model import ExtractionSchema, SchemaError, display_label, format_problems
from pageray.schemas.plain_json import canonical_json, json_value_problems

MAX_FILE_BYTES = 256 * 1024
FILE_KEYS = ("name", "version", "description", "schema")
# source_schema: the JSON Schema the fields were rewritten from (ExtractionSchema.source_schema),
# as `pageray.extract(schema=MyModel)` hands a loaded schema to the driver in a file.
OPTIONAL_KEYS = ("max_new_tokens", "source_schema")
SUFFIXES = (".json", ".yaml", ".yml")
# Built-ins whose targets span pages (an invoice's items, a paper's header and footer): their runs
# also write one row per document unless --scope page says otherwise; table and transcribe do not.
DOCUMENT_BUILTINS = ("invoice", "receipt", "paper", "form")


def list_builtin() -> list[str]:
    """Names of the built-in schemas, sorted."""
    return sorted(p.name[: -len(".json")] for p in _builtin_dir().iterdir()
                  if p.name.endswith(".json"))


def load_schema(spec: str | type) -> ExtractionSchema:
    """A built-in schema by name, the schema in a .json / .yaml / .yml file at path `spec`, or
    a Pydantic (v2) model: the class itself, or "path/to/models.py:Invoice" /
    "package.module:Invoice".

    A built-in name wins over a file of the same name in the working directory. A model's name
    is its class name slugified (LineItem -> line_item), its description its docstring, its
    version its `__version__` class attribute or else a hash of its schema, its output budget
    its `__max_new_tokens__` class attribute or else one derived from its fields.

    Security: a "module:Class" spec IMPORTS that module, which runs its code in this process
    with this process's permissions. Only the explicit ":Class" form does that; a plain path
    is only ever read as data. Use it for models you trust.
    """
    if not isinstance(spec, str):
        document, name, description, version = pydantic_models.model_document(
            spec, getattr(spec, "__name__", f"schema {type(spec).__name__}"))
        return _from_plain(document, getattr(spec, "__name__", "model"),
                           pydantic_models.slug(name), description, version,
                           pydantic_models.model_budget(spec))
    if spec in list_builtin():
        builtin = _builtin_dir() / f"{spec}.json"
        return _from_document(_parse(builtin.read_text(encoding="utf-8"), ".json", spec),
                              f"built-in schema {spec!r}")
    path = Path(spec)
    if not path.is_file() and pydantic_models.is_model_spec(spec):
        model = pydantic_models.import_model(spec)
        document, name, description, version = pydantic_models.model_document(model, spec)
        return _from_plain(document, spec, pydantic_models.slug(name), description, version,
                           pydantic_models.model_budget(model))
    if path.suffix.lower() == ".py":  # a model's file, without its class
        raise SchemaError(pydantic_models.python_file_hint(spec))
    if not path.is_file() and (path.suffix.lower() in SUFFIXES or len(path.parts) > 1):
        raise SchemaError(f"schema file {spec!r} not found (and it is no built-in name: "
                          f"{', '.join(list_builtin())})")
    if not path.is_file():
        close = difflib.get_close_matches(spec, list_builtin(), 1)
        raise SchemaError(
            f"schema {spec!r} is neither a built-in schema nor an existing file; "
            + (f"did you mean {close[0]!r}? " if close else "") + f"use one of {', '.join(list_builtin())}, "
            "the path of a .json or .yaml schema file, or a Pydantic model as models.py:ClassName")
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
    document = _parse(text, suffix, str(path))
    if is_plain_json_schema(document):
        title = document.get("title")
        name = pydantic_models.slug(title if isinstance(title, str) and title.strip()
                                    else path.stem)
        return _from_plain(document, str(path), name, document.get("description"), None)
    return _from_document(document, str(path))


def is_plain_json_schema(document: Any) -> bool:
    """A JSON Schema without pageray's wrapper (no `schema`, `name` or `version` key)."""
    return isinstance(document, dict) and not any(k in document for k in ("schema", "name",
                                                                          "version")) \
        and any(k in document for k in ("type", "properties", "$defs", "definitions",
                                        "$schema", "$ref", "title"))


def _from_plain(document: Any, where: str, name: str, description: Any,
                version: str | None, max_new_tokens: Any = None) -> ExtractionSchema:
    """A plain JSON Schema (a file or a model's dump): rewritten, then the usual checks."""
    problems = json_value_problems(document)
    if not problems:
        json_schema, problems = normalize(document, generated=True)
    if problems:
        raise SchemaError(f"{where}: {format_problems(name, problems)}")
    if not isinstance(description, str) or not description.strip():
        raise SchemaError(f"{where}: {name}: the JSON Schema has no top-level 'description'; "
                          "add one (for a Pydantic model: a docstring), it tells the model "
                          "what the page is read for")
    if version is None:
        version = hashlib.sha256(canonical_json(json_schema).encode("utf-8")).hexdigest()[:8]
    try:
        return ExtractionSchema(name=name, version=version, description=description,
                                json_schema=json_schema, max_new_tokens=max_new_tokens,
                                source_schema=document)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None


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
    unknown = [str(k) for k in document if k not in FILE_KEYS + OPTIONAL_KEYS]
    if unknown:
        raise SchemaError(f"{where}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                          f"the allowed keys are {', '.join(FILE_KEYS + OPTIONAL_KEYS)} (the "
                          "field definitions go under 'schema')")
    missing = [k for k in FILE_KEYS if k not in document]
    if missing:
        raise SchemaError(f"{where}: missing top-level key(s) {', '.join(missing)}; a schema "
                          f"file needs all of {', '.join(FILE_KEYS)}")
    json_schema = source = document["schema"]
    if isinstance(json_schema, dict) and not json_value_problems(json_schema):
        # Hand-written files keep their annotations; only generator constructs are rewritten.
        json_schema, problems = normalize(json_schema, generated=False)
        if problems:
            raise SchemaError(f"{where}: {format_problems(display_label(document['name']), problems)}")
    try:
        return ExtractionSchema(name=document["name"], version=document["version"],
                                description=document["description"],
                                json_schema=json_schema,
                                max_new_tokens=document.get("max_new_tokens"),
                                source_schema=document.get("source_schema", source))
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
    return resources.files("pageray.schemas") / "builtin"
