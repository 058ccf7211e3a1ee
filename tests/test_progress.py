"""Live progress (pipeline.progress): the window and ETA arithmetic, the plain line, the heartbeat's
copy and `pageray status`; and, end to end, a real run's log: progress lines and no Ray noise."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cheap import SMALL_RENDER_FLAGS
from pageray.pipeline.app.cli import app
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.heartbeat import Heartbeat
from pageray.pipeline.ledger.records import RunRecord
from pageray.pipeline.progress import (PROGRESS_ENV, PROGRESS_EVERY_S, Progress, ProgressReporter, RateWindow, Tally,
                               duration, eta_seconds, plain_line, progress_interval)

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def batch(docs: list[tuple[str, int | None]], status: str = "ok") -> dict[str, list]:
    """Columns of a batch of rows, one row per (doc_id, page_count)."""
    return {"doc_id": [d for d, _ in docs], "page_count": [n for _, n in docs], "status": [status] * len(docs)}


def test_the_rate_counts_only_the_last_minute():
    window = RateWindow(start=0.0, window_s=60.0)
    window.add(10.0, 100)   # a burst early on
    window.add(70.0, 160)
    window.add(100.0, 190)
    # at t=100 the window is 40..100: 100 pages were done by then (the t=10 sample), 190 now
    assert window.rate(100.0) == pytest.approx(90 / 60)
    # an hour later with no pages, the rate is zero, not the run's average
    assert window.rate(3700.0) == 0.0


def test_before_a_full_minute_the_span_is_the_time_since_the_start():
    window = RateWindow(start=0.0, window_s=60.0)
    assert window.rate(0.0) is None
    window.add(20.0, 40)
    assert window.rate(20.0) == pytest.approx(2.0)
    assert window.rate(40.0) == pytest.approx(1.0)  # 40 pages in 40 s: a slow start counts


def test_eta():
    assert eta_seconds(100, 2.0) == 50.0
    assert eta_seconds(0, None) == 0.0
    assert eta_seconds(10, None) is None and eta_seconds(10, 0.0) is None


def test_progress_counts_documents_when_all_their_pages_came():
    clock = Clock()
    progress = Progress(documents=3, estimated_pages=6, clock=clock)
    clock.t += 10
    progress.add(batch([("a", 2), ("b", 3)]))          # a: 1 of 2, b: 1 of 3
    snap = progress.snapshot()
    assert (snap["pages_done"], snap["documents_done"]) == (2, 0)
    clock.t += 10
    progress.add(batch([("a", 2), ("b", 3), ("b", 3), ("c", None)], status="render_error"))
    snap = progress.snapshot()
    assert (snap["pages_done"], snap["documents_done"], snap["documents"]) == (6, 3, 3)
    assert snap["counts"] == {"ok": 2, "render_error": 4}
    assert snap["pages_per_s_1m"] == pytest.approx(6 / 20)
    assert snap["eta_s"] == 0.0


def test_the_progress_line_and_the_run_record_read_one_tally():
    """The driver counts each batch once (pipeline.driver.run reads the record's numbers from the
    same tally the progress line shows)."""
    tally = Tally()
    progress = Progress(documents=2, estimated_pages=4, clock=Clock(), tally=tally)
    progress.add({**batch([("a", 2), ("a", 2)]), "output_tokens": [5, None], "truncated": [True, False]})
    progress.add({**batch([("b", 2), ("b", 2)], status="generation_timeout"), "output_tokens": [3, 3],
                  "truncated": [True, True]})  # cut off by the clock, not the budget
    assert progress.snapshot()["counts"] == dict(tally.counts) == {"ok": 2, "generation_timeout": 2}
    assert (tally.pages, tally.output_tokens, tally.truncated, tally.docs_failed) == (4, 11, 1, {"b"})


def test_eta_from_the_last_minute_and_a_low_estimate():
    clock = Clock()
    progress = Progress(documents=4, estimated_pages=10, clock=clock)
    clock.t += 30
    progress.add(batch([("a", 3), ("a", 3), ("a", 3)]))
    clock.t += 30
    snap = progress.snapshot()
    assert snap["pages_per_s_1m"] == pytest.approx(0.05) and snap["eta_s"] == pytest.approx(7 / 0.05)
    clock.t += 10
    progress.add(batch([(f"b{i}", 9) for i in range(9)]))  # 12 pages: more than the 10 estimated
    snap = progress.snapshot()
    assert snap["pages_estimated"] == 12  # never shown below what is done
    # 1 document done (a); by its 12 pages per document so far, 3 documents are ~36 pages away
    assert snap["documents_done"] == 1
    assert snap["eta_s"] == pytest.approx(36 / snap["pages_per_s_1m"], rel=0.01)


def test_the_plain_line():
    snap = {"pages_done": 120, "pages_estimated": 400, "documents_done": 12, "documents": 40,
            "pages_per_s_1m": 3.2, "eta_s": 87.0, "counts": {"render_error": 10, "ok": 110}}
    assert plain_line(snap) == ("pageray: 120/≈400 pages, 12/40 documents, 3.20 pages/s (last min), ETA 1m27s; "
                                "ok 110, render_error 10")
    assert "ETA ?" in plain_line({**snap, "eta_s": None, "pages_per_s_1m": None, "counts": {}})
    assert [duration(s) for s in (None, 5, 65, 7300)] == ["?", "5s", "1m05s", "2h01m"]


def test_before_the_first_page_the_line_says_what_the_run_waits_for():
    clock = Clock()
    progress = Progress(documents=2, estimated_pages=4, clock=clock)
    progress.phase("starting Ray")
    clock.t += 5
    assert plain_line(progress.snapshot()) == "pageray: starting Ray (5s); 0/≈4 pages, 0/2 documents"
    progress.phase("loading the model on 2 extractor actors, rendering the first documents")
    clock.t += 95
    line = plain_line(progress.snapshot())
    assert line.startswith("pageray: loading the model on 2 extractor actors, rendering the first documents "
                           "(1m35s); 0/≈4") and "ETA" not in line
    progress.add(batch([("a", 2)]))  # a page came: the numbers say the rest
    assert plain_line(progress.snapshot()).startswith("pageray: 1/≈4 pages, 0/2 documents, ")
    progress.phase("compacting, merging small files")
    assert plain_line(progress.snapshot()).startswith("pageray: compacting, merging small files (0s); 1/≈4 pages")


def test_the_interval_has_one_default_and_an_env_knob(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_interval() == PROGRESS_EVERY_S == 10.0
    monkeypatch.setenv(PROGRESS_ENV, "0.5")
    assert progress_interval() == 0.5
    monkeypatch.setenv(PROGRESS_ENV, "soon")
    assert progress_interval() == PROGRESS_EVERY_S


def test_plain_lines_keep_coming_while_no_batch_arrives():
    """The driver's loop sleeps through a long batch; the reporter's thread does not."""
    stream = io.StringIO()
    progress = Progress(documents=2, estimated_pages=4)
    with ProgressReporter(progress, stream=stream, every_s=0.05, bar=False):
        time.sleep(0.4)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4 and all(line.startswith("pageray: 0/≈4 pages, 0/2 documents") for line in lines)


def test_the_bar_on_a_terminal_is_tqdm():
    stream = io.StringIO()
    progress = Progress(documents=1, estimated_pages=2)
    with ProgressReporter(progress, stream=stream, bar=True):
        progress.add(batch([("a", 2), ("a", 2)]))
    text = stream.getvalue()
    assert "pageray" in text and "2/2 pages" in text and "1/1 documents" in text and "\r" in text


def test_the_heartbeat_writes_the_progress_and_status_shows_it(tmp_path):
    folder = OutputFolder(str(tmp_path))
    record = RunRecord(run_id="r-live", state="running", pages=0)
    progress = Progress(documents=5, estimated_pages=50)
    with Heartbeat(folder, record, every_s=0.05) as beat:
        beat.track(progress.snapshot)
        progress.add(batch([("a", 10)] * 5))
        time.sleep(0.3)
    saved = json.loads((tmp_path / "_runs" / "r-live.json").read_text())
    assert saved["progress"]["pages_done"] == 5 and saved["progress"]["pages_estimated"] == 50
    assert set(saved["progress"]) >= {"pages_per_s_1m", "eta_s", "documents_done", "counts"}
    shown = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "progress: 5/≈50 pages, 0/5 documents" in shown.output and "ETA" in shown.output


def test_verbose_is_a_logging_switch_and_not_part_of_the_run(monkeypatch):
    import logging

    from pageray.pipeline.config import RunConfig
    from pageray.pipeline.driver.ray_logs import VERBOSE_ENV, init_options

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert init_options() == {"log_to_driver": False, "logging_level": logging.ERROR}
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert init_options() == {"log_to_driver": True}  # Ray's own defaults: everything it prints
    assert "verbose" not in RunConfig.model_fields


# --- end to end -----------------------------------------------------------------------------------------------

RAY_NOISE = re.compile(r"Deprecat|core_worker|Progress bars|WARNING|\bERROR\b|^\[\d{4}-\d\d-\d\d .*\] ", re.M)


@pytest.mark.slow
def test_a_real_run_logs_progress_and_no_ray_lines_and_status_shows_it(samples, tiny_model, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("invoice.pdf", "corrupt_truncated.pdf"):  # the run's fixed costs dominate: few pages
        (inbox / name).write_bytes((samples / name).read_bytes())
    out = tmp_path / "out"
    env = {**os.environ, PROGRESS_ENV: "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "driver.log"
    with log.open("w") as sink:  # stdout and stderr: a file, not a terminal, as under cron
        proc = subprocess.Popen([str(BIN / "pageray"), "extract", str(inbox), "--schema", "transcribe", "--out",
                                 str(out), "--model", str(tiny_model), "--max-new-tokens", "8", "--batch-size", "4",
                                 *SMALL_RENDER_FLAGS], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        live = None
        while proc.poll() is None:
            shown = CliRunner().invoke(app, ["status", str(out)]) if (out / "_runs").exists() else None
            if shown is not None and "progress:" in shown.output and "running" in shown.output:
                live = shown.output
            time.sleep(0.5)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    progress = [line for line in text.splitlines() if line.startswith("pageray: ") and " pages, " in line]
    assert len(progress) >= 3, text  # one a second while Ray starts and the model loads
    # before the first page, what the run waits for: never "0 pages ... ETA ?"
    waiting = [line for line in progress if "pageray: 0/" in line or " 0/≈" in line]
    assert waiting and all(re.match(r"pageray: (starting Ray|loading the model on 1 extractor actor, rendering) ",
                                    line) for line in waiting), waiting
    assert any("loading the model on 1 extractor actor" in line for line in waiting), waiting
    assert progress[-1].startswith("pageray: compacting, merging small files") and "; 2/≈" in progress[-1]
    assert "2/2 documents" in progress[-1]
    assert text.count("random weights") == 1 and "raise it" not in text  # the tiny model's note, once
    assert not RAY_NOISE.search(text), RAY_NOISE.findall(text)
    assert live is not None and re.search(r"progress: (.+ \([\dhms]+\); )?\d+/≈\d+ pages, \d+/\d+ documents", live), live
    record = json.loads(next((out / "_runs").glob("*.json")).read_text())
    assert record["progress"]["pages_done"] == record["pages"] == 2
