"""Merging small part files (pipeline.ledger.merge) on hand-made output folders, local and on
the S3 test server: the same rows before and after, fewer files, and a merge killed at any step
is finished (or dropped) by the next one without a page counted twice."""
from __future__ import annotations

import subprocess

import duckdb
import pytest
from clusters import BIN
import pyarrow as pa
from outputs import OTHER, T0, commit, document, rows
from pageray.pipeline.datamodel import output_schema, rows_to_table
from pageray.pipeline.errors import OutputBusy
from pageray.pipeline.ledger import merge
from pageray.pipeline.ledger.folder import COMPACT_DIR, DATA_DIR, OutputFolder
from pageray.pipeline.ledger.lease import Lease
from pageray.pipeline.ledger.merge import Part, compact, merge_small_files, plan_bins, recover
from pageray.pipeline.storage import doc_id_for


def test_plan_bins_groups_small_files_of_one_schema_within_the_target():
    parts = [Part(f"p{i}", 10, 5, "A") for i in range(5)] + [Part("big", 60, 5, "A"), Part("q", 10, 5, "B")]
    assert plan_bins(parts, target_bytes=100, target_rows=1000) == [["p0", "p1", "p2", "p3", "p4"]]
    assert plan_bins(parts, target_bytes=25, target_rows=1000) == [["p0", "p1"], ["p2", "p3"]]
    assert plan_bins(parts, target_bytes=20, target_rows=1000) == []  # none is under half a target
    assert plan_bins(parts, target_bytes=30, target_rows=1000) == [["p0", "p1", "p2"], ["p3", "p4"]]
    assert plan_bins(parts, target_bytes=100, target_rows=12) == [["p0", "p1", "p2", "p3", "p4"][i:i + 2]
                                                                 for i in (0, 2)]
    assert plan_bins([Part("only", 1, 1, "A")]) == []


def small_files(tmp_path, documents=6, pages=3):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for d in range(documents):
        path, mtime = document(inbox, f"d{d}.pdf", 10 + d)
        for p in range(pages):  # one file per page, as tiny Ray blocks would leave
            commit(out, f"r{d % 2}", path, [p], size=10 + d, mtime_ns=mtime, minutes=d)
    path, mtime = document(inbox, "other.pdf", 99)  # another schema's rows (--append): other columns
    table = rows_to_table([{"run_id": "r9", "schema_id": OTHER.schema_id, "model_id": OTHER.model_id,
                            "doc_id": doc_id_for(str(path)), "source_uri": str(path), "doc_size": 99,
                            "doc_mtime_ns": mtime, "page_index": 0, "status": "ok", "created_at": T0}],
                          output_schema(pa.struct([pa.field("total", pa.float64())])))
    OutputFolder(str(out)).write_part("r9", table)
    OutputFolder(str(out)).write_manifest({"schema_id": "x"})
    return out


def files(out):
    return sorted(p.name for p in (out / DATA_DIR).iterdir())


def test_merge_keeps_every_row_once_in_fewer_files_and_is_idempotent(tmp_path):
    out = small_files(tmp_path)
    before = rows(out)
    report = merge_small_files(OutputFolder(str(out)), "m1")
    assert report == {"merge_recovered": 0, "merged_files": 18, "merged_into": 1}
    assert rows(out) == before
    assert len(files(out)) == 2  # the merged file and the other schema's file
    assert duckdb.sql(f"select count(distinct file_name) from parquet_metadata('{out}/{DATA_DIR}/*.parquet')").fetchall()[0][0] == 2
    assert merge_small_files(OutputFolder(str(out)), "m2")["merged_files"] == 0
    assert rows(out) == before


