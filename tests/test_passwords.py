"""--passwords: encrypted PDFs opened with known passwords, which no row, log or record ever holds."""
from __future__ import annotations

import pickle
from pathlib import Path

import pymupdf
import pytest
from corpus import locked_pdf as locked
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.config import RunConfig
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.render import pages as render_pages
from pageray.pipeline.render.isolation import IsolatedRenderer
from pageray.pipeline.render.pages import RenderLimits, iter_render
from pageray.pipeline.render.passwords import (Candidates, PasswordBook, PasswordFileError, candidates,
                                       load_password_file)
from pageray.pipeline.render.saslprep import SASLprepError, saslprep
from pageray.pipeline.render.step import RenderPages

SMALL = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128)
REALWORLD = Path(__file__).parent / "data" / "realworld"
AES256, AES128, RC4 = pymupdf.PDF_ENCRYPT_AES_256, pymupdf.PDF_ENCRYPT_AES_128, pymupdf.PDF_ENCRYPT_RC4_128


def statuses(data: bytes, passwords=(), name: str = "doc.pdf") -> list[str]:
    return [row["status"] for row in iter_render(data, name, SMALL, passwords=Candidates(passwords))]


# SASLprep: RFC 4013 section 3's examples, and what the profile's steps do

@pytest.mark.parametrize("given, prepared", [
    ("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"), ("\u2168", "IX"),
    ("a\u00a0b\u3000c", "a b c"), ("\ufb01le", "file"), ("", ""), ("\u05d0\u05d1", "\u05d0\u05d1")])
def test_saslprep_maps_and_normalises(given, prepared):
    assert saslprep(given) == prepared


@pytest.mark.parametrize("bad", ["\u0007", "a\u200eb", "\ud800", "\u0627\u0031", "a\u0627", "\u0627a\u0628"])
def test_saslprep_refuses_prohibited_and_mixed_direction_text_without_quoting_it(bad):
    with pytest.raises(SASLprepError) as caught:
        saslprep(bad)
    assert bad not in str(caught.value)


def test_unassigned_code_points_are_allowed_only_in_queries():
    assert saslprep("a\u0221") == "a\u0221"  # unassigned in Unicode 3.2
    with pytest.raises(SASLprepError):
        saslprep("a\u0221", allow_unassigned=False)


# candidates and the book

def test_candidates_keep_order_add_the_normalised_form_and_hide_their_repr():
    found = candidates(["b", "\u2168", "", "b", "IX", "x\u0007"])
    assert list(found) == ["b", "\u2168", "IX", "x\u0007"]
    assert "b" not in repr(found) and "IX" not in str(found) and "4 password" in repr(found)
    assert pickle.loads(pickle.dumps(found)) == found and isinstance(pickle.loads(pickle.dumps(found)), Candidates)


def test_the_book_matches_names_globs_and_path_ends():
    book = PasswordBook(everywhere=("all",), by_pattern=(
        ("report.pdf", ("r",)), ("*.PDF", ("upper",)), ("2024/*.pdf", ("y",)), ("s3://bucket/hr/*", ("hr",))))
    assert list(book.for_document("/data/2024/report.pdf")) == ["all", "r", "y"]
    assert list(book.for_document("/data/2023/report.pdf")) == ["all", "r"]
    assert list(book.for_document("/data/SCAN.PDF")) == ["all", "upper"]
    assert list(book.for_document("s3://bucket/hr/a/b.pdf")) == ["all", "hr"]
    assert list(PasswordBook().for_document("/x.pdf")) == [] and not PasswordBook()
    assert "all" not in repr(book) and "PasswordBook(<5 password(s), 4 pattern(s), hidden>)" == repr(book)


@pytest.mark.parametrize("name, content, everywhere, by_pattern", [
    ("p.txt", "\ufeffone\r\n\n two \n#hash\nu\u2028v\n", ("one", " two ", "#hash", "u\u2028v"), ()),
    ("p", "only", ("only",), ()),
    ("p.yaml", "'*.pdf': [a, b]\ninvoice.pdf: '0123'\n", (), (("*.pdf", ("a", "b")), ("invoice.pdf", ("0123",)))),
    ("p.yml", "- a\n- b\n", ("a", "b"), ()),
    ("p.json", '{"x/*.pdf": "a", "y.pdf": ["b"]}', (), (("x/*.pdf", ("a",)), ("y.pdf", ("b",)))),
])
def test_password_file_forms(tmp_path, name, content, everywhere, by_pattern):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert load_password_file(tmp_path / name) == PasswordBook(everywhere, by_pattern)


@pytest.mark.parametrize("name, content, says", [
    ("p.txt", b"\n\r\n", "holds no password"),
    ("p.txt", b"caf\xe9-s3cret", "not UTF-8"),
    ("p.yaml", b"*.pdf: s3cret\n", "quote keys"),
    ("p.yaml", b"a.pdf: [s3cret\n", "line 2"),
    ("p.yaml", b"a.pdf: 12345\n", "entry 1: a password must be text, found a int; put it in quotes"),
    ("p.yaml", b"s3cret:\n", "entry 1: a password must be text, found nothing"),
    ("p.yaml", b"a.pdf: []\n", "empty list"),
    ("p.yaml", b"2024: s3cret\n", "entry 1: the key is not a file name"),
    ("p.yaml", b"s3cret\n", "found a str"),
    ("p.json", b'{"a.pdf": "s3cret",}', "not valid JSON"),
    ("p.json", b"", "not valid JSON"),
])
def test_bad_password_files_are_refused_without_quoting_them(tmp_path, name, content, says):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(PasswordFileError) as caught:
        load_password_file(tmp_path / name)
    assert says in str(caught.value) and "s3cret" not in str(caught.value) and "12345" not in str(caught.value)


