"""pipeline.storage listing: hostile folder trees neither hang the planner nor escape the input folder."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest
from pageray.pipeline.errors import StorageError
from pageray.pipeline.storage import SKIP_REASONS, iter_documents

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="symlinks, FIFOs and byte file names")


def listing(*roots: Path, follow_symlinks: bool = False, limit: int = 1000) -> tuple[list[str], list[tuple[str, str]]]:
    """(listed paths relative to the first root's parent, [(reason, skipped path name)]).

    At most `limit` documents are taken, so a listing that would never end fails instead of hanging.
    """
    skipped: list[tuple[str, str]] = []
    docs = itertools.islice(iter_documents([str(r) for r in roots], follow_symlinks=follow_symlinks,
                                           on_skip=lambda reason, path: skipped.append((reason, path))), limit)
    base = roots[0].resolve().parent
    listed = [os.path.relpath(doc.uri, base) for doc in docs]
    assert all(reason in SKIP_REASONS for reason, _ in skipped)
    return listed, [(reason, os.path.basename(path)) for reason, path in skipped]


def touch(path: Path, content: bytes = b"%PDF-1.7\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_symlink_to_a_file_outside_the_root_needs_follow_symlinks(tmp_path):
    secret = touch(tmp_path / "outside" / "secret.pdf")
    root = tmp_path / "in"
    touch(root / "a.pdf")
    (root / "leak.pdf").symlink_to(secret)
    (root / "linked_dir").symlink_to(secret.parent, target_is_directory=True)

    assert listing(root) == (["in/a.pdf"], [("symlink", "linked_dir"), ("symlink", "leak.pdf")])
    listed, skipped = listing(root, follow_symlinks=True)
    assert listed == ["in/a.pdf", "in/leak.pdf", "in/linked_dir/secret.pdf"] and skipped == []


def test_symlinked_folder_loops_end_and_list_each_document_once(tmp_path):
    root = tmp_path / "in"
    touch(root / "a.pdf")
    touch(root / "sub" / "b.pdf")
    # Two loops in one folder: walked naively that is 2**depth paths until ELOOP stops it.
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    (root / "sub" / "here").symlink_to(".", target_is_directory=True)
    expected = ["in/a.pdf", "in/sub/b.pdf"]
    assert listing(root, follow_symlinks=True) == (expected, [])
    assert listing(root) == (expected, [("symlink", "here"), ("symlink", "up")])


def test_a_file_symlink_loop_is_reported_not_raised(tmp_path):
    root = tmp_path / "in"
    touch(root / "a.pdf")
    (root / "loop.pdf").symlink_to("loop.pdf")
    (root / "dangling.pdf").symlink_to("missing.pdf")
    assert listing(root, follow_symlinks=True) == (["in/a.pdf"], [("unreadable", "dangling.pdf"),
                                                                  ("unreadable", "loop.pdf")])


def test_only_document_suffixes_are_listed(tmp_path):
    root = tmp_path / "in"
    for name in ("notes.txt", ".DS_Store", "README", "scan.pdf.bak", "archive.zip", "pdf", "image.gif",
                 "A.PDF", "b.Jpeg", "c.jpg", "d.png", "e.tif", "f.TIFF", "g.pdf"):
        touch(root / name)
    listed, _ = listing(root)
    assert listed == ["in/A.PDF", "in/b.Jpeg", "in/c.jpg", "in/d.png", "in/e.tif", "in/f.TIFF", "in/g.pdf"]


def test_a_file_named_as_input_is_listed_whatever_its_suffix(tmp_path):
    document = touch(tmp_path / "scan.bin")
    assert listing(document) == (["scan.bin"], [])


def test_a_missing_root_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        list(iter_documents([str(tmp_path / "nowhere")]))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(StorageError, match="does not exist"):
        list(iter_documents([str(tmp_path / "dangling")]))


def test_listing_order_is_stable_and_independent_of_creation_order(tmp_path):
    root = tmp_path / "in"
    names = ["z.pdf", "b/y.pdf", "a.pdf", "b/a/x.pdf", "B.pdf", "b/c.pdf", "a/m.pdf", "ä.pdf"]
    for name in names:
        touch(root / name)
    expected = ["in/B.pdf", "in/a.pdf", "in/z.pdf", "in/ä.pdf", "in/a/m.pdf", "in/b/c.pdf", "in/b/y.pdf",
                "in/b/a/x.pdf"]  # a folder's files, then its sub-folders, by code point
    assert listing(root)[0] == expected
    assert listing(root)[0] == expected


def test_fifos_and_sockets_are_never_listed(tmp_path):
    # Reading a FIFO named like a document would block a render task forever.
    root = tmp_path / "in"
    touch(root / "a.pdf")
    os.mkfifo(root / "pipe.pdf")
    assert listing(root) == (["in/a.pdf"], [("not_a_regular_file", "pipe.pdf")])
    assert listing(root / "pipe.pdf") == ([], [("not_a_regular_file", "pipe.pdf")])


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses file names that are not UTF-8")
def test_a_name_that_is_not_utf8_is_skipped_not_fatal(tmp_path):
    root = tmp_path / "in"
    touch(root / "a.pdf")
    with open(os.fsencode(root) + b"/caf\xe9.pdf", "wb") as f:  # Latin-1 name, e.g. from an old zip
        f.write(b"%PDF-1.7\n")
    docs = list(iter_documents([str(root)], on_skip=lambda *_: None))
    assert [Path(doc.uri).name for doc in docs] == ["a.pdf"]
    assert all(len(doc.doc_id) == 24 for doc in docs)  # hashing the URI used to raise here
    assert listing(root)[1] == [("undecodable_name", "caf\udce9.pdf")]


def test_overlapping_roots_list_each_document_once(tmp_path):
    root = tmp_path / "in"
    touch(root / "a.pdf")
    touch(root / "sub" / "b.pdf")
    assert listing(root, root / "sub", root)[0] == ["in/a.pdf", "in/sub/b.pdf"]
    assert listing(root / "sub", root)[0] == ["sub/b.pdf", "a.pdf"]


def test_skipped_files_are_logged_by_default(tmp_path, caplog):
    root = tmp_path / "in"
    (root).mkdir()
    (root / "leak.pdf").symlink_to("/etc/hostname")
    assert list(iter_documents([str(root)])) == []
    assert "leak.pdf" in caplog.text and "--follow-symlinks" in caplog.text


def test_s3_prefixes_are_walked_level_by_level(s3_bucket):
    keys = ["in/b.pdf", "in/a.PDF", "in/notes.txt", "in/2025/x.png", "in/2025/deep/y.tif", "in/2024/z.pdf",
            "other/q.pdf"]
    for key in keys:
        s3_bucket.put_object(Bucket="docs", Key=key, Body=b"%PDF-1.7 " + key.encode())
    found = [(d.uri, d.size) for d in iter_documents(["s3://docs/in"])]
    assert [uri for uri, _ in found] == ["s3://docs/in/a.PDF", "s3://docs/in/b.pdf", "s3://docs/in/2024/z.pdf",
                                         "s3://docs/in/2025/x.png", "s3://docs/in/2025/deep/y.tif"]
    assert dict(found)["s3://docs/in/b.pdf"] == len(b"%PDF-1.7 in/b.pdf")
    assert [d.uri for d in iter_documents(["s3://docs/in/2024/z.pdf"])] == ["s3://docs/in/2024/z.pdf"]
    with pytest.raises(StorageError, match="s3://docs/missing"):
        list(iter_documents(["s3://docs/missing"]))
