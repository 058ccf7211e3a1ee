"""`pageray report`: the aggregations on hand-built rows with known numbers, the page on output
folders written as runs write them (no Ray), and the page as headless Chromium renders it."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from processes import wait_until
from typer.testing import CliRunner

from pageray.pipeline.app.cli import app
from pageray.pipeline.datamodel import output_schema, rows_to_table
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunRecord
from pageray.pipeline.report import data, write_report
from pageray.pipeline.report.fields import field_of, field_stats
from pageray.pipeline.report.html import table
from pageray.schemas import arrow_type, load_schema

T0 = pd.Timestamp("2026-03-01T10:00:00", tz="UTC")
RUN = "20260301T100000Z-abc123"
W1, W2 = "aaaaaaaa11111111:101", "bbbbbbbb22222222:202"
EVIL = "<script>alert('x')</script>"


def frame(*rows: dict) -> pd.DataFrame:
    base = {c: None for c in data.COLUMNS + data.OBJECT_COLUMNS} | {"run_id": RUN, "page_index": 0}
    return pd.DataFrame([base | r for r in rows])


# --- the numbers --------------------------------------------------------------------------

def test_status_counts_put_ok_first_then_the_most_frequent():
    rows = frame(*({"doc_id": str(i), "status": s} for i, s in
                   enumerate(["encrypted", "ok", "render_error", "render_error", "ok", "ok"])))
    assert data.status_counts(rows).to_dict() == {"ok": 3, "render_error": 2, "encrypted": 1}
    assert list(data.status_counts(rows).index)[0] == "ok"


def test_the_current_row_of_a_page_is_its_newest():
    rows = frame({"doc_id": "a", "status": "render_error", "created_at": T0},
                 {"doc_id": "a", "status": "ok", "created_at": T0 + pd.Timedelta(minutes=5)},
                 {"doc_id": "a", "page_index": 1, "status": "ok", "created_at": T0},
                 {"doc_id": "b", "status": "encrypted", "created_at": None})
    current = data.current_rows(rows)
    assert sorted(zip(current["doc_id"], current["page_index"], current["status"])) == [
        ("a", 0, "ok"), ("a", 1, "ok"), ("b", 0, "encrypted")]


def test_throughput_counts_pages_per_worker_per_bin_since_the_run_started():
    # W1 commits 4 pages at 0-10 s and 6 at 20-30 s; W2 commits 5 pages at 10-20 s
    stamps = [(W1, 2, 4), (W1, 25, 6), (W2, 12, 5)]
    rows = frame(*({"doc_id": f"{w}{s}{i}", "worker": w, "created_at": T0 + pd.Timedelta(seconds=s)}
                   for w, s, n in stamps for i in range(n)))
    rates, bin_s = data.throughput(rows, {RUN: T0}, bin_s=10)
    assert bin_s == 10
    got = {(r.series, r.t_s): r.pages_per_s for r in rates.itertuples()}
    assert got == {("aaaaaaaa:101", 0): 0.4, ("aaaaaaaa:101", 10): 0.0, ("aaaaaaaa:101", 20): 0.6,
                   ("bbbbbbbb:202", 0): 0.0, ("bbbbbbbb:202", 10): 0.5}
    assert sum(r * bin_s for r in rates["pages_per_s"]) == pytest.approx(15)


def test_throughput_of_several_runs_names_each_series_by_run_and_worker():
    rows = frame({"doc_id": "a", "run_id": "r1", "worker": W1, "created_at": T0},
                 {"doc_id": "b", "run_id": "r2", "worker": None, "created_at": T0 + pd.Timedelta(days=3)})
    rates, _ = data.throughput(rows)
    assert set(rates["series"]) == {"r1/aaaaaaaa:101", "r2/no worker"}
    assert set(rates["t_s"]) == {0.0}, "each run's time starts at its own start"


@pytest.mark.parametrize("span, width", [(0, 1), (29, 1), (31, 2), (100, 5), (290, 10), (1800, 100), (7200, 500)])
def test_bins_are_whole_seconds_in_1_2_5_steps(span, width):
    assert data.nice_bin(span) == width


def test_truncation_per_status_counts_only_rows_that_ran_the_model():
    rows = frame({"doc_id": "a", "status": "ok", "output_tokens": 10, "truncated": False},
                 {"doc_id": "b", "status": "ok", "output_tokens": 128, "truncated": True},
                 {"doc_id": "c", "status": "ok", "output_tokens": 50, "truncated": False},
                 {"doc_id": "d", "status": "generation_timeout", "output_tokens": 77, "truncated": True},
                 {"doc_id": "e", "status": "render_error"})
    cut = data.truncation(rows)
    assert cut.to_dict("index") == {"generation_timeout": {"rows": 1, "truncated": 1, "share": 1.0},
                                    "ok": {"rows": 3, "truncated": 1, "share": pytest.approx(1 / 3)}}


def test_documents_sum_their_pages_times_and_keep_their_first_error():
    rows = frame({"doc_id": "a", "source_uri": "/d/a.pdf", "status": "ok", "render_ms": 500, "extract_ms": 1500},
                 {"doc_id": "a", "source_uri": "/d/a.pdf", "page_index": 1, "status": "render_error",
                  "error": "page 2 is damaged", "render_ms": 250},
                 {"doc_id": "b", "source_uri": "/d/b.pdf", "status": "ok", "render_ms": 100, "extract_ms": 9000},
                 {"doc_id": "c", "source_uri": "/d/c.pdf", "status": "encrypted", "error": "needs a password"},
                 {"doc_id": "c", "source_uri": "/d/c.pdf", "page_index": 1, "status": "encrypted", "error": "again"})
    slow = data.slowest_documents(rows, n=2)
    assert list(slow["source_uri"]) == ["/d/b.pdf", "/d/a.pdf"]
    assert slow.loc[1, ["pages", "render_s", "extract_s", "total_s"]].tolist() == [2, 0.75, 1.5, 2.25]
    failed = data.failed_documents(rows)
    assert failed[["source_uri", "failed", "statuses", "error"]].values.tolist() == [
        ["/d/c.pdf", 2, "encrypted ×2", "needs a password"], ["/d/a.pdf", 1, "ok, render_error", "page 2 is damaged"]]


def test_summary_counts_pages_documents_and_means_of_ok_rows():
    rows = frame({"doc_id": "a", "status": "ok", "confidence": 0.5, "grounded_fraction": 1.0, "output_tokens": 10},
                 {"doc_id": "a", "page_index": 1, "status": "ok", "confidence": 0.7, "output_tokens": 30,
                  "truncated": True},
                 {"doc_id": "b", "status": "encrypted", "confidence": None})
    assert data.summary(rows) == {"pages": 3, "documents": 2, "ok": 2, "ok_share": pytest.approx(2 / 3),
                                  "truncated": 1, "mean_confidence": pytest.approx(0.6), "mean_grounded": 1.0,
                                  "output_tokens": 40}


SCHEMA = {"type": "object", "properties": {
    "number": {"type": "string"}, "total": {"type": "number"}, "paid": {"type": "boolean"},
    "kind": {"enum": ["a", "b"]},
    "vendor": {"type": "object", "properties": {"name": {"type": "string"}}},
    "items": {"type": "array", "items": {"type": "object", "properties": {"amount": {"type": "number"}}}},
    "tags": {"type": "array", "items": {"type": "string"}}}}


def test_fill_rate_is_per_page_and_per_item_and_grounding_is_of_checked_values():
    pages = [
        # text layer; total and the second item's amount not on the page
        ({"number": "N1", "total": 9.0, "paid": True, "kind": "a", "vendor": {"name": "ACME"},
          "items": [{"amount": 1.0}, {"amount": 8.0}], "tags": ["x", "y"]}, ["total", "items[1].amount"]),
        # text layer, everything found
        ({"number": "", "total": 5.0, "paid": None, "kind": None, "vendor": None, "items": [{"amount": None}],
          "tags": []}, []),
        # a scan: no text layer, so nothing checked
        ({"number": "N3", "total": None, "paid": False, "kind": "b", "vendor": {"name": "Bolt"}, "items": [],
          "tags": ["z"]}, None),
    ]
    stats = field_stats(SCHEMA, [p[0] for p in pages], [p[1] for p in pages])
    assert list(stats.index) == ["number", "total", "paid", "kind", "vendor.name", "items", "items[].amount", "tags"]
    assert stats["places"].to_dict() == {"number": 3, "total": 3, "paid": 3, "kind": 3, "vendor.name": 3, "items": 3,
                                         "items[].amount": 3, "tags": 3}
    assert stats["filled"].to_dict() == {"number": 2, "total": 2, "paid": 2, "kind": 2, "vendor.name": 2, "items": 2,
                                         "items[].amount": 2, "tags": 2}
    # checked: strings, numbers (not booleans, enums, nulls) on the two pages with a text layer
    assert stats["checked"].to_dict() == {"number": 2, "total": 2, "paid": 0, "kind": 0, "vendor.name": 1,
                                          "items": 0, "items[].amount": 2, "tags": 2}
    assert stats["grounding_rate"].dropna().to_dict() == {"number": 1.0, "total": 0.5, "vendor.name": 1.0,
                                                          "items[].amount": 0.5, "tags": 1.0}


def test_field_stats_follow_the_given_order():
    stats = field_stats(SCHEMA, [None], [None], order=["tags", "total", "nonsense"])
    assert list(stats.index)[:2] == ["tags", "total"] and len(stats) == 8
    assert stats["filled"].sum() == 0 and stats.loc["total", "places"] == 1


@pytest.mark.parametrize("path, field", [("total", "total"), ("line_items[12].amount", "line_items[].amount"),
                                         ("authors[0]", "authors"), ("a[1].b[2].c", "a[].b[].c")])
def test_grounding_paths_name_their_field(path, field):
    assert field_of(path) == field


def test_tables_escape_what_users_wrote():
    markup = table([{"error": EVIL, "n": 3}], [("error", "error <b>", None), ("n", "n", None)])
    assert "<script>" not in markup and "&lt;script&gt;" in markup and "error &lt;b&gt;" in markup


# --- output folders as runs leave them --------------------------------------------------------

def invoice(number, total, items=(), vendor=None, date=None):
    return {"invoice_number": number, "invoice_date": date, "due_date": None, "vendor": vendor, "customer": None,
            "currency": "EUR" if total is not None else None,
            "line_items": [{"description": d, "quantity": 1.0, "unit_price": a, "amount": a} for d, a in items],
            "subtotal": None, "tax": None, "total": total}


def write_output(out: Path, pages: list[dict], run_id: str = RUN, state: str = "succeeded") -> Path:
    """An output folder as a run of the invoice schema leaves it: manifest, run record, part files."""
    schema = load_schema("invoice")
    folder = OutputFolder(str(out))
    folder.write_manifest({"schema_id": schema.id, "schema_name": schema.name, "schema_version": schema.version,
                           "model": "HuggingFaceM4/idefics2-8b", "created_by_run": run_id,
                           "created_at": T0.isoformat()})
    counts = pd.Series([p["status"] for p in pages]).value_counts().to_dict() if pages else {}
    folder.write_run(RunRecord(
        run_id=run_id, state=state, started_at=T0.isoformat(), wall_s=120.0,
        pages=len(pages), pages_per_s=len(pages) / 120, counts=counts,
        truncated=sum(bool(p.get("truncated")) for p in pages),
        decode={"engine": "continuous", "steps": 1234, "occupancy": 0.875, "steps_per_page": 102.8},
        config={"inputs": ["/data/in"], "out": str(out), "schema_ref": "invoice",
                "max_new_tokens": 128, "batch_size": 4, "run_id": run_id},
        versions={"pageray": "0.1.0"},
        schema=schema.to_dict() | {"id": schema.id, "max_new_tokens": schema.max_new_tokens}))
    rows = [{"run_id": run_id, "doc_id": p["source_uri"].rsplit("/", 1)[-1], "schema_id": schema.id,
             "schema_name": schema.name, "model_id": "HuggingFaceM4/idefics2-8b"} | p for p in pages]
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2:]):
        if half:
            folder.write_part(run_id, rows_to_table(half, output_schema(arrow_type(schema))))
    return out


def page(name, index=0, status="ok", seconds=0, worker=W1, **kw):
    row = {"source_uri": f"/data/in/{name}", "page_index": index, "page_count": 1, "status": status,
           "created_at": (T0 + pd.Timedelta(seconds=seconds)).to_pydatetime(), "worker": worker, "render_ms": 80.0}
    if status == "ok":
        row |= {"valid": True, "truncated": False, "confidence": 0.8, "input_tokens": 1900, "output_tokens": 60,
                "extract_ms": 900.0, "text_layer_chars": 400}
    return row | kw


def realistic_pages() -> list[dict]:
    acme = {"name": "ACME GmbH", "address": "Hauptstr. 1, Berlin", "tax_id": "DE123"}
    pages = [page(f"inv-{i:02d}.pdf", seconds=20 + 7 * i, worker=(W1, W2)[i % 2], confidence=0.55 + 0.04 * i,
                  output_tokens=40 + 9 * i, fields=invoice(f"INV-{i}", 10.0 * i, [("Widget", 10.0 * i)], acme,
                                                           dt.date(2026, 2, i + 1)),
                  grounded_fraction=0.9, ungrounded_fields=["total"] if i % 3 == 0 else [])
             for i in range(10)]
    pages.append(page("long.pdf", seconds=95, truncated=True, output_tokens=128, extract_ms=30000.0,
                      fields=invoice("L-1", None), grounded_fraction=None, ungrounded_fields=None))
    pages.append(page("scan.pdf", seconds=99, worker=W2, fields=invoice(None, 3.5), confidence=0.21))
    pages.append(page(f"{EVIL}.pdf", status="render_error", worker=None, error=f"damaged: {EVIL}"))
    pages.append(page("secret.pdf", status="encrypted", worker=None, error="'secret.pdf' is encrypted"))
    return pages


FIGURES = {"status", "throughput", "confidence", "fields", "tokens"}


def test_the_report_of_a_folder_has_every_section_and_escapes_user_text(tmp_path):
    out = write_output(tmp_path / "out", realistic_pages())
    written = write_report(out, tmp_path / "r.html")
    assert {p.stem for p in written.figures} == FIGURES
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.parent == tmp_path / "r-figures" for p in written.figures)
    text = written.html.read_text()
    assert text.count("data:image/png;base64,") == len(FIGURES)
    assert "<script" not in text and "&lt;script&gt;" in text
    for heading in ("Status breakdown", "Throughput", "Confidence", "fill rate", "truncation", "Slowest documents",
                    "Failed documents", "Runs and configuration", "long.pdf", "line_items[].amount", "&quot;batch_size&quot;: 4",
                    # the run's decode figures: engine, steps, steps per page, occupancy
                    "<td>continuous</td>", ">1,234<", ">102.80<", ">87.5%<"):
        assert heading in text, heading
    assert "http://" not in text and "https://" not in text, "nothing the page would fetch"


def test_one_run_of_a_folder(tmp_path):
    out = write_output(tmp_path / "out", realistic_pages())
    write_output(out, [page("later.pdf", seconds=5)], run_id="20260302T000000Z-def456")
    written = write_report(out, tmp_path / "r.html", run_id="20260302T000000Z-def456")
    text = written.html.read_text()
    assert "later.pdf" in text and "inv-01.pdf" not in text and RUN not in text
    with pytest.raises(ConfigError, match="no such run"):
        write_report(out, tmp_path / "x.html", run_id="nope")


@pytest.mark.parametrize("pages, says", [
    ([], "no page rows"),
    ([page("a.pdf", status="encrypted", error="needs a password"), page("b.pdf", status="render_error")],
     "No page of this output is ok"),
])
def test_an_empty_output_or_no_ok_page_gives_a_report_that_says_so(tmp_path, pages, says):
    out = write_output(tmp_path / "out", pages, state="failed")
    result = CliRunner().invoke(app, ["report", str(out), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert says in (tmp_path / "r.html").read_text()


def test_a_folder_no_run_wrote_to_yet_and_one_that_is_not_there(tmp_path):
    (tmp_path / "fresh").mkdir()
    assert "holds no pageray output" in write_report(tmp_path / "fresh", tmp_path / "r.html").html.read_text()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing"), "--html", str(tmp_path / "m.html")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_a_report_of_an_s3_output(s3_bucket, tmp_path):
    out = write_output("s3://docs/out", realistic_pages())  # OutputFolder writes it to moto's S3
    written = write_report(out, tmp_path / "s3.html")
    assert {p.stem for p in written.figures} == FIGURES and "s3://docs/out" in written.html.read_text()


# --- the page in a browser --------------------------------------------------------------------

def devtools(chromium: str, profile: Path):
    """A headless Chromium and a websocket to its page over the DevTools protocol."""
    import websocket

    proc = subprocess.Popen([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    # a hang guard, not a timing check: stop waiting once chromium wrote its port or died
    wait_until(lambda: proc.poll() is not None or (port_file.exists() and port_file.read_text().strip()), 60, 0.1)
    assert proc.poll() is None and port_file.exists() and port_file.read_text().strip(), \
        "chromium did not open its DevTools port"
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
        target = next(t for t in json.load(reply) if t["type"] == "page")
    return proc, websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)


class Page:
    """Commands and events of one page; `errors` collects what its console would show as errors."""

    def __init__(self, ws):
        self.ws, self.next_id, self.errors, self.events = ws, 0, [], []
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self.receive()
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def receive(self) -> dict:
        message = json.loads(self.ws.recv())
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("exception", {}).get("description", str(params)))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])
        if method:
            self.events.append(method)
        return message

    def open(self, url: str) -> list:
        """Load `url`; return [figure name, naturalWidth] of each <img> once decoded (0: not loaded)."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        while "Page.loadEventFired" not in self.events:
            self.receive()
        script = ("Promise.all([...document.images].map(i => i.decode().then(() => [i.dataset.figure || i.src, "
                  "i.naturalWidth], () => [i.dataset.figure || i.src, 0])))")
        return self.send("Runtime.evaluate", expression=script, awaitPromise=True, returnByValue=True)["result"]["value"]

    def screenshot(self, path: Path) -> None:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        self.send("Emulation.setDeviceMetricsOverride", width=1200, height=int(size["height"]), deviceScaleFactor=1,
                  mobile=False)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_the_page_renders_every_figure_in_headless_chromium_without_console_errors(tmp_path):
    out = write_output(tmp_path / "out", realistic_pages())
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(line) for line in [
        {"source": "inv-01.pdf", "fields": {"invoice_number": "INV-1", "total": 10.0, "currency": "EUR"}},
        {"source": "inv-02.pdf", "fields": {"invoice_number": "INV-2", "total": 99.0}},
        {"source": "secret.pdf", "fields": {"invoice_number": "S-1"}}]) + "\n")
    html = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(out), "--html", str(html), "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    assert "6 figures" in result.output and "Scores against labels" in html.read_text()
    # a page that does need the network and has a broken script: the check must see both
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="missing.png"><script>nosuch()</script></body></html>')
    proc, ws = devtools(shutil.which("chromium"), tmp_path / "profile")
    try:
        browser = Page(ws)
        assert dict(browser.open(broken.as_uri())) == {(tmp_path / "missing.png").as_uri(): 0}
        assert any("nosuch" in e for e in browser.errors), browser.errors
        browser.errors.clear()
        images = browser.open(html.as_uri())
        shot = tmp_path / "report.png"
        browser.screenshot(shot)
    finally:
        ws.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert {name for name, _ in images} == FIGURES | {"eval"} and len(images) == 6
    assert all(width > 0 for _, width in images), images
    assert browser.errors == []
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    if os.environ.get("PAGERAY_REPORT_SCREENSHOT"):  # keep the screenshot where a person will look at it
        shutil.copy(shot, os.environ["PAGERAY_REPORT_SCREENSHOT"])
