"""Mutated real PDFs through the real isolated renderer: every case ends as rows, with bounded work.

The seeds are our samples and the real-world PDFs made by other tools; hypothesis truncates
them, flips bytes, splices objects from one into another, duplicates and deletes ranges and
rewrites the numbers the parser trusts most (/Length, /Count, /Size, /W, image sizes). Each
case renders in a child of one shared IsolatedRenderer, which must still work at the end.
"""
from __future__ import annotations

from dataclasses import replace

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from pageray.pipeline.datamodel import Status
from pageray.pipeline.render.isolation import IsolatedRenderer
from pageray.pipeline.render.pages import RenderLimits
from processes import render_children

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the renderer's limits are Linux behaviour")

REALWORLD = Path(__file__).parent / "data" / "realworld"
LIMITS = RenderLimits(longest_edge_px=256, max_page_pixels=256 * 256, max_pages_per_doc=4)
TIMEOUT_S, RETRIES = 10.0, 1
STATUSES = {status.value for status in Status}

_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\b.*?\bendobj", re.S)
_TRUSTED_NUMBER = re.compile(rb"/(?:Length|Count|Size|W|N|First|Rotate|Width|Height|BitsPerComponent|Columns|"
                             rb"Predictor|Prev|XRefStm)\s*\[?\s*(-?\d+)")
HOSTILE_NUMBERS = st.sampled_from([0, 1, -1, 7, 255, 65_535, 2**31 - 1, 2**31, 2**32 + 1, 2**63, 10**30])


class Seeds(dict):
    def __repr__(self) -> str:  # hypothesis prints the test's arguments when a case fails
        return f"<{len(self)} seed PDFs: {', '.join(self)}>"


@pytest.fixture(scope="module")
def seeds(samples) -> Seeds:
    paths = sorted(samples.glob("*.pdf")) + sorted(REALWORLD.glob("*.pdf"))
    return Seeds({path.name: path.read_bytes() for path in paths})


@pytest.fixture(scope="module")
def renderer() -> IsolatedRenderer:
    return IsolatedRenderer(replace(LIMITS, render_timeout_s=TIMEOUT_S, render_retries=RETRIES))


def _span(draw, size: int) -> tuple[int, int]:
    start = draw(st.integers(0, max(0, size - 1)))
    return start, min(size, start + draw(st.integers(1, 4096)))


def mutate(draw, data: bytes, seeds: dict[str, bytes]) -> tuple[bytes, str]:
    """One mutation of `data`, and a label saying what it was (for hypothesis' report)."""
    op = draw(st.sampled_from(["truncate", "flip", "splice", "duplicate", "delete", "number"]))
    if op == "truncate":
        at = draw(st.integers(0, len(data)))
        return data[:at], f"truncate at {at}"
    if op == "flip":
        flipped = bytearray(data)
        for position, mask in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)),
                                            min_size=1, max_size=32)):
            flipped[position] ^= mask
        return bytes(flipped), "flip bytes"
    if op == "splice":
        donor_name = draw(st.sampled_from(sorted(seeds)))
        donors = list(_OBJECT.finditer(seeds[donor_name])) or [None]
        donor = draw(st.sampled_from(donors))
        piece = donor.group() if donor else seeds[donor_name][slice(*_span(draw, len(seeds[donor_name])))]
        targets = list(_OBJECT.finditer(data))
        if targets:  # an object replaced by another file's: references now point at the wrong thing
            target = draw(st.sampled_from(targets))
            return data[:target.start()] + piece + data[target.end():], f"splice object from {donor_name}"
        at = draw(st.integers(0, len(data)))
        return data[:at] + piece + data[at:], f"insert from {donor_name} at {at}"
    if op == "number":
        found = list(_TRUSTED_NUMBER.finditer(data))
        if not found:
            return data, "no number to rewrite"
        match, value = draw(st.sampled_from(found)), draw(HOSTILE_NUMBERS)
        rewritten = data[:match.start(1)] + str(value).encode() + data[match.end(1):]
        return rewritten, f"{match.group().decode('latin-1')} -> {value}"
    start, end = _span(draw, len(data))
    if op == "duplicate":
        return data[:end] + data[start:end] + data[end:], f"duplicate {start}:{end}"
    return data[:start] + data[end:], f"delete {start}:{end}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_pdfs_always_end_as_rows(seeds, renderer, data):
    name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
    document = seeds[name]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if document:
            document, what = mutate(data.draw, document, seeds)
            note(what)

    before = renderer.children_started
    rows = list(renderer(document, "fuzz.pdf"))

    # bounded work, not time: each page a child renders is tried at most RETRIES + 1 times
    # (the renderer's own timeout bounds each child; a wall clock here would fail on a busy machine)
    rendered = min(len(rows), LIMITS.max_pages_per_doc)
    assert renderer.children_started - before <= (rendered + 1) * (RETRIES + 1)
    assert rows, "every document ends as at least one row"
    assert [row["page_index"] for row in rows] == list(range(len(rows)))  # unique, in order, no gaps
    for row in rows:
        assert row["status"] in STATUSES
        assert (row["error"] is None) == (row["status"] == Status.OK.value)
        if row["status"] == Status.OK.value:
            width, height = row["image_width"], row["image_height"]
            assert 1 <= width <= 256 and 1 <= height <= 256
            assert len(row["image"]) == width * height * 3
        else:
            assert row["image"] is None


def test_renderer_still_works_after_the_fuzzing(seeds, renderer):
    # Runs after the property test (file order): the same renderer, a clean seed, no child left.
    assert [row["status"] for row in renderer(seeds["crazyones.pdf"], "crazyones.pdf")] == ["ok"]
    assert render_children() == []
