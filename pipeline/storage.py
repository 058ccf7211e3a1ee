"""Where documents come from and where output goes: local paths and s3:// through pyarrow.fs.

Listing streams (a generator), so the driver never holds a whole corpus listing or any
document bytes. S3 uses the usual AWS_* variables; AWS_ENDPOINT_URL (or PAGERAY_S3_ENDPOINT)
points it at an S3-compatible server.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow.fs as pafs

from pipeline.errors import StorageError

DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class DocRef:
    uri: str
    size: int
    mtime_ns: int

    @property
    def doc_id(self) -> str:
        return doc_id_for(self.uri)


def doc_id_for(uri: str) -> str:
    """Stable id of a document's location; a changed file keeps its id, its sha256 changes."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:24]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).expanduser().resolve())
    if uri.startswith("s3://"):
        endpoint = os.environ.get("PAGERAY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        kwargs = {"region": region}
        if endpoint:
            scheme, _, rest = endpoint.partition("://")
            kwargs.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - any failure here is a storage problem
        raise StorageError(f"cannot open {uri!r}: {exc}") from exc


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _is_document(name: str) -> bool:
    return name.lower().endswith(DOCUMENT_SUFFIXES)


def _walk_local(root: Path, follow_symlinks: bool) -> Iterator[DocRef]:
    real_root = root.resolve()
    if root.is_file():
        st = root.stat()
        yield DocRef(str(real_root), st.st_size, st.st_mtime_ns)
        return
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=follow_symlinks):
        dirnames.sort()
        for name in sorted(filenames):
            if not _is_document(name):
                continue
            path = Path(dirpath) / name
            if path.is_symlink() and not follow_symlinks:
                continue  # a link may lead outside the root; --follow-symlinks opts in
            real = path.resolve()
            if not follow_symlinks and not real.is_relative_to(real_root):
                continue
            try:
                st = real.stat()
            except OSError:
                continue  # vanished or dangling link: nothing to read
            if real.is_file():
                yield DocRef(str(path), st.st_size, st.st_mtime_ns)


def _walk_remote(uri: str) -> Iterator[DocRef]:
    fs, path = filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            yield DocRef(uri, info.size, info.mtime_ns or 0)
            return
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=False))
    except (OSError, FileNotFoundError) as exc:
        raise StorageError(f"cannot list {uri!r}: {exc}") from exc
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and _is_document(info.base_name):
            yield DocRef(f"{scheme}://{info.path}", info.size, info.mtime_ns or 0)


def iter_documents(roots: list[str], follow_symlinks: bool = False) -> Iterator[DocRef]:
    """Every document under the given roots, each once, in a stable order."""
    for root in roots:
        if is_remote(root):
            yield from _walk_remote(root)
            continue
        path = Path(root).expanduser()
        if not path.exists():
            raise StorageError(f"input {root!r} does not exist")
        yield from _walk_local(path, follow_symlinks)


def read_bytes(uri: str, limit: int) -> bytes:
    """Read a document, refusing (StorageError is not raised: OSError is) more than `limit` bytes."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OverflowError(f"file is larger than max_file_bytes={limit}")
    return data
