"""Planning and compaction over hand-made output folders (no Ray): what a killed run leaves
behind (two versions of a file, or pages committed twice) is cleaned up by the next run."""
from __future__ import annotations

import os

from outputs import OTHER, SCHEMA, SCOPE, commit, document, rows
from pageray.pipeline.ledger.compact import drop_duplicate_pages, drop_superseded
from pageray.pipeline.config import RunConfig
from pageray.pipeline.datamodel import rows_to_table
from pageray.pipeline.ledger.index import CommittedIndex
from pageray.pipeline.ledger.plan import make_plan
from pageray.pipeline.ledger.folder import DATA_DIR, OutputFolder
from pageray.pipeline.storage import doc_id_for, iter_documents


def plan_for(inbox, out):
    config = RunConfig.build(inputs=[str(inbox)], out=str(out), schema_ref="transcribe")
    return make_plan(config, OutputFolder(str(out)), write=False)


def test_a_changed_file_killed_before_compaction_is_cleaned_up_by_the_next_run(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, _ = document(inbox, "a.pdf", 10)
    commit(out, "r1", path, [0, 1], size=10, mtime_ns=111)            # the old version
    commit(out, "r2", path, [0, 1], size=10, mtime_ns=path.stat().st_mtime_ns)  # new rows; r2 then killed
    plan = plan_for(inbox, out)
    assert plan.summary()["skipped"] == 1 and plan.documents == 0
    assert plan.current_versions == {doc_id_for(str(path)): (10, path.stat().st_mtime_ns)}
    assert drop_superseded(OutputFolder(str(out)), "r3", plan.current_versions, plan.forced, SCOPE) == 1
    assert [r[3] for r in rows(out)] == ["r2", "r2"]
    assert plan_for(inbox, out).current_versions == {}


def test_pages_committed_twice_keep_only_the_newest_row(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    other, other_mtime = document(inbox, "b.pdf", 20)
    commit(out, "r1", path, [0, 1], size=10, mtime_ns=mtime, minutes=0)
    commit(out, "r1", other, [0, 1], size=20, mtime_ns=other_mtime, minutes=0)
    commit(out, "r2-forced", path, [1], size=10, mtime_ns=mtime, minutes=5)  # --force run, killed
    plan = plan_for(inbox, out)
    assert plan.duplicated == {doc_id_for(str(path))} and plan.documents == 0
    assert drop_duplicate_pages(OutputFolder(str(out)), plan.duplicated, SCOPE) == 1
    assert rows(out) == [(str(path), 0, 10, "r1"), (str(path), 1, 10, "r2-forced"),
                         (str(other), 0, 20, "r1"), (str(other), 1, 20, "r1")]
    assert plan_for(inbox, out).duplicated == set()


def test_compaction_leaves_no_temporary_files(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "r1", path, [0, 1], size=10, mtime_ns=mtime)
    commit(out, "r2", path, [0, 1], size=10, mtime_ns=mtime, minutes=1)
    drop_duplicate_pages(OutputFolder(str(out)), {doc_id_for(str(path))}, SCOPE)
    assert [r[3] for r in rows(out)] == ["r2", "r2"]
    assert all(name.startswith("part-r2-") for name in os.listdir(out / DATA_DIR))


def test_rows_of_another_schema_neither_count_as_done_nor_get_compacted(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "r1-invoice", path, [0, 1], size=10, mtime_ns=mtime, schema=OTHER)
    commit(out, "r1-invoice-old", path, [0, 1], size=10, mtime_ns=111, schema=OTHER)
    plan = plan_for(inbox, out)  # a transcribe run appending to the folder
    assert plan.summary()["new"] == 1 and plan.documents == 1 and plan.current_versions == {}
    commit(out, "r2", path, [0, 1], size=10, mtime_ns=mtime)
    folder = OutputFolder(str(out))
    doc = doc_id_for(str(path))
    assert drop_superseded(folder, "r3", {doc: (10, mtime)}, set(), SCOPE) == 0
    assert drop_duplicate_pages(folder, {doc}, SCOPE) == 0
    assert sorted({r[3] for r in rows(out)}) == ["r1-invoice", "r1-invoice-old", "r2"]
    assert drop_superseded(folder, "r3", {}, {doc}, SCOPE) == 1  # --force: only this scope's rows go
    assert sorted({r[3] for r in rows(out)}) == ["r1-invoice", "r1-invoice-old"]


def test_the_index_knows_complete_partial_and_document_level_rows(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    half, half_mtime = document(inbox, "half.pdf", 10)
    whole, whole_mtime = document(inbox, "whole.pdf", 11)
    broken, broken_mtime = document(inbox, "broken.pdf", 12)
    commit(out, "r1", half, [1], size=10, mtime_ns=half_mtime)        # page 2 of 2 committed
    commit(out, "r1", whole, [0, 1], size=11, mtime_ns=whole_mtime)
    rows = [{"run_id": "r1", "schema_id": SCOPE.schema_id, "model_id": SCOPE.model_id,
             "doc_id": doc_id_for(str(broken)), "source_uri": str(broken), "doc_size": 12,
             "doc_mtime_ns": broken_mtime, "page_index": 0, "page_count": None, "status": "render_error"}]
    table = rows_to_table(rows, SCHEMA)
    OutputFolder(str(out)).write_part("r1", table)
    document(inbox, "new.pdf", 13)
    with CommittedIndex(OutputFolder(str(out)), SCOPE) as index:
        found = {doc.uri: match for doc, match in index.match(iter_documents([str(inbox)]))}
    half_version = found[str(half)].current
    assert (half_version.committed, half_version.page_count, half_version.pages) == (1, 2, frozenset({1}))
    assert not half_version.complete()
    assert found[str(whole)].current.complete() and found[str(broken)].current.complete()
    assert not found[str(inbox / "new.pdf")]
    with CommittedIndex(OutputFolder(str(out)), OTHER) as index:
        assert not any(match for _, match in index.match(iter_documents([str(inbox)])))
    plan = plan_for(inbox, out)
    assert (plan.summary()["resumed"], plan.summary()["skipped"], plan.summary()["new"], plan.documents) == (1, 2, 1, 2)


def test_a_run_whose_id_extends_another_is_still_compacted(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "nightly-2", path, [0, 1], size=10, mtime_ns=111)   # the old version, run "nightly-2"
    commit(out, "nightly", path, [0, 1], size=10, mtime_ns=mtime)   # this run, "nightly"
    doc = doc_id_for(str(path))
    assert drop_superseded(OutputFolder(str(out)), "nightly", {doc: (10, mtime)}, set(), SCOPE) == 1
    assert {r[3] for r in rows(out)} == {"nightly"}
