"""Where documents come from and where output goes: local paths and s3:// through pyarrow.fs.

Listing streams (a generator), so the driver never holds a whole corpus listing or any
document bytes. S3 uses the usual AWS_* variables; AWS_ENDPOINT_URL (or PAGERAY_S3_ENDPOINT)
points it at an S3-compatible server.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow.fs as pafs

from pageray.pipeline.errors import StorageError

DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Why a local file with a document suffix was not listed (see iter_documents' on_skip).
SKIP_REASONS = {
    "symlink": "a symlink, which may lead outside the input folder; --follow-symlinks lists it",
    "not_a_regular_file": "not a regular file (FIFO, socket or device)",
    "unreadable": "cannot stat it (vanished, dangling link or no permission)",
    "undecodable_name": "its path is not valid UTF-8 (rename it; the run record counts such files)",
    "duplicate": "named more than once by overlapping inputs; listed once",
}
SkipCallback = Callable[[str, str], None]
log = logging.getLogger(__name__)


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


def _s3_settings() -> tuple[str | None, str]:
    """(endpoint URL or None, region): the one reading of the S3 environment."""
    endpoint = os.environ.get("PAGERAY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return endpoint, region


def s3_client():
    """A boto3 S3 client with the same endpoint and region as `filesystem`: for what pyarrow's S3
    filesystem does not offer (conditional writes)."""
    import boto3

    endpoint, region = _s3_settings()
    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or a URI."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).expanduser().resolve())
    if uri.startswith("s3://"):
        endpoint, region = _s3_settings()
        kwargs = {"region": region}
        if endpoint:
            scheme, _, rest = endpoint.partition("://")
            kwargs.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - any failure here is a storage problem
        raise StorageError(f"cannot open {uri!r}: {exc}") from exc


def unreachable(uri: str) -> str | None:
    """Why the storage holding `uri` does not answer right now (an error text), or None if it
    does: one metadata request, bounded by the client's own timeouts and retries (pyarrow's S3
    client: a 1 s connect timeout, 3 attempts)."""
    try:
        fs, path = filesystem(uri)
        fs.get_file_info(path)
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises, it did not answer
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return None


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _is_document(name: str) -> bool:
    return name.lower().endswith(DOCUMENT_SUFFIXES)


def _utf8(path: str) -> bool:
    # os.walk hands undecodable bytes back as surrogates; such a name cannot become a URI,
    # a doc_id or a Parquet string, nor be opened through pyarrow.
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def log_skip(reason: str, path: str) -> None:
    log.warning("skipped %s: %s", printable_path(path), SKIP_REASONS[reason])


def printable_path(path: str) -> str:
    """A path as text even when it is not valid UTF-8: undecodable bytes as %XX (the bytes come
    back with urllib.parse.unquote_to_bytes), everything else as it is."""
    if _utf8(path):
        return path
    raw = os.fsencode(path)
    return "".join(chr(b) if b < 0x80 and b != 0x25 else f"%{b:02X}" for b in raw)


def _walk_local(root: Path, follow_symlinks: bool, seen_dirs: set[tuple[int, int]],
                on_skip: SkipCallback) -> Iterator[DocRef]:
    real_root = root.resolve()
    if not root.is_dir():  # a file named as an input is listed whatever its suffix
        st = root.stat()
        if not stat.S_ISREG(st.st_mode):
            on_skip("not_a_regular_file", str(real_root))
        elif not _utf8(str(real_root)):
            on_skip("undecodable_name", str(real_root))
        else:
            yield DocRef(str(real_root), st.st_size, st.st_mtime_ns)
        return
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=follow_symlinks):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            # Reached again: a symlink (or bind mount) loop, or a folder listed twice. Without
            # this a loop is walked until paths hit ELOOP, two loops exponentially often.
            dirnames.clear()
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        if not follow_symlinks:
            for name in dirnames:  # os.walk leaves linked folders out without a word
                if os.path.islink(os.path.join(dirpath, name)):
                    on_skip("symlink", os.path.join(dirpath, name))
        for name in sorted(filenames):
            if not _is_document(name):
                continue
            path = Path(dirpath) / name
            if not _utf8(str(path)):
                on_skip("undecodable_name", str(path))
                continue
            if path.is_symlink() and not follow_symlinks:
                on_skip("symlink", str(path))  # a link may lead outside the root; --follow-symlinks opts in
                continue
            try:
                st = path.stat()
            except OSError:
                on_skip("unreadable", str(path))  # vanished, a dangling link or a link loop
                continue
            if not stat.S_ISREG(st.st_mode):
                on_skip("not_a_regular_file", str(path))  # a FIFO or device would hang or never end
                continue
            yield DocRef(str(path), st.st_size, st.st_mtime_ns)


def _walk_remote(uri: str) -> Iterator[DocRef]:
    fs, path = filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise StorageError(f"cannot list {uri!r}: {exc}") from exc
    if info.type == pafs.FileType.File:
        yield DocRef(uri, info.size, info.mtime_ns or 0)
        return
    yield from _walk_remote_folder(fs, scheme, path)


def _walk_remote_folder(fs: pafs.FileSystem, scheme: str, path: str) -> Iterator[DocRef]:
    """One prefix level at a time (delimiter listings), files first, then each sub-prefix, so
    memory is bounded by the widest single folder, not by the bucket."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=False))
    except OSError as exc:
        raise StorageError(f"cannot list {scheme}://{path}: {exc}") from exc
    infos.sort(key=lambda i: i.path)
    folders = [i.path for i in infos if i.type == pafs.FileType.Directory]
    files = [DocRef(f"{scheme}://{i.path}", i.size, i.mtime_ns or 0) for i in infos
             if i.type == pafs.FileType.File and _is_document(i.base_name)]
    del infos
    yield from files
    for folder in folders:
        yield from _walk_remote_folder(fs, scheme, folder)


