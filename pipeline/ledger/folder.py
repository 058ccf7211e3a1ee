"""The output folder's layout, and the only code that lists or writes its files.

    OUT/_pageray.json                       the manifest: the schema and model the folder was made with
    OUT/data/part-<run_id>-<digest>.parquet committed pages, the record of what is done
    OUT/_runs/<run_id>.json                 one run's record (config, versions, counts, heartbeat)
    OUT/_runs/<run_id>/plan/shard-NNNNN.plan  the run's plan: Parquet under another suffix, so that
                                            `read_parquet('OUT/**/*.parquet')` finds pages only
    OUT/_compact/<part name>.json           a merge of small part files under way (pipeline.ledger.merge)
    OUT/documents/part-<run_id>-<digest>.parquet  document rows, one current row per document
                                            (document-scope runs, pipeline.ledger.documents)

Every write is whole or absent: locally a temporary ".<name>.<random>.tmp" beside the target,
renamed into place (readers skip names that start with "."); on object storage a single PUT,
which is atomic already. A folder opened with the holder's `fence` (pipeline.ledger.lease.Fence)
runs it right before each Parquet file is put in place or deleted, so a run that lost the lease
changes no page; records and journals (JSON) are not fenced, a stale run's own record included.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pageray.pipeline.errors import StorageError
from pageray.pipeline.storage import filesystem, is_remote, join

DATA_DIR = "data"
RUNS_DIR = "_runs"
MANIFEST = "_pageray.json"
LEASE_DIR = "_lease"  # OUT/_lease/<generation>.json: which run holds the folder (pipeline.ledger.lease)
COMPACT_DIR = "_compact"
DOCUMENTS_DIR = "documents"
PLAN_SUFFIX = "plan"
_PART = re.compile(r"part-(?P<run_id>[A-Za-z0-9][A-Za-z0-9_.-]*)-[0-9a-f]{20}\.parquet")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def part_name(run_id: str, table: pa.Table) -> str:
    """A part file is named after the pages it holds: a retried task writing the same pages
    replaces its file instead of adding a copy."""
    keys = sorted(zip(table.column("doc_id").to_pylist(), table.column("doc_sha256").to_pylist(),
                      table.column("page_index").to_pylist()), key=lambda k: (k[0], str(k[1]), k[2]))
    digest = hashlib.sha256(repr(keys).encode()).hexdigest()[:20]
    return f"part-{run_id}-{digest}.parquet"


def part_run_id(name: str) -> str | None:
    """The run that wrote a part file (exactly: run "nightly" is not run "nightly-2"), or None
    for a file that is not a part file."""
    match = _PART.fullmatch(name)
    return match.group("run_id") if match else None


class OutputFolder:
    """An output folder or s3:// prefix: its paths, its listing, its reads and atomic writes."""

    def __init__(self, uri: str, fence: Callable[[], None] | None = None):
        self.uri, self.fence = uri, fence
        self.fs, self.path = filesystem(uri)

    # paths
    @property
    def data_path(self) -> str:
        return f"{self.path}/{DATA_DIR}"

    @property
    def documents_path(self) -> str:
        return f"{self.path}/{DOCUMENTS_DIR}"

    def document_files(self) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.documents_path, allow_not_found=True))
        return sorted((i for i in infos if i.type == pafs.FileType.File and part_run_id(i.base_name)),
                      key=lambda i: i.path)

    def plan_path(self, run_id: str) -> str:
        return f"{self.path}/{RUNS_DIR}/{run_id}/plan"

    def plan_uri(self, run_id: str) -> str:
        """The plan folder as Ray Data reads it (a URI on object storage, a path locally)."""
        return join(self.uri, RUNS_DIR, run_id, "plan") if is_remote(self.uri) else self.plan_path(run_id)

    def shard_path(self, run_id: str, number: int) -> str:
        return f"{self.plan_path(run_id)}/shard-{number:05d}.{PLAN_SUFFIX}"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    # the listing
    def part_files(self) -> list[pafs.FileInfo]:
        """Committed part files (never temporary files or anything else in the data folder)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.data_path, allow_not_found=True))
        return sorted((i for i in infos if i.type == pafs.FileType.File and part_run_id(i.base_name)),
                      key=lambda i: i.path)

    def pages_dataset(self, schema: pa.Schema) -> pads.Dataset | None:
        """The committed pages read with `schema` (not one inferred from the first file, so an
        empty or odd part file reads as no rows); None while nothing is committed."""
        parts = self.part_files()
        if not parts:
            return None
        return pads.dataset([i.path for i in parts], schema=schema, filesystem=self.fs, format="parquet",
                            exclude_invalid_files=True)

    @staticmethod
    def each_file(dataset: pads.FileSystemDataset) -> Iterator[tuple[int, pads.Dataset]]:
        """(number, a dataset of that one file) for each file of `dataset`, with its schema. A
        dataset keeps the footer of every file it has read (about 0.35 MiB for a merged file of
        100,000 rows): a scan of 100 million pages through one dataset grew the driver by 0.37
        GiB, through a dataset per file by nothing."""
        for number, path in enumerate(dataset.files):
            yield number, pads.dataset([path], schema=dataset.schema, filesystem=dataset.filesystem,
                                       format=dataset.format)

    # writing
    def _check_fence(self) -> None:
        if self.fence is not None:
            self.fence()

    def _atomically(self, path: str, write: Callable[[str], None], fenced: bool = False) -> None:
        parent, _, name = path.rpartition("/")
        if is_remote(self.uri):
            if fenced:
                self._check_fence()  # the PUT is the commit: checked right before it
            write(path)
            return
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        write(tmp)
        try:
            if fenced:
                self._check_fence()  # the rename is the commit: checked right before it
        except BaseException:
            self.fs.delete_file(tmp)
            raise
        self.fs.move(tmp, path)

    def write_parquet(self, path: str, table: pa.Table, **options) -> None:
        self._atomically(path, lambda p: pq.write_table(table, p, filesystem=self.fs, compression="zstd", **options),
                         fenced=True)

    def write_parquet_stream(self, path: str, schema: pa.Schema, tables, row_group_rows: int) -> None:
        """One Parquet file from an iterable of tables (each read only when needed), in row groups
        of about `row_group_rows`: merging small files holds one row group in memory, not the file."""
        def write(target: str) -> None:
            with pq.ParquetWriter(target, schema, filesystem=self.fs, compression="zstd") as writer:
                pending, rows = [], 0
                for table in tables:
                    pending.append(table)
                    rows += table.num_rows
                    if rows >= row_group_rows:
                        writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
                        pending, rows = [], 0
                if pending:
                    writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
        if is_remote(self.uri):
            self._check_fence()  # a streamed upload is committed when it closes: checked before it begins
        self._atomically(path, write, fenced=not is_remote(self.uri))

    def journals(self) -> list[str]:
        """Names of the merge journals in OUT/_compact/ (merges that began and did not finish)."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/{COMPACT_DIR}", allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".json"))

    def write_part(self, run_id: str, table: pa.Table) -> str:
        """Commit `table` as one part file; return its name."""
        name = part_name(run_id, table)
        self.write_parquet(f"{self.data_path}/{name}", table)
        return name

    def delete(self, path: str) -> None:
        self._check_fence()
        self.fs.delete_file(path)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Write `path` only if it does not exist yet, atomically against every other writer;
        False if it exists. Locally O_EXCL; on S3 a conditional PUT (If-None-Match: *)."""
        if is_remote(self.uri):
            from botocore.exceptions import ClientError

            from pageray.pipeline.storage import s3_client

            bucket, _, key = path.partition("/")
            try:
                s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise StorageError(f"cannot write s3://{path}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - no credentials, no endpoint: a storage problem
                raise StorageError(f"cannot write s3://{path}: {exc}") from exc
            return True
        import os

        self.fs.create_dir(path.rpartition("/")[0], recursive=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def read_json(self, rel: str) -> dict | None:
        path = f"{self.path}/{rel}"
        try:
            if not self.exists(path):
                return None
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {join(self.uri, rel)}: {exc}") from exc

    def write_json(self, rel: str, obj: Any) -> None:
        # Insertion order, not sorted keys: a run record's schema keeps its fields in the user's order.
        data = json.dumps(obj, indent=2, default=str).encode("utf-8")

        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
        try:
            self._atomically(f"{self.path}/{rel}", write)
        except OSError as exc:
            raise StorageError(f"cannot write {join(self.uri, rel)}: {exc}") from exc

    # what the folder says about itself
    def manifest(self) -> dict | None:
        """What the folder was made with (schema id and name, model), if any run claimed it."""
        return self.read_json(MANIFEST)

    def write_manifest(self, manifest: dict) -> None:
        self.write_json(MANIFEST, manifest)

    def write_run(self, record) -> None:
        """A run's record (pipeline.ledger.records.RunRecord, which imports this module), stamped with
        when it was written (`pageray status` tells a dead run by it)."""
        document = {**record.to_json(), "updated_at": utc_now(), "updated_unix": time.time()}
        self.write_json(f"{RUNS_DIR}/{record.run_id}.json", document)

    def runs(self) -> list[dict]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/{RUNS_DIR}", allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot list {join(self.uri, RUNS_DIR)}: {exc}") from exc
        records = [self.read_json(f"{RUNS_DIR}/{i.base_name}") for i in infos
                   if i.type == pafs.FileType.File and i.base_name.endswith(".json")]
        return sorted((r for r in records if r), key=lambda r: r.get("started_at", ""))
