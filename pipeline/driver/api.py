"""pageray as a library, for notebooks and for code that embeds it:

    from pageray.pipeline import extract, read
    record = extract("invoices/", schema=Invoice, out="out/", max_new_tokens=256)
    df = read("out/", as_="pandas")

Why a module of its own: code that embeds pageray needs what the CLI guarantees without a shell
in between. There is one path: `pageray extract` calls `extract()` here, so an option and a flag
are the same RunConfig field, validated the same way (a bad one is a ConfigError naming it,
raised before any work), and the return value is the run record the CLI prints a summary of.

Schemas. `schema` is anything `schemas.load_schema` takes (a built-in name, a schema file,
"models.py:Class", "pkg.module:Class") or a Pydantic class or ExtractionSchema object. It is
loaded once, here (`resolve_run`), into the run's `ResolvedRun` (pipeline.resolved_run) with the
budget it decides; the driver and the workers use that object and never load the schema again.
A class, even one defined in a notebook (no importable name), is loaded straight from the class:
the same class is the same schema (the same id), so a re-run with it is incremental. The
config's `schema_ref`, a string, then only names it in the run record ("module:Class", or an
ExtractionSchema's name and id); the record's `schema` keeps the resolved schema for good.

Reading. The current rows are those of the committed part files, listed by the layout's owner
(OutputFolder.pages_dataset, the listing the index and compaction use): each finished run has
compacted them to one row per page of the newest version of each document. While a run is under
way, or after one was killed, a page may have two rows until the next run finishes; `read()` then
warns, as the README's reading section says (the newest `created_at` of a page is current).
"""
from __future__ import annotations

import difflib
import os
import warnings
from typing import Any, Literal, Sequence, Union

from pageray.pipeline.config import RunConfig
from pageray.pipeline.resolved_run import ResolvedRun
from pageray.pipeline.errors import ConfigError, StorageError, shown

PathLike = Union[str, "os.PathLike[str]"]
# a built-in name or a file / "module:Class" spec, a Pydantic model class, or an ExtractionSchema
SchemaLike = Any
# the RunConfig fields extract() takes as its own arguments, not as **options
_ARGUMENTS = ("inputs", "out", "schema_ref")
FORMATS = ("arrow", "pandas", "polars")


def build_config(inputs: PathLike | Sequence[PathLike], schema_ref: str, out: PathLike, /, **options) -> RunConfig:
    """The validated config of a run, built as `pageray extract` builds it: an unknown or bad
    option, or a schema that cannot be used, is refused here, before any work."""
    allowed = [name for name in RunConfig.model_fields if name not in _ARGUMENTS]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hints = [f"{name!r}" + ("" if name != "schema_ref" else " (the schema is extract()'s schema= argument)")
                 + "".join(f" (did you mean {m!r}?)" for m in difflib.get_close_matches(name, allowed, 1))
                 for name in unknown]
        raise ConfigError(f"invalid configuration:\n  unknown option(s) {', '.join(hints)}; the options are "
                          f"{', '.join(allowed)}")
    # Path objects become strings; a value of any other type goes to RunConfig as it is, to be
    # refused there naming its option (a --config file can hold `out: 42` or `inputs: [[/x]]`).
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    paths = [_fspath(p) for p in paths] if isinstance(paths, (list, tuple)) else paths
    options = {k: _fspath(v) for k, v in options.items()}  # model=Path(...)
    return RunConfig.build(inputs=paths, out=_fspath(out), schema_ref=schema_ref, **options)


def resolve_run(inputs: PathLike | Sequence[PathLike], schema: SchemaLike, out: PathLike, /,
                **options) -> ResolvedRun:
    """The run extract() starts, resolved once: its config (build_config), its schema loaded and
    its budget worked out. Anything wrong is refused here, before any work."""
    config = build_config(inputs, _schema_ref(schema), out, **options)
    return ResolvedRun.of(config, _resolve(schema))


