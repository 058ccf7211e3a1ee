"""The plan joins the listing against the committed pages out of core (pipeline.ledger.index); it
must classify every document exactly as a plain in-memory reading of the rows does: the reference
below (`expected_plan`) is the rule the plan followed when it held the whole index in the driver,
row by row, with no tricks."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from outputs import OTHER, SCHEMA, SCOPE, T0
from pageray.pipeline.config import RunConfig
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.plan import BYTES_PER_PAGE_GUESS, make_plan
from pageray.pipeline.ledger.retry import RetryPolicy
from pageray.pipeline.storage import doc_id_for

CASES = ["new", "complete", "doc_error", "changed", "changed_and_current", "resumed", "retried",
         "retried_then_ok", "render_timeout", "page_skipped", "file_too_large", "doubled", "other_scope",
         "no_version", "doubled_with_a_gap"]
UNLISTED = ["single", "several", "several_tied", "doubled", "several_doubled"]


def _rows_for(rng: random.Random, case: str, uri: str, size: int, mtime: int) -> list[dict]:
    n = rng.randint(1, 8)

    def page(p, status="ok", version=(size, mtime), count=n, minutes=0, scope=SCOPE):
        return {"doc_id": doc_id_for(uri), "source_uri": uri, "doc_size": version[0], "doc_mtime_ns": version[1],
                "page_index": p, "page_count": count, "status": status, "run_id": "r1", "doc_sha256": "x",
                "schema_id": scope.schema_id, "model_id": scope.model_id,
                "created_at": T0 + timedelta(minutes=minutes)}
    pages = range(n)
    if case == "new":
        return []
    if case in ("complete", "single", "several"):
        return [page(p, minutes=rng.randint(0, 3)) for p in pages] + \
            ([page(p, version=(size + 1, mtime), minutes=rng.randint(0, 3)) for p in pages] if case == "several" else [])
    if case == "several_tied":
        return [page(p, version=v, minutes=1) for p in pages for v in ((size, mtime), (size + 2, mtime), (size, mtime + 5))]
    if case == "doc_error":
        return [page(0, "render_error", count=None)]
    if case == "changed":
        return [page(p, version=(size + 1, mtime)) for p in pages]
    if case == "changed_and_current":
        return [page(p, version=(size, mtime - 1)) for p in pages] + [page(p, minutes=1) for p in pages]
    if case == "resumed":
        return [page(p) for p in rng.sample(pages, rng.randint(0, n - 1))] or [page(n, count=n + 1)]
    if case == "retried":
        return [page(p, rng.choice(["ok", "model_error", "read_error"])) for p in pages] + [page(n, "model_error", count=n + 1)]
    if case == "retried_then_ok":
        return [page(p) for p in pages] + [page(0, "model_error", minutes=-1)]
    if case == "render_timeout":
        return [page(p, "render_timeout" if p == 0 else "ok") for p in pages]
    if case == "page_skipped":
        return [page(p, "ok" if p < 2 else "page_skipped", count=n + 4) for p in range(n + 4)]
    if case == "file_too_large":
        return [page(0, "file_too_large", count=None)]
    if case in ("doubled", "several_doubled"):
        extra = [page(p, version=(size + 3, mtime)) for p in pages] if case == "several_doubled" else []
        return [page(p) for p in pages] + [page(rng.randrange(n), minutes=2)] + extra
    if case == "doubled_with_a_gap":  # as many rows as pages, but page 0 twice and the last missing
        return [page(p, count=n + 1) for p in pages] + [page(0, count=n + 1, minutes=2)]
    if case == "other_scope":
        return [page(p, scope=OTHER) for p in pages]
    if case == "no_version":
        return [{**page(p), "doc_size": None, "doc_mtime_ns": None} for p in pages]
    raise AssertionError(case)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """An input folder of 5,000 documents and an output of ~30,000 committed rows (most cases
    several hundred times over, spread over a few part files), plus 1,000 unlisted documents."""
    root = tmp_path_factory.mktemp("filled")
    inbox, out = root / "in", root / "out"
    inbox.mkdir()
    rng = random.Random(24)
    rows = []
    for i in range(5000):
        path = inbox / f"doc{i:05d}.pdf"
        path.write_bytes(b"x" * (10 + i % 97))
        st = path.stat()
        rows += _rows_for(rng, CASES[i % len(CASES)], str(path), st.st_size, st.st_mtime_ns)
    for i in range(1000):
        rows += _rows_for(rng, UNLISTED[i % len(UNLISTED)], str(inbox / f"gone{i:05d}.pdf"), 40, 1_000 + i)
    rng.shuffle(rows)
    folder = OutputFolder(str(out))
    for start in range(0, len(rows), 3000):
        chunk = rows[start:start + 3000]
        folder.write_part(f"r{start}", pa.Table.from_pylist(chunk, schema=SCHEMA))
    return inbox, out, rows


def expected_plan(config: RunConfig, inbox, rows: list[dict]) -> dict:
    """The plan as a plain reading of every row gives it: per document version the pages with a
    final row, whether any row is not final, whether a page has two rows."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    settled = RetryPolicy.of(config).settled(table)
    versions = defaultdict(lambda: {"final": set(), "pages": set(), "rows": 0, "count": 0, "retried": False,
                                    "created": 0})
    for row, final in zip(rows, settled):
        if row["schema_id"] != SCOPE.schema_id or row["model_id"] != SCOPE.model_id:
            continue
        v = versions[(row["doc_id"], row["doc_size"] or 0, row["doc_mtime_ns"] or 0)]
        v["rows"] += 1
        v["pages"].add(row["page_index"])
        v["count"] = max(v["count"], row["page_count"] or 0)
        v["created"] = max(v["created"], int(row["created_at"].timestamp() * 1e6))
        v["retried"] |= not final
        if final:
            v["final"].add(row["page_index"])
    by_doc = defaultdict(dict)
    for (doc_id, size, mtime), v in versions.items():
        by_doc[doc_id][(size, mtime)] = v
    docs, kinds, current_versions, duplicated, forced = [], Counter(), {}, set(), set()
    estimated = 0
    listed = sorted(inbox.iterdir())
    for path in listed:
        doc_id, st = doc_id_for(str(path)), path.stat()
        mine = by_doc.get(doc_id, {})
        current = mine.get((st.st_size, st.st_mtime_ns))
        complete = current is not None and len(current["final"]) >= (current["count"] or 1)
        if config.force:
            kind = "forced" if mine else "new"
        elif not mine:
            kind = "new"
        elif current is None:
            kind = "changed"
        elif complete:
            kind = "skipped"
        else:
            kind = "retried" if current["retried"] else "resumed"
        kinds[kind] += 1
        if any(v != (st.st_size, st.st_mtime_ns) for v in mine):
            current_versions[doc_id] = (st.st_size, st.st_mtime_ns)
        if current is not None and (current["rows"] > len(current["pages"]) or current["retried"]) and kind != "forced":
            duplicated.add(doc_id)
        if kind == "skipped":
            continue
        if kind == "forced":
            forced.add(doc_id)
        done = sorted(current["final"]) if kind in ("resumed", "retried") else []
        docs.append((doc_id, str(path), st.st_size, st.st_mtime_ns, kind, done))
        estimated += (current["count"] if current else 0) or max(1, st.st_size // BYTES_PER_PAGE_GUESS)
    listed_ids = {doc_id_for(str(p)) for p in listed}
    unlisted = set(by_doc) - listed_ids
    for doc_id in unlisted:
        mine = by_doc[doc_id]
        if any(v["rows"] > len(v["pages"]) for v in mine.values()):
            duplicated.add(doc_id)
        if len(mine) > 1:  # the newest written stays; of equally new ones the last in (size, mtime) order
            current_versions[doc_id] = max(mine, key=lambda version: (mine[version]["created"], version))
    return {"docs": docs, "kinds": kinds, "current_versions": current_versions, "duplicated": duplicated,
            "forced": forced, "unlisted": unlisted if config.prune else set(), "estimated_pages": estimated}


@pytest.mark.parametrize("options", [{}, {"force": True}, {"prune": True}, {"retry": ["render_timeout"]},
                                     {"max_pages_per_doc": 5}, {"max_file_bytes": 1 << 40}],
                         ids=["default", "force", "prune", "retry", "page-limit", "file-limit"])
def test_the_plan_classifies_every_document_as_the_committed_rows_say(filled, options):
    inbox, out, rows = filled
    _check_plan(inbox, str(out), rows, options)


def test_the_plan_reads_the_committed_rows_from_s3(filled, s3_bucket):
    """DuckDB reads no s3:// itself here (its S3 reader is a download): the rows reach it from
    pyarrow's S3 filesystem."""
    inbox, out, rows = filled
    for part in sorted((out / "data").glob("part-*.parquet")):
        s3_bucket.upload_file(str(part), "docs", f"out/data/{part.name}")
    _check_plan(inbox, "s3://docs/out", rows, {})


def _check_plan(inbox, out: str, rows: list[dict], options: dict) -> None:
    config = RunConfig.build(inputs=[str(inbox)], out=out, schema_ref="transcribe", **options)
    folder = OutputFolder(out)
    plan = make_plan(config, folder)
    want = expected_plan(config, inbox, rows)
    got = []
    for number in range(plan.shards):
        got += pq.read_table(folder.shard_path(config.run_id, number), filesystem=folder.fs).to_pylist()
    got = [(r["doc_id"], r["source_uri"], r["doc_size"], r["doc_mtime_ns"], r["kind"], r["done_pages"]) for r in got]
    assert got == want["docs"]
    assert plan.kinds == want["kinds"]
    assert plan.current_versions == want["current_versions"]
    assert plan.duplicated == want["duplicated"]
    assert plan.forced == want["forced"]
    assert plan.unlisted == want["unlisted"]
    assert plan.estimated_pages == want["estimated_pages"]
    assert (plan.documents, plan.shard_docs) == (len(got), [len(got)])
    # every case is there, so a rule no document exercised cannot pass unnoticed
    assert min(want["kinds"][k] for k in (("new", "forced") if options.get("force") else
                                          ("new", "changed", "resumed", "retried", "skipped"))) > 50
    assert len(want["duplicated"]) > 100 and len(want["current_versions"]) > 100


def test_whole_versions_are_classified_from_one_read_of_the_rows(tmp_path, monkeypatch):
    """One final row per page: found by one aggregate per version, and the rows are not read
    again (what planning 100 million pages rests on). A page twice: read again, per page."""
    from outputs import commit, document
    from pageray.pipeline.ledger import index
    from pageray.pipeline.storage import DocRef

    reads = []
    real = index._committed_rows
    monkeypatch.setattr(index, "_committed_rows", lambda *args: reads.append(1) or real(*args))
    out, inbox = tmp_path / "out", tmp_path / "in"
    inbox.mkdir()
    listing = []
    for i, pages in enumerate([1, 3, 40]):
        path, mtime = document(inbox, f"d{i}.pdf", 10 + i)
        commit(out, f"r{i}", path, range(pages), 10 + i, mtime, page_count=pages)
        listing.append(DocRef(str(path), 10 + i, mtime))

    def matches():
        with index.CommittedIndex(OutputFolder(str(out)), SCOPE) as committed:
            return [m.current for _, m in committed.match(listing)]

    assert [(v.committed, v.page_count, v.duplicated) for v in matches()] == [(1, 1, False), (3, 3, False),
                                                                              (40, 40, False)]
    assert reads == [1]
    commit(out, "again", listing[1].uri, [2], 11, listing[1].mtime_ns, page_count=3, minutes=5)
    reads.clear()
    assert [v.duplicated for v in matches()] == [False, True, False] and reads == [1, 1]
