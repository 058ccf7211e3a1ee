"""--passwords through the whole pipeline: `pageray extract` on a local Ray, the isolated renderer, the tiny
model, Parquet read back by DuckDB; and no password anywhere in what the runs wrote or logged."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pymupdf
import pytest
from cheap import SMALL_RENDER_FLAGS
from corpus import locked_pdf, mupdf_pdf
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.render.saslprep import saslprep

pytestmark = pytest.mark.slow


def everything_written(out: Path) -> str:
    """Every file under `out` as text, Parquet also decoded (its compressed pages could hide a string)."""
    import pyarrow.parquet as pq

    texts = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        texts.append(raw.decode("utf-8", "replace"))
        if raw[:4] == b"PAR1":
            texts.append(str(pq.read_table(path).to_pylist()))
    return "\n".join(texts)


def ray_logs() -> str:
    """The local Ray's log files: its workers' output stays there (ray_local: log_to_driver=False)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in logs.rglob("*")
                     if p.is_file() and p.stat().st_size < 64 * 2**20)


class Remember(logging.Handler):
    """Every log record of the driver (a handler of our own: pytest's caplog may be switched off)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_runs_open_what_the_password_files_open_and_never_write_a_password(ray_local, tiny_model, tmp_path, capfd):
    import duckdb

    shared, hr, wrong, later = "shared-7f3a-pw", "\u2168-hr-91c2-pw", "wrong-5b1e-pw", "later-3c9d-pw"
    inbox, out = tmp_path / "in", tmp_path / "out"
    (inbox / "hr").mkdir(parents=True)
    files = {"plain.pdf": mupdf_pdf(1), "shared.pdf": locked_pdf(shared),
             "shared_rc4.pdf": locked_pdf(shared, pymupdf.PDF_ENCRYPT_RC4_128),
             # keyed as a PDF 2.0 writer keys "Ⅸ-hr-...": with its SASLprep form, "IX-hr-..."
             "hr/staff.pdf": locked_pdf(saslprep(hr)), "staff.pdf": locked_pdf(saslprep(hr)),
             "locked.pdf": locked_pdf(later)}
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    first, second = tmp_path / "passwords.yaml", tmp_path / "passwords.txt"
    first.write_text(f"'*': [{wrong}, {shared}]\n'hr/*.pdf': '{hr}'\n", encoding="utf-8")
    second.write_text(f"{hr}\n{later}\n", encoding="utf-8")
    outputs: list[str] = []

    def extract(*flags: str) -> dict[str, str]:
        result = CliRunner().invoke(app, ["extract", str(inbox), "--schema", "transcribe", "--out", str(out),
                                          "--model", str(tiny_model), "--max-new-tokens", "16", "--batch-size", "4",
                                          *SMALL_RENDER_FLAGS, *flags])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        rows = duckdb.sql(f"select source_uri, status from read_parquet('{out}/data/*.parquet')").fetchall()
        return {str(Path(uri).relative_to(inbox)): status for uri, status in rows}

    remember = Remember()
    logging.getLogger().addHandler(remember)
    try:
        assert extract("--passwords", str(first)) == {
            "plain.pdf": "ok", "shared.pdf": "ok", "shared_rc4.pdf": "ok", "hr/staff.pdf": "ok",
            "staff.pdf": "encrypted", "locked.pdf": "encrypted"}, "the hr/ glob is for files under hr/ only"
        # encrypted rows are final: a new password file opens them once they are named with --retry
        assert set(extract("--passwords", str(second), "--retry", "encrypted").values()) == {"ok"}
    finally:
        logging.getLogger().removeHandler(remember)
    records = sorted((json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")),
                     key=lambda record: record["started_at"])
    assert [record["config"]["passwords"] for record in records] == [str(first), str(second)]
    assert records[0]["counts"]["encrypted"] == 2 and records[1]["plan"]["retried"] == 2

    seen = {"output folder": everything_written(out), "ray logs": ray_logs(), "cli": "".join(outputs),
            "captured": "".join(capfd.readouterr()) + "\n".join(remember.lines)}
    assert "the quick brown fox" in seen["output folder"] and "raylet" in seen["ray logs"], "the search sees them"
    for secret in (shared, hr, saslprep(hr), wrong, later):
        for where, text in seen.items():
            assert secret not in text, (where, secret)
