"""What an output folder says about itself: who made it, and with which versions each run ran.

`OUT/_pageray.json` pins the schema id and model the folder was made with, so a run with a
different schema or model cannot silently mix rows into it. A run's record (`RunRecord`, saved as
`OUT/_runs/<run_id>.json` through pipeline.ledger.folder) is rewritten as the run goes, so a run
that died still leaves its last heartbeat.
"""
from __future__ import annotations

import enum
import platform
from importlib import metadata
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

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


class RunRecord(BaseModel):
    """A run's record: every key a run writes is a field (extra="forbid", checked on each
    assignment, so a misspelt key fails at once instead of going unseen into the file). The driver
    (pipeline.driver.run) and its heartbeat set them; the file holds those that were set
    (`to_json`), so its JSON is as before and the readers (`pageray status`, `pageray report`,
    `read()`) read it, and the records of earlier versions, as plain JSON."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    run_id: str
    state: RunState
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    config: Optional[dict[str, Any]] = None  # the RunConfig as the run resolved it (pipeline.resolved_run)
    max_new_tokens_from: Optional[str] = None  # "flag", "schema" or "derived"
    # the resolved schema, kept for good (read() reads rows back with it); "schema" would shadow BaseModel's
    schema_: Optional[dict[str, Any]] = Field(None, alias="schema")
    versions: Optional[dict[str, str]] = None
    plan: Optional[dict[str, Any]] = None  # pipeline.ledger.plan.Plan.summary
    progress: Optional[dict[str, Any]] = None  # the heartbeat's pipeline.progress.Progress.snapshot
    counts: Optional[dict[str, int]] = None  # rows per status
    pages: Optional[int] = None
    truncated: Optional[int] = None
    documents_with_errors: Optional[int] = None
    output_tokens: Optional[int] = None
    wall_s: Optional[float] = None
    pages_per_s: Optional[float] = None
    decode: Optional[dict[str, Any]] = None  # pipeline.driver.decode_counts
    # what the end of a run did: compaction (ledger.compact), document rows (ledger.documents),
    # small files merged (ledger.merge), each summary's keys as its function returns them
    superseded_files_rewritten: Optional[int] = None
    duplicate_files_rewritten: Optional[int] = None
    pruned_files_rewritten: Optional[int] = None
    documents_written: Optional[int] = None
    documents_dropped: Optional[int] = None
    merge_recovered: Optional[int] = None
    merged_files: Optional[int] = None
    merged_into: Optional[int] = None
    notes: Optional[list[str]] = None  # the run summary's lines (truncation, the tiny model, lost nodes)
    error: Optional[str] = None  # why a failed run stopped
    # stamped by each write (pipeline.ledger.folder.write_run): `pageray status` tells a dead run by it
    updated_at: Optional[str] = None
    updated_unix: Optional[float] = None

    def update(self, **values: Any) -> None:
        """Set fields by name, each validated (an unknown name is refused)."""
        for name, value in values.items():
            setattr(self, "schema_" if name == "schema" else name, value)

    def to_json(self) -> dict[str, Any]:
        """The record as its file holds it: the fields that were set, under their keys."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


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
