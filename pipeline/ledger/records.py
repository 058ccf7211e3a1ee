"""What an output folder says about itself: who made it, and a record per run.

`OUT/_pageray.json` pins the schema id and model the folder was made with, so a run with a
different schema or model cannot silently mix rows into it. `OUT/_runs/<run_id>.json` holds
one run's config, versions, counts and timings; it is rewritten as the run goes, so a run
that died still leaves its last heartbeat.
"""
from __future__ import annotations

import json
import uuid
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import pyarrow.fs as pafs

from pipeline.errors import ConfigError, StorageError
from pipeline.storage import filesystem, is_remote, join

MANIFEST = "_pageray.json"
RUNS_DIR = "_runs"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pageray", "ray", "torch", "transformers", "pymupdf", "xgrammar", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class OutputFolder:
    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.path = filesystem(uri)

    def _read_json(self, rel: str) -> dict | None:
        try:
            with self.fs.open_input_stream(f"{self.path}/{rel}") as f:
                return json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                return None
            raise StorageError(f"cannot read {join(self.uri, rel)}: {exc}") from exc

    def _write_json(self, rel: str, obj: Any) -> None:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")
        try:
            self.fs.create_dir(self.path + "/" + rel.rpartition("/")[0] if "/" in rel else self.path, recursive=True)
            # written aside and renamed: `pageray status` may read a run record while the
            # heartbeat rewrites it, and must never see half a file
            # (an object store PUT is atomic already)
            final = f"{self.path}/{rel}"
            tmp = final if is_remote(self.uri) else \
                f"{final.rpartition('/')[0]}/.{final.rpartition('/')[2]}.{uuid.uuid4().hex[:8]}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            if tmp != final:
                self.fs.move(tmp, final)
        except OSError as exc:
            raise StorageError(f"cannot write {join(self.uri, rel)}: {exc}") from exc

    def manifest(self) -> dict | None:
        """What the folder was made with (schema id and name, model), if any run claimed it."""
        return self._read_json(MANIFEST)

    def check_claim(self, schema, model: str, append: bool) -> dict | None:
        """Refuse to mix schemas or models in one folder unless the user asked for it; return the
        manifest, if the folder has one. `schema` None: the folder's own. `pageray plan` asks
        this too, so a dry run predicts the refusal."""
        from pipeline.config import canonical_model

        current = self._read_json(MANIFEST)
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
        raise ConfigError(f"output folder {self.uri}: {why}. Use a new --out, or pass --append to add rows of "
                          "this schema/model beside the others (each is counted and compacted on its own; "
                          "filter by schema_id and model_id).")

    def claim(self, schema, model: str, run_id: str, append: bool) -> None:
        if self.check_claim(schema, model, append) is None:
            self._write_json(MANIFEST, {"schema_id": schema.id, "schema_name": schema.name,
                                        "schema_version": schema.version, "model": model,
                                        "created_by_run": run_id, "created_at": utc_now()})

    def write_run(self, record: dict) -> None:
        record = {**record, "updated_at": utc_now(), "updated_unix": time.time()}
        self._write_json(f"{RUNS_DIR}/{record['run_id']}.json", record)

    def runs(self) -> list[dict]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/{RUNS_DIR}", allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot list {join(self.uri, RUNS_DIR)}: {exc}") from exc
        records = [self._read_json(f"{RUNS_DIR}/{i.base_name}") for i in infos
                   if i.type == pafs.FileType.File and i.base_name.endswith(".json")]
        return sorted((r for r in records if r), key=lambda r: r.get("started_at", ""))
