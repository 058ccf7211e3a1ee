"""pageray.pipeline.render.isolation: what a document does in its render child stays there. No Ray; Linux only.

The slow documents here are real PDFs, not hooks: Form XObjects that each draw the next ten
times, so a 1 KB file asks MuPDF for 10**9 fills (about seven minutes of CPU).
"""
from __future__ import annotations

from dataclasses import replace

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pymupdf
import pytest
from corpus import huge_image, raw_pdf, stream
from processes import render_children, wait_until
from pageray.pipeline.datamodel import Status
from pageray.pipeline.render.isolation import CRASH_HOOK_ENV, IsolatedRenderer
from pageray.pipeline.render.pages import RenderLimits

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="rlimits and /proc are Linux behaviour")

SMALL = RenderLimits(longest_edge_px=256, max_page_pixels=256 * 256)


def pages_pdf(*slow: bool, depth: int = 9) -> bytes:
    """One page per flag: a blue square, or (True) a page that takes 10**depth fills to draw."""
    count, first_form = len(slow), 3 + 2 * len(slow)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, b" ".join(b"%d 0 R" % (3 + 2 * i)
                                                                            for i in range(count)))]
    for index, is_slow in enumerate(slow):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /XObject << /Fx %d 0 R >> >> >>" % (4 + 2 * index, first_form))
        objects.append(stream(b"/Fx Do" if is_slow else b"0 0 1 rg 50 50 100 100 re f"))
    for level in range(depth):
        if level == depth - 1:
            objects.append(stream(b"0 0 1 rg 0 0 10 10 re f", b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"))
        else:
            objects.append(stream(b"q %s Q" % b" ".join([b"/Fx Do"] * 10),
                                  b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                                  b"/Resources << /XObject << /Fx %d 0 R >> >>" % (first_form + level + 1)))
    return raw_pdf(objects)


def statuses(rows: list[dict]) -> list[str]:
    return [row["status"] for row in rows]


@pytest.fixture
def fast_pdf() -> bytes:
    return pages_pdf(False, False, False)


def test_crash_hook_reaches_children_of_a_forkserver_started_before_it_was_set(monkeypatch, fast_pdf):
    monkeypatch.delenv(CRASH_HOOK_ENV, raising=False)
    assert statuses(list(IsolatedRenderer(SMALL)(fast_pdf, "warm_up.pdf"))) == ["ok"] * 3  # forkserver running
    monkeypatch.setenv(CRASH_HOOK_ENV, "crash_me")
    renderer = IsolatedRenderer(replace(SMALL, render_retries=2))

    [row] = list(renderer(fast_pdf, "crash_me.pdf"))
    assert row["status"] == Status.RENDER_CRASH.value and row["page_index"] == 0
    assert row["error"] == "renderer crashed with SIGABRT after 3 attempt(s)"
    assert renderer.children_started == 3  # the first try and two retries
    # the same renderer goes on with the next document
    assert statuses(list(renderer(fast_pdf, "invoice.pdf"))) == ["ok"] * 3
    assert renderer.children_started == 4


@pytest.mark.parametrize("retries", [0, 1])
def test_child_killed_mid_document_resumes_after_the_delivered_pages(fast_pdf, retries):
    # Full-size pages (9 MB each) cannot fit the pipe, so the child is still alive, blocked
    # sending page 2, when the first page reaches us.
    renderer = IsolatedRenderer(RenderLimits(render_retries=retries))
    pages = renderer(fast_pdf, "three.pdf")
    rows = [next(pages)]
    [child] = render_children()
    os.kill(child, signal.SIGSEGV)
    rows += list(pages)
    assert [row["page_index"] for row in rows] == [0, 1, 2]
    assert renderer.children_started == 2
    if retries:
        assert statuses(rows) == ["ok"] * 3
        assert all(row["image"] for row in rows)
    else:  # page 2 is lost to the crash; a new child goes on with page 3
        assert statuses(rows) == ["ok", "render_crash", "ok"]
        assert rows[1]["page_count"] == 3 and "SIGSEGV after 1 attempt(s)" in rows[1]["error"]


def test_a_document_that_keeps_crashing_still_gets_a_row_for_every_page():
    renderer = IsolatedRenderer(RenderLimits(max_pages_per_doc=7, render_retries=0))
    pages = renderer(pages_pdf(*[False] * 9), "poison.pdf")
    rows = []
    for row in pages:  # each child is killed as soon as it has delivered one page
        rows.append(row)
        if row["status"] == "ok":
            [child] = render_children()
            os.kill(child, signal.SIGSEGV)
    assert [row["page_index"] for row in rows] == list(range(9))
    assert statuses(rows) == ["ok", "render_crash"] * 3 + ["render_crash", "page_skipped", "page_skipped"]
    assert rows[6]["error"] == "page 7 of 9 not rendered: 3 pages of this document failed (max_failed_pages=3)"
    assert renderer.children_started == 3


def test_retries_are_per_failing_page_not_per_document():
    renderer = IsolatedRenderer(RenderLimits(render_retries=1))
    rows = []
    for row in renderer(pages_pdf(*[False] * 4), "twice.pdf"):
        rows.append(row)
        if len(rows) <= 2:  # the first child dies after page 1, its replacement after page 2
            [child] = render_children()
            os.kill(child, signal.SIGSEGV)
    assert statuses(rows) == ["ok"] * 4 and renderer.children_started == 3


def test_after_a_timeout_the_remaining_pages_are_rows_too(fast_pdf):
    renderer = IsolatedRenderer(replace(SMALL, render_timeout_s=2))
    list(renderer(fast_pdf, "warm_up.pdf"))
    rows = list(renderer(pages_pdf(False, True, False, False), "slow_second_page.pdf"))
    assert statuses(rows) == ["ok", "render_timeout", "render_timeout", "render_timeout"]
    assert [row["page_index"] for row in rows] == [0, 1, 2, 3] and {r["page_count"] for r in rows} == {4}
    assert rows[3]["error"] == "page 4 of 4 not rendered: the document's render_timeout_s=2 was used up"


def test_timeout_keeps_the_pages_before_it_and_the_renderer_goes_on(fast_pdf):
    renderer = IsolatedRenderer(replace(SMALL, render_timeout_s=3))
    list(renderer(fast_pdf, "warm_up.pdf"))  # forkserver start-up is not what is timed here
    pages = renderer(pages_pdf(False, True), "slow_second_page.pdf")
    first = next(pages)
    # streamed, not held until the timeout: page 1 arrives while its child still draws page 2
    # (an order of events, not a wall clock, which a busy machine stretches)
    assert first["status"] == "ok" and render_children() != []
    [timeout] = list(pages)
    assert (timeout["status"], timeout["page_index"], timeout["page_count"]) == ("render_timeout", 1, 2)
    assert timeout["error"] == "render_timeout_s=3 exceeded after 1 page(s)"
    assert timeout["render_ms"] > 2900  # the budget was waited for (a lower bound: load only adds to it)
    assert renderer.children_started == 2  # a timeout is not retried
    assert render_children() == []  # the slow child was killed, not left running
    assert statuses(list(renderer(fast_pdf, "next.pdf"))) == ["ok"] * 3


def test_a_slow_consumer_is_not_a_render_timeout(fast_pdf):
    renderer = IsolatedRenderer(replace(SMALL, render_timeout_s=1))
    rows = []
    for row in renderer(fast_pdf, "three.pdf"):
        rows.append(row)
        time.sleep(0.6)  # 1.8 s in all, well over timeout_s, spent downstream
    assert statuses(rows) == ["ok"] * 3


def test_a_child_nobody_waits_for_is_stopped_by_its_cpu_budget():
    # After page 1 we stop reading: the child burns CPU on page 2 with no parent timer running.
    renderer = IsolatedRenderer(replace(SMALL, render_timeout_s=1))
    pages = renderer(pages_pdf(False, True), "slow_second_page.pdf")
    assert next(pages)["status"] == "ok"
    # 1 + CPU_GRACE_S CPU seconds; the wait allows for a busy machine, where CPU time is slow to accrue
    assert wait_until(lambda: render_children() == [], timeout_s=60), "render children outlived their document"
    [row] = list(pages)  # SIGXCPU, so the kernel's limit (not the parent) stopped it
    assert (row["status"], row["page_index"]) == ("render_timeout", 1)
    assert row["error"] == "render_timeout_s=1 exceeded: the renderer ran out of CPU time after 1 page(s)"


def test_memory_limit_makes_a_row_and_leaves_the_parent_alone():
    parent_limit = resource.getrlimit(resource.RLIMIT_AS)
    big = RenderLimits(longest_edge_px=8192, max_page_pixels=8192 * 8192)  # a 155 MB pixmap
    data = huge_image()
    tight = IsolatedRenderer(replace(big, render_memory_mb=64))
    [row] = list(tight(data, "huge.pdf"))
    assert row["status"] == Status.RENDER_MEMORY.value and row["image"] is None
    assert row["error"].startswith("render_memory_mb=64 exceeded: page 1 of 1:")
    # the limit, not the document, made the difference
    [row] = list(IsolatedRenderer(replace(big, render_memory_mb=1024))(data, "huge.pdf"))
    assert (row["status"], row["image_width"], row["image_height"]) == ("ok", 6331, 8192)
    # a page that fits renders under the same 64 MB, and the parent has no limit
    assert statuses(list(IsolatedRenderer(replace(SMALL, render_memory_mb=64))(pages_pdf(False), "small.pdf"))) == ["ok"]
    assert resource.getrlimit(resource.RLIMIT_AS) == parent_limit
    assert len(bytearray(256 * 1024 * 1024)) == 256 * 1024 * 1024


def test_abandoned_document_kills_its_child(fast_pdf):
    pages = IsolatedRenderer(RenderLimits())(fast_pdf, "three.pdf")
    next(pages)
    assert len(render_children()) == 1
    pages.close()
    assert render_children() == []


def test_child_neither_reruns_the_main_script_nor_prints_mupdf_errors(tmp_path):
    # In a Ray worker __main__ is Ray's default_worker.py; re-running it per document cost
    # 0.3 s each. MuPDF prints errors to stdout unless told not to.
    marker = tmp_path / "main_imports"
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        with open({str(marker)!r}, "a") as f:
            f.write("imported\\n")
        from corpus import nested_forms
        from pageray.pipeline.render.isolation import IsolatedRenderer
        from pageray.pipeline.render.pages import RenderLimits, render_document

        if __name__ == "__main__":
            data = nested_forms(200)  # MuPDF: "exception stack overflow"
            renderer = IsolatedRenderer(RenderLimits(longest_edge_px=256, max_page_pixels=256 * 256))
            for _ in range(3):
                print([row["status"] for row in renderer(data, "deep.pdf")], flush=True)
            print("--- in process:", flush=True)
            import pymupdf
            pymupdf.TOOLS.mupdf_display_errors(True)  # PyMuPDF 1.x's default; 2.x starts with it off
            print([row["status"] for row in render_document(data, "deep.pdf", renderer.limits)], flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    isolated, in_process = done.stdout.split("--- in process:")
    assert isolated.split() == ["['render_error']"] * 3 and "MuPDF error" not in done.stderr
    assert "MuPDF error: exception stack overflow" in in_process  # the control: it does print
    assert marker.read_text() == "imported\n"


def test_pdf_with_a_text_layer_keeps_it_through_the_pipe():
    with pymupdf.open() as doc:
        doc.new_page().insert_text((72, 72), "Total due: 42.00 EUR")
        data = doc.tobytes()
    [row] = list(IsolatedRenderer(SMALL)(data, "text.pdf"))
    assert row["status"] == "ok" and "Total due: 42.00 EUR" in row["text_layer"]
    assert len(row["image"]) == row["image_width"] * row["image_height"] * 3