def test_a_merge_killed_after_writing_its_target_is_finished_by_the_next(tmp_path, monkeypatch):
    out = small_files(tmp_path)
    before = rows(out)
    real_delete, deleted = OutputFolder.delete, []

    def dies_after_two(self, path):
        if len(deleted) == 2:
            raise KeyboardInterrupt("killed")
        deleted.append(path)
        real_delete(self, path)
    monkeypatch.setattr(OutputFolder, "delete", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        merge_small_files(OutputFolder(str(out)), "m1")
    monkeypatch.setattr(OutputFolder, "delete", real_delete)
    assert len(rows(out)) > len(before)  # what a reader may see meanwhile: some pages twice
    assert len(list((out / COMPACT_DIR).iterdir())) == 1
    assert recover(OutputFolder(str(out))) == 1
    assert rows(out) == before and not list((out / COMPACT_DIR).iterdir())


def test_a_merge_killed_before_its_target_exists_leaves_the_sources(tmp_path, monkeypatch):
    out = small_files(tmp_path)
    before, names = rows(out), files(out)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")
    real_write = OutputFolder.write_parquet_stream
    monkeypatch.setattr(OutputFolder, "write_parquet_stream", killed)
    with pytest.raises(KeyboardInterrupt):
        merge_small_files(OutputFolder(str(out)), "m1")
    monkeypatch.setattr(OutputFolder, "write_parquet_stream", real_write)
    assert files(out) == names
    report = merge_small_files(OutputFolder(str(out)), "m2")
    assert report["merge_recovered"] == 1 and report["merged_files"] == 18
    assert rows(out) == before


def test_pageray_compact_takes_the_lease_and_refuses_while_a_run_holds_it(tmp_path):
    out = small_files(tmp_path)
    holder = Lease(OutputFolder(str(out)), "nightly")
    holder.acquire()
    with pytest.raises(OutputBusy, match="nightly"):
        compact(str(out), log=lambda _: None)
    holder.release()
    before = rows(out)
    done = subprocess.run([str(BIN / "pageray"), "compact", str(out), "--target-mb", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "merged 18 small part files into 1" in done.stdout
    assert rows(out) == before and len(files(out)) == 2
    assert [p.name for p in (out / "_lease").iterdir()] == ["000000000002.released"]  # given back, its number kept
    refused = subprocess.run([str(BIN / "pageray"), "compact", str(tmp_path / "in")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "not a pageray output folder" in refused.stderr


def test_row_groups_are_large(tmp_path, monkeypatch):
    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 7)
    out = small_files(tmp_path)
    merge_small_files(OutputFolder(str(out)), "m1")
    groups = duckdb.sql(f"select row_group_num_rows from parquet_metadata('{out}/{DATA_DIR}/part-m1-*.parquet') "
                        "where column_id = 0 order by row_group_id").fetchall()
    assert [g[0] for g in groups] == [7, 7, 4]


def test_merge_and_recovery_on_s3(s3_bucket, tmp_path, monkeypatch):
    import pyarrow.dataset as pads

    inbox = tmp_path / "in"
    inbox.mkdir()
    out = "s3://docs/out"
    for d in range(4):
        path, mtime = document(inbox, f"d{d}.pdf", 10 + d)
        for p in range(2):
            commit(out, "r1", path, [p], size=10 + d, mtime_ns=mtime)
    folder = OutputFolder(out)
    folder.write_manifest({"schema_id": "x"})

    def keys():
        fresh = OutputFolder(out)
        table = pads.dataset([i.path for i in fresh.part_files()], filesystem=fresh.fs).to_table(
            columns=["doc_id", "page_index"])
        return sorted(zip(*table.to_pydict().values())), len(fresh.part_files())
    before, count = keys()
    assert count == 8
    real_delete = OutputFolder.delete
    calls = []

    def dies_after_one(self, path):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(path)
        real_delete(self, path)
    monkeypatch.setattr(OutputFolder, "delete", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        merge_small_files(folder, "m1")
    monkeypatch.setattr(OutputFolder, "delete", real_delete)  # not undo(): it would unset the AWS variables
    assert len(keys()[0]) == len(before) * 2 - 1  # the target and seven sources not yet deleted
    report = compact(out, log=lambda _: None)
    assert report["merge_recovered"] == 1 and keys() == (before, 1)
