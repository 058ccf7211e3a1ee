"""Pydantic model classes as extraction schemas: `load_schema(Invoice)`, or a spec string
`"path/to/models.py:Invoice"` / `"package.module:Invoice"`.

Importing a module runs its code, with the caller's permissions, in the caller's process: only
a spec with the explicit `:Class` form ever imports anything, and a plain path is never
executed. Import models you trust, as you would any other Python code.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from pageray.pipeline.errors import shown
from pageray.schemas.model import SchemaError

# "models.py:Invoice", "pkg.models:Invoice", "pkg.models:Outer.Invoice"
MODEL_SPEC_RE = re.compile(r"(?P<module>.+):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_MODULE_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def is_model_spec(spec: str) -> bool:
    """Whether `spec` has the `module:Class` form (a .py path or a dotted module name)."""
    match = MODEL_SPEC_RE.fullmatch(spec)
    if not match:
        return False
    module = match["module"]
    return module.lower().endswith(".py") or bool(_MODULE_RE.fullmatch(module))


def import_model(spec: str) -> type:
    """The class named by `spec` ("file.py:Class" or "package.module:Class"), imported here."""
    match = MODEL_SPEC_RE.fullmatch(spec)
    module_ref, attr = match["module"], match["attr"]
    if module_ref.lower().endswith(".py"):
        module = _import_file(spec, Path(module_ref))
    else:
        try:
            module = importlib.import_module(module_ref)
        except Exception as exc:  # the user's module may raise anything while importing
            raise SchemaError(f"{spec}: importing module {module_ref!r} failed: "
                              f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            models = sorted(name for name, value in vars(module).items()
                            if _is_model(value) and value.__module__ == module.__name__)
            raise SchemaError(f"{spec}: {module_ref!r} has no {attr!r}"
                              + (f"; its models: {', '.join(models)}" if models else ""))
        target = getattr(target, part)
    return target


def python_file_hint(spec: str) -> str:
    """The refusal of a bare .py path as a schema: a model in it is named file.py:ClassName. The
    classes are listed from the file's syntax tree; a plain path is never run (module doc)."""
    path = Path(spec).expanduser()
    try:
        if path.stat().st_size > 1_000_000:
            raise OSError
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return f"{spec}: a Pydantic model is named as {spec}:ClassName" + ("" if path.is_file() else
                                                                            f" (and {str(path)!r} was not found)")
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    named = f" (classes in it: {', '.join(f'{spec}:{c}' for c in classes[:8])})" if classes else ""
    return f"{spec}: a Pydantic model is named as {spec}:ClassName{named}"


def model_document(model: Any, where: str) -> tuple[dict[str, Any], str, str, str | None]:
    """(model_json_schema(), name, description, version or None) of a Pydantic model class."""
    if not _is_model(model):
        raise SchemaError(f"{where}: {shown(model)} is not a Pydantic model class; pass a subclass "
                          "of pydantic.BaseModel (Pydantic v2), a schema file or a built-in name")
    try:
        document = model.model_json_schema()
    except Exception as exc:  # pydantic raises for types JSON Schema cannot express
        raise SchemaError(f"{where}: Pydantic cannot write the JSON Schema of "
                          f"{model.__name__}: {type(exc).__name__}: {exc}") from None
    # Pydantic writes the docstring (cleaned) as the description: the same text a dump of
    # model_json_schema() to a file gives, so both load as the same schema.
    description = document.get("description", "")
    version = vars(model).get("__version__")
    if version is not None and not isinstance(version, str):
        version = str(version)
    return document, model.__name__, description, version


def model_budget(model: Any) -> Any:
    """The model's `__max_new_tokens__` class attribute (its output budget per page), or None.

    A class attribute, like `__version__`, rather than a `json_schema_extra` key: it stays out
    of `model_json_schema()`, whose output must remain a schema the subset accepts. Read from
    the class itself, not inherited: a subclass that adds fields needs its own budget.
    ExtractionSchema checks the value (schemas.budget).
    """
    return vars(model).get("__max_new_tokens__")


def slug(name: str) -> str:
    """A pageray schema name from a class name or title: "LineItem" -> "line_item"."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", str(name))
    text = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")[:64].strip("_")
    return text or "my_schema"


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and callable(getattr(value, "model_json_schema", None)) \
        and hasattr(value, "model_fields")


def _import_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise SchemaError(f"{spec}: the Python file {str(path)!r} was not found")
    resolved = path.resolve()
    name = "pageray_models_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise SchemaError(f"{spec}: {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before it runs: Pydantic resolves postponed annotations via sys.modules.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything
        sys.modules.pop(name, None)
        raise SchemaError(f"{spec}: running {str(path)!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    return module
