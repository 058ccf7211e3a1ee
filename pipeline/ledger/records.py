"""What an output folder says about itself: who made it, and with which versions each run ran.

`OUT/_pageray.json` pins the schema id and model the folder was made with, so a run with a
different schema or model cannot silently mix rows into it. A run's record (`OUT/_runs/<run_id>.json`,
written through pipeline.ledger.folder) is rewritten as the run goes, so a run that died still
leaves its last heartbeat.
"""
from __future__ import annotations

import enum
import platform
from importlib import metadata

from pageray.pipeline.errors import ConfigError
from pageray.pipeline.ledger.folder import OutputFolder, utc_now


class RunState(str, enum.Enum):
    """A run's `state` in its record. The first three are live: a record in one of them that
    its heartbeat stopped rewriting belongs to a driver that died (pipeline.ledger.status)."""

    PLANNING = "planning"
    RUNNING = "running"
    COMPACTING = "compacting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        return self in (RunState.PLANNING, RunState.RUNNING, RunState.COMPACTING)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pageray", "ray", "torch", "transformers", "pymupdf", "xgrammar", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def check_claim(folder: OutputFolder, schema, model: str, append: bool) -> dict | None:
    """Refuse to mix schemas or models in one folder unless the user asked for it; return the
    manifest, if the folder has one. `schema` None: the folder's own. `pageray plan` asks this
    too, so a dry run predicts the refusal."""
    from pageray.extractors.model.loading import canonical_model

    current = folder.manifest()
    if current is None or append:
        return current
    same_schema = schema is None or current.get("schema_id") == schema.id
    if same_schema and canonical_model(current.get("model") or "") == model:
        return current
    if not same_schema and current.get("schema_name") == schema.name:
        why = (f"the schema {schema.name!r} changed since the folder was made (id {current.get('schema_id')}, "
               f"version {current.get('schema_version', '?')}; now id {schema.id}, version {schema.version}), "
               "so old and new rows would not be comparable")
    else:
        uses = f"schema {schema.name} (id {schema.id}) and " if schema is not None else ""
        why = (f"it was made with schema {current.get('schema_name')} (id {current.get('schema_id')}) and "
               f"model {current.get('model')!r}; this run uses {uses}model {model!r}")
    raise ConfigError(f"output folder {folder.uri}: {why}. Use a new --out, or pass --append to add rows of "
                      "this schema/model beside the others (each is counted and compacted on its own; "
                      "filter by schema_id and model_id).")


def claim(folder: OutputFolder, schema, model: str, run_id: str, append: bool) -> None:
    """check_claim, then pin this schema and model if the folder was new."""
    if check_claim(folder, schema, model, append) is None:
        folder.write_manifest({"schema_id": schema.id, "schema_name": schema.name, "schema_version": schema.version,
                               "model": model, "created_by_run": run_id, "created_at": utc_now()})