def iter_documents(roots: list[str], follow_symlinks: bool = False,
                   on_skip: SkipCallback | None = None) -> Iterator[DocRef]:
    """Every document under the given roots, each folder walked once, in a stable order.

    Local files that look like documents but are not listed are reported to
    `on_skip(reason, path)` (reason: a key of SKIP_REASONS), by default as a logged warning.
    """
    on_skip = on_skip or log_skip
    seen_dirs: set[tuple[int, int]] = set()  # (st_dev, st_ino) of every local folder walked
    # Overlapping inputs (a folder and a file in it, a prefix and a sub-prefix) would list a
    # document twice and extract it twice; one root cannot, so only several pay for the set.
    seen: set[bytes] | None = set() if len(roots) > 1 else None
    for root in roots:
        for doc in _walk_root(root, follow_symlinks, seen_dirs, on_skip):
            if seen is not None:  # 16 bytes a document, not its whole path
                key = hashlib.blake2b(doc.uri.encode("utf-8"), digest_size=16).digest()
                if key in seen:
                    on_skip("duplicate", doc.uri)
                    continue
                seen.add(key)
            yield doc


def check_inputs(roots: list[str]) -> None:
    """Refuse an input that does not exist (a typo), before the run claims its output folder:
    the listing would refuse it too, but only after the folder was pinned to this schema."""
    for root in roots:
        if is_remote(root):
            fs, path = filesystem(root)
            try:
                missing = fs.get_file_info(path).type == pafs.FileType.NotFound
            except OSError as exc:
                raise StorageError(f"cannot list {root!r}: {exc}") from exc
        else:
            missing = not Path(root).expanduser().exists()
        if missing:
            raise StorageError(f"input {root!r} does not exist")


def _walk_root(root: str, follow_symlinks: bool, seen_dirs: set[tuple[int, int]],
               on_skip: SkipCallback) -> Iterator[DocRef]:
    if is_remote(root):
        yield from _walk_remote(root)
        return
    path = Path(root).expanduser()
    if not path.exists():
        raise StorageError(f"input {root!r} does not exist")
    yield from _walk_local(path, follow_symlinks, seen_dirs, on_skip)


def read_bytes(uri: str, limit: int) -> bytes:
    """Read a document, refusing (StorageError is not raised: OSError is) more than `limit` bytes."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OverflowError(f"file is larger than max_file_bytes={limit:,}")
    return data