def test_the_config_refuses_a_bad_file_naming_the_flag_and_records_only_the_path(tmp_path, samples):
    def build(passwords):
        return RunConfig.build(inputs=[str(samples)], out=str(tmp_path / "out"), schema_ref="invoice",
                               passwords=passwords)
    for bad, says in [(tmp_path / "none.txt", "no such file"), (tmp_path, "a folder"), ("s3://b/p.txt", "local file")]:
        with pytest.raises(ConfigError, match=f"--passwords.*{says}"):
            build(str(bad))
    big = tmp_path / "big.txt"
    big.write_bytes(b"x\n" * 600_000)
    with pytest.raises(ConfigError, match="does not guess"):
        build(str(big))
    (tmp_path / "pw.txt").write_text("s3cret-one\n")
    config = build(str(tmp_path / "pw.txt"))
    assert config.model_dump(mode="json")["passwords"] == str(tmp_path / "pw.txt")
    for shown in (repr(config), config.model_dump_json(), repr(config.render_limits())):
        assert "s3cret" not in shown
    copied = config.with_budget(config.extraction_schema())[0]  # what a run records and works with
    limits = pickle.loads(pickle.dumps(copied.render_limits()))  # as Ray ships it to the render workers
    assert list(limits.passwords.for_document("/a.pdf")) == ["s3cret-one"]
    assert not build(None).render_limits().passwords


def test_the_cli_refuses_a_missing_password_file_before_any_work(samples, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(samples), "--schema", "invoice", "--out", str(out),
                                      "--passwords", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "--passwords" in result.output and "no such file" in result.output
    assert not out.exists()


# rendering: real encrypted files

@pytest.mark.parametrize("encryption", [AES256, AES128, RC4])
def test_a_known_password_opens_each_kind_of_encryption(encryption):
    data = locked("k3y-known", encryption, pages=2)
    assert statuses(data) == ["encrypted"]
    assert statuses(data, ["wrong", "k3y-known"]) == ["ok", "ok"]  # several tries on one document
    assert statuses(data, ["owner-k3y-known"]) == ["ok", "ok"]  # the owner password opens it too
    [row] = iter_render(data, "doc.pdf", SMALL, passwords=Candidates(["wrong", "w2"]))
    assert row["status"] == "encrypted" and "none of 2 tried" in row["error"] and "wrong" not in row["error"]


@pytest.mark.parametrize("typed, keyed", [("\u2168-s3cret", "IX-s3cret"), ("pass\u00adword", "password"),
                                          ("\ufb01le\u00a0k3y", "file k3y")])
def test_aes256_files_keyed_with_the_saslprep_form_open_with_the_password_as_typed(typed, keyed):
    data = locked(keyed)  # as a PDF 2.0 writer keys it from what its user typed
    assert statuses(data, [typed]) == ["encrypted"], "MuPDF hashes the bytes it is given"
    assert statuses(data, candidates([typed])) == ["ok"]
    assert statuses(locked(typed), candidates([typed])) == ["ok"]  # a writer that keys it as typed (MuPDF)


@pytest.mark.parametrize("name, password", [("libreoffice-writer-password.pdf", "openpassword"),
                                            ("encryption-r2-user-password.pdf", "asdfzxcv"),
                                            ("encryption-r6-user-password.pdf", "asdfzxcv")])
def test_files_from_other_writers_open(name, password):
    data = (REALWORLD / name).read_bytes()
    assert statuses(data, ["nope"], name) == ["encrypted"]
    assert set(statuses(data, candidates(["nope", password]), name)) == {"ok"}


class CountedTooEarly:
    """An encrypted document as MuPDF shows some files: a page count read before authentication
    is 0, and stays 0."""

    def __init__(self, doc: pymupdf.Document):
        self._doc, self._count = doc, None

    def __getattr__(self, name):
        return getattr(self._doc, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._doc.__exit__(*exc)

    def __getitem__(self, index):
        return self._doc[index]

    @property
    def page_count(self) -> int:
        if self._count is None:
            self._count = 0 if self._doc.is_encrypted else self._doc.page_count  # False once authenticated
        return self._count


def test_the_password_is_tried_before_the_page_count_is_read(monkeypatch):
    real_open = pymupdf.open
    monkeypatch.setattr(render_pages.pymupdf, "open", lambda *a, **kw: CountedTooEarly(real_open(*a, **kw)))
    assert statuses(locked("k3y", pages=3), ["k3y"]) == ["ok"] * 3


def test_the_isolated_renderer_and_the_step_pass_each_document_its_own_passwords(tmp_path):
    (tmp_path / "hr").mkdir()
    for path, password in [("hr/a.pdf", "hr-k3y"), ("b.pdf", "hr-k3y"), ("c.pdf", "all-k3y")]:
        (tmp_path / path).write_bytes(locked(password))
    limits = RenderLimits(longest_edge_px=128, max_page_pixels=128 * 128,
                          passwords=PasswordBook(("all-k3y",), (("hr/*.pdf", ("hr-k3y",)),)))
    renderer = IsolatedRenderer(limits)
    assert not renderer._child_limits.passwords, "a render child gets its document's candidates only"
    step = RenderPages("run-1", limits, renderer=renderer)
    found = {path: [row["status"] for row in step.pages({"doc_id": path, "source_uri": str(tmp_path / path)})]
             for path in ("hr/a.pdf", "b.pdf", "c.pdf")}
    assert found == {"hr/a.pdf": ["ok"], "b.pdf": ["encrypted"], "c.pdf": ["ok"]}