def _fspath(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def extract(inputs: PathLike | Sequence[PathLike], *, schema: SchemaLike, out: PathLike, **options) -> dict:
    """Run one extraction of `inputs` (files, folders or s3:// prefixes) into `out` and return
    its run record (also saved as OUT/_runs/<run_id>.json). `options` are the RunConfig fields
    (`pageray extract`'s flags with underscores: max_new_tokens=256, batch_size=8, force=True)."""
    run = resolve_run(inputs, schema, out, **options)
    from pageray.pipeline.driver.run import run_extraction  # Ray and the model side: only once the config is good

    return run_extraction(run)


def _schema_ref(schema: SchemaLike) -> str:
    """The string that names `schema` in the config (and so the record). A class or schema object
    is never loaded by it (see the module docstring), and never named as a built-in, whose name
    would switch on document scope (RunConfig.document_scope)."""
    from pageray.schemas import ExtractionSchema

    if isinstance(schema, (str, os.PathLike)):
        return os.fspath(schema)
    if isinstance(schema, type):
        return f"{schema.__module__}:{schema.__qualname__}"
    if isinstance(schema, ExtractionSchema):
        return f"{schema.name} (id {schema.id})"
    return _resolve(schema)  # refused there, naming what it got


def _resolve(schema: SchemaLike):
    from pageray.schemas import ExtractionSchema, load_schema

    if isinstance(schema, ExtractionSchema):
        return schema
    if not isinstance(schema, (str, os.PathLike, type)):  # e.g. `schema: [invoice]` in a --config file
        raise ConfigError(f"invalid configuration:\n  --schema: a built-in name, a schema file, models.py:Class "
                          f"or a Pydantic class (got the {type(schema).__name__} {shown(schema)})")
    return load_schema(os.fspath(schema) if isinstance(schema, os.PathLike) else schema)


def read(out: PathLike, as_: Literal["arrow", "pandas", "polars"] = "arrow", schema: SchemaLike | None = None):
    """The current rows of the output folder (or s3:// prefix) `out`: a lazy pyarrow Dataset, or
    with `as_="pandas"` a DataFrame with Arrow-backed, exactly typed columns (`fields` is a struct:
    `df.fields.struct.field("total")`), or with `as_="polars"` a Polars DataFrame.

    Rows are those of `schema`, by default the one the folder was made with (a folder written
    with `--append` holds several; pass a schema as for extract() to read another's rows)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from pageray.pipeline.datamodel import output_schema
    from pageray.pipeline.ledger.folder import MANIFEST, OutputFolder
    from pageray.pipeline.ledger.records import RunState
    from pageray.pipeline.ledger.status import run_state
    from pageray.schemas import arrow_type

    if as_ not in FORMATS:
        raise ValueError(f"read(as_={as_!r}): choose one of {', '.join(FORMATS)}")
    folder = OutputFolder(os.fspath(out))
    manifest = folder.manifest()
    if manifest is None:
        raise StorageError(f"{folder.uri} is not a pageray output folder (it has no {MANIFEST}); "
                           "pass the --out of a run")
    runs = folder.runs()
    resolved = _resolve(schema) if schema is not None else _schema_of(runs, manifest)
    pages = output_schema(arrow_type(resolved))
    dataset = folder.pages_dataset(pages) or pads.dataset([], schema=pages, filesystem=folder.fs, format="parquet")
    dataset = dataset.filter(pc.field("schema_id") == resolved.id)
    if runs and run_state(runs[-1]) != RunState.SUCCEEDED.value:
        warnings.warn(f"{folder.uri}: run {runs[-1]['run_id']} is {run_state(runs[-1])}; until a run on this output "
                      "finishes, some pages may have two rows (the newest created_at is current)", stacklevel=2)
    elif folder.journals():
        warnings.warn(f"{folder.uri}: a merge of small part files is under way or was interrupted "
                      "(pipeline.ledger.merge); until it finishes some pages may have two rows "
                      "(`pageray compact` finishes it)", stacklevel=2)
    if as_ == "arrow":
        return dataset
    table = dataset.to_table()
    if as_ == "pandas":
        import pandas as pd

        return table.to_pandas(types_mapper=pd.ArrowDtype)
    try:
        import polars as pl
    except ImportError:
        raise ImportError("read(..., as_='polars') needs Polars, which is not installed: pip install polars") from None
    return pl.from_arrow(table)


def _schema_of(runs: list[dict], manifest: dict):
    """The schema the folder was made with, as the newest run record of that schema kept it."""
    from pageray.schemas import ExtractionSchema

    wanted = manifest.get("schema_id")
    for record in reversed(runs):
        saved = record.get("schema") or {}
        if saved.get("id") == wanted:
            return ExtractionSchema(**{k: saved[k] for k in ("name", "version", "description", "json_schema")},
                                    source_schema=saved.get("source_schema"))
    raise StorageError(f"no run record of this output holds its schema (id {wanted}, "
                       f"{manifest.get('schema_name')!r}); pass read(..., schema=...)")
