"""Re-running the same command is always safe: what broke that promise, each case as it was found."""
from __future__ import annotations

import json
import os
import shutil
import sys
from urllib.parse import unquote_to_bytes

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from corpus import mupdf_pdf
from outputs import SCHEMA, SCOPE, commit, document
from pageray.pipeline.app.cli import app
from pageray.pipeline.ledger.compact import drop_duplicate_pages, drop_superseded, drop_unlisted
from pageray.pipeline.config import RunConfig
from pageray.pipeline.ledger.heartbeat import Heartbeat
from pageray.pipeline.ledger.records import RunRecord
from pageray.pipeline.ledger.plan import make_plan
from pageray.pipeline.ledger.folder import DATA_DIR, OutputFolder
from pageray.pipeline.ledger.index import Scope
from pageray.pipeline.ledger.records import check_claim, claim
from pageray.pipeline.storage import doc_id_for
from pageray.pipeline.ledger.commit import CommitPages
from pageray.schemas import load_schema


def plan_for(inputs, out, **options):
    config = RunConfig.build(inputs=[str(p) for p in inputs], out=str(out), schema_ref="transcribe", **options)
    return make_plan(config, OutputFolder(str(out)), write=False)


def part_rows(out) -> list[tuple]:
    return duckdb.sql(f"select source_uri, page_index, status from read_parquet('{out}/{DATA_DIR}/*.parquet') "
                      "order by all").fetchall()


# 1. a run killed before its first file must not leave the output unusable

@pytest.mark.parametrize("leftover", ["nothing", "temporary file", "zero-row part file", "no-column part file"])
def test_a_data_folder_with_nothing_committed_reads_as_nothing_committed(leftover, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    document(inbox, "a.pdf", 10)
    (out / DATA_DIR).mkdir(parents=True)
    if leftover == "temporary file":
        (out / DATA_DIR / ".part-r1-0123.parquet.ab12cd34.tmp").write_bytes(b"PAR1 half a file")
    elif leftover == "zero-row part file":
        pq.write_table(SCHEMA.empty_table(), out / DATA_DIR / "part-r1-00000000000000000000.parquet")
    elif leftover == "no-column part file":
        pq.write_table(pa.table({}), out / DATA_DIR / "part-r1-00000000000000000001.parquet")
    plan = plan_for([inbox], out)
    assert (plan.summary()["new"], plan.documents) == (1, 1)
    result = CliRunner().invoke(app, ["plan", str(inbox), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["new"] == 1


def test_the_commit_step_makes_the_data_folder_only_with_its_first_file(tmp_path):
    step = CommitPages(str(tmp_path / "out"), "r1", SCHEMA)  # what an actor holds while the model loads
    assert not (tmp_path / "out" / DATA_DIR).exists()
    step(SCHEMA.empty_table())
    assert not (tmp_path / "out" / DATA_DIR).exists()


# 2. the same file named twice in one run

def test_a_file_named_beside_its_folder_is_planned_once(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, _ = document(inbox, "p.pdf", 10)
    document(inbox, "q.pdf", 11)
    for inputs in ([inbox, path], [path, inbox]):
        plan = plan_for(inputs, out)
        assert (plan.summary()["new"], plan.documents) == (2, 2), inputs
        assert plan.summary()["passed_over"] == {"duplicate": 1}
    assert plan_for([inbox, inbox], out).documents == 2  # a folder named twice is walked once


# 3. a failure that is not the document's fault is retried; the final statuses are kept

def test_a_file_that_could_not_be_read_is_retried_not_done(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "r1", path, [0], size=10, mtime_ns=mtime, page_count=None, status="read_error")
    plan = plan_for([inbox], out)
    assert (plan.summary()["retried"], plan.documents) == (1, 1)
    assert plan.duplicated == {doc_id_for(str(path))}  # the read_error row goes once the pages are in
    for final in ("render_error", "encrypted", "render_timeout", "render_crash"):
        shutil.rmtree(out)
        commit(out, "r1", path, [0], size=10, mtime_ns=mtime, page_count=None, status=final)
        assert plan_for([inbox], out).summary()["skipped"] == 1, final
    assert plan_for([inbox], out, retry=["render_crash"]).summary()["retried"] == 1


def test_a_page_that_failed_in_the_model_is_redone_and_its_old_row_dropped(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "r1", path, [0], size=10, mtime_ns=mtime, page_count=2)
    commit(out, "r1", path, [1], size=10, mtime_ns=mtime, page_count=2, status="model_error")
    plan = plan_for([inbox], out)
    assert plan.summary()["retried"] == 1
    commit(out, "r2", path, [1], size=10, mtime_ns=mtime, page_count=2, minutes=5)  # the redone page
    assert drop_duplicate_pages(OutputFolder(str(out)), plan.duplicated, SCOPE) == 1
    assert [r[1:] for r in part_rows(out)] == [(0, "ok"), (1, "ok")]
    assert plan_for([inbox], out).summary()["skipped"] == 1


def test_a_raised_page_limit_reprocesses_the_pages_it_skipped(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    commit(out, "r1", path, [0], size=10, mtime_ns=mtime, page_count=3)
    commit(out, "r1", path, [1, 2], size=10, mtime_ns=mtime, page_count=3, status="page_skipped")
    assert plan_for([inbox], out, max_pages_per_doc=1).summary()["skipped"] == 1
    config = RunConfig.build(inputs=[str(inbox)], out=str(out), schema_ref="transcribe")
    plan = make_plan(config, OutputFolder(str(out)))
    assert plan.summary()["retried"] == 1
    [planned] = pq.read_table(OutputFolder(str(out)).shard_path(config.run_id, 0)).to_pylist()
    assert planned["done_pages"] == [0]  # only the skipped pages are rendered again


# 4. what a killed run left is cleaned up whatever the next run lists

def test_pages_committed_twice_are_cleaned_up_by_a_run_over_another_folder(tmp_path):
    inbox, elsewhere, out = tmp_path / "in", tmp_path / "empty", tmp_path / "out"
    inbox.mkdir()
    elsewhere.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    changed, changed_mtime = document(inbox, "b.pdf", 20)
    commit(out, "r1", path, [0, 1], size=10, mtime_ns=mtime)
    commit(out, "r2-forced", path, [0, 1], size=10, mtime_ns=mtime, minutes=5)   # a killed --force run
    commit(out, "r1", changed, [0, 1], size=20, mtime_ns=111)                    # b.pdf's old version
    commit(out, "r2-forced", changed, [0, 1], size=20, mtime_ns=changed_mtime, minutes=5)
    plan = plan_for([elsewhere], out)
    assert plan.documents == 0
    assert plan.duplicated == {doc_id_for(str(path))}
    assert plan.current_versions == {doc_id_for(str(changed)): (20, changed_mtime)}  # the newest version stays
    folder = OutputFolder(str(out))
    drop_superseded(folder, "r3", plan.current_versions, plan.forced, plan.scope)
    drop_duplicate_pages(folder, plan.duplicated, plan.scope)
    got = duckdb.sql(f"select source_uri, page_index, run_id, doc_mtime_ns from read_parquet('{out}/{DATA_DIR}/*.parquet')"
                     " order by all").fetchall()
    assert got == [(str(path), 0, "r2-forced", mtime), (str(path), 1, "r2-forced", mtime),
                   (str(changed), 0, "r2-forced", changed_mtime), (str(changed), 1, "r2-forced", changed_mtime)]
    again = plan_for([elsewhere], out)
    assert (again.duplicated, again.current_versions) == (set(), {})


# 5. smaller gaps

def test_prune_drops_documents_deleted_from_the_inputs_and_nothing_else(tmp_path):
    inbox, other, out = tmp_path / "in", tmp_path / "other", tmp_path / "out"
    inbox.mkdir()
    other.mkdir()
    kept, kept_mtime = document(inbox, "a.pdf", 10)
    gone, gone_mtime = document(inbox, "b.pdf", 11)
    beside, beside_mtime = document(other, "c.pdf", 12)
    for path, size, mtime in ((kept, 10, kept_mtime), (gone, 11, gone_mtime), (beside, 12, beside_mtime)):
        commit(out, "r1", path, [0, 1], size=size, mtime_ns=mtime)
    gone.unlink()
    assert plan_for([inbox], out).unlisted == set()  # without --prune the rows stay
    plan = plan_for([inbox], out, prune=True)
    assert doc_id_for(str(gone)) in plan.unlisted
    assert drop_unlisted(OutputFolder(str(out)), plan.unlisted, [str(inbox)], plan.scope) == 1
    assert sorted({r[0] for r in part_rows(out)}) == [str(kept), str(beside)]
    kept.unlink()
    assert plan_for([inbox], out, prune=True).unlisted == set()  # an empty listing prunes nothing


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8")
def test_a_name_that_is_not_utf8_is_counted_in_the_plan_with_its_bytes(tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    document(inbox, "a.pdf", 10)
    with open(os.fsencode(inbox) + b"/caf\xe9 100%.pdf", "wb") as f:
        f.write(b"%PDF-1.7\n")
    summary = plan_for([inbox], out).summary()
    assert summary["passed_over"] == {"undecodable_name": 1}
    [example] = summary["passed_over_examples"]["undecodable_name"]
    assert unquote_to_bytes(example) == os.fsencode(inbox) + b"/caf\xe9 100%.pdf"
    json.dumps(summary)  # it goes into the run record


def test_a_model_folder_is_one_model_however_it_is_written(tiny_model, tmp_path):
    link = tmp_path / "link-to-model"
    link.symlink_to(tiny_model)
    names = {RunConfig.build(inputs=["x"], out="o", schema_ref="invoice", model=m).model
             for m in (str(tiny_model), str(tiny_model) + "/", str(link), str(link) + "/")}
    assert names == {str(tiny_model.resolve())}
    assert RunConfig.build(inputs=["x"], out="o", schema_ref="invoice", model="org/some-model").model == "org/some-model"
    out, inbox = tmp_path / "out", tmp_path / "in"
    inbox.mkdir()
    path, mtime = document(inbox, "a.pdf", 10)
    folder = OutputFolder(str(out))
    written = str(tiny_model) + "/"  # as an older run wrote the model, and its rows carry it
    claim(folder, load_schema("transcribe"), written, "r1", append=False)
    commit(out, "r1", path, [0, 1], size=10, mtime_ns=mtime, scope=Scope(SCOPE.schema_id, written))
    check_claim(folder, load_schema("transcribe"), str(tiny_model.resolve()), append=False)  # not "another model"
    plan = plan_for([inbox], out, model=str(tiny_model))
    assert plan.summary()["skipped"] == 1  # its rows count, and are compacted with this run's


def test_plan_refuses_an_edited_schema_file_as_extract_would(tiny_model, tmp_path):
    schema_file, inbox, out = tmp_path / "mine.yaml", tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    document(inbox, "a.pdf", 10)
    spec = {"name": "mine", "version": "1", "description": "d",
            "schema": {"type": "object", "properties": {"total": {"type": "number", "description": "total"}}}}
    schema_file.write_text(json.dumps(spec))
    claim(OutputFolder(str(out)), load_schema(str(schema_file)), str(tiny_model), "r1", append=False)
    spec["schema"]["properties"]["total"]["description"] = "the amount due"
    schema_file.write_text(json.dumps(spec))
    for command in ("plan", "extract"):
        result = CliRunner().invoke(app, [command, str(inbox), "--out", str(out), "--schema", str(schema_file),
                                          "--model", str(tiny_model)])
        assert result.exit_code == 2, result.output
        assert "'mine' changed since the folder was made" in result.output and "--append" in result.output
    result = CliRunner().invoke(app, ["plan", str(inbox), "--out", str(out), "--schema", str(schema_file),
                                      "--model", str(tiny_model), "--append"])
    assert result.exit_code == 0 and json.loads(result.output)["new"] == 1


def test_a_change_of_state_is_in_the_run_record_at_once(tmp_path):
    folder = OutputFolder(str(tmp_path / "out"))
    record = RunRecord(run_id="r1", state="running")
    with Heartbeat(folder, record, every_s=3600) as beat:
        beat.update(pages=3)
        beat.update(state="compacting")
        [seen] = folder.runs()
        assert (seen["state"], seen["pages"]) == ("compacting", 3)


# the same cases through the real pipeline (Ray, PyMuPDF, the tiny model, Parquet read back)

@pytest.mark.slow
def test_reruns_fix_what_earlier_runs_left(ray_local, tiny_model, tmp_path):
    from pageray.extractors.extractor import ExtractFields
    from pageray.pipeline.datamodel import output_schema
    from pageray.pipeline.render.step import RenderPages
    from pageray.pipeline.driver.run import run_extraction
    from pageray.schemas import arrow_type

    inbox, out, away = tmp_path / "in", tmp_path / "out", tmp_path / "away.pdf"
    inbox.mkdir()
    two, one = inbox / "two.pdf", inbox / "one.pdf"
    two.write_bytes(mupdf_pdf(2))
    one.write_bytes(mupdf_pdf(1))
    (out / DATA_DIR).mkdir(parents=True)  # a run killed while its model loaded
    (out / DATA_DIR / ".part-x.parquet.1234abcd.tmp").write_bytes(b"PAR1")

    def config(**options):
        return RunConfig.build(inputs=[str(inbox), str(two)], out=str(out), schema_ref="transcribe",
                               model=str(tiny_model), max_new_tokens=16, batch_size=2, longest_edge_px=256,
                               max_page_pixels=256 * 256, **options)

    # an earlier run found one.pdf gone when its turn came: the real steps, without Ray
    st = one.stat()
    os.rename(one, away)
    cfg = config()
    plan_row = {"doc_id": [doc_id_for(str(one))], "source_uri": [str(one)], "doc_size": [st.st_size],
                "doc_mtime_ns": [st.st_mtime_ns], "kind": ["new"], "done_pages": [[]]}
    [pages] = RenderPages(cfg.run_id, cfg.render_limits())(plan_row)
    schema = cfg.extraction_schema()
    rows = ExtractFields(cfg.model_spec(), schema, cfg.extract_settings())(pages)
    CommitPages(str(out), "r0", output_schema(arrow_type(schema)))(rows)
    os.rename(away, one)  # back, same size and mtime
    claim(OutputFolder(str(out)), schema, cfg.model, "r0", append=False)
    assert part_rows(out) == [(str(one), 0, "read_error")]

    first = run_extraction(config(max_pages_per_doc=1))
    assert {k: first["plan"][k] for k in ("new", "retried", "skipped")} == {"new": 1, "retried": 1, "skipped": 0}
    assert first["plan"]["passed_over"] == {"duplicate": 1}
    assert part_rows(out) == sorted([(str(one), 0, "ok"), (str(two), 0, "ok"), (str(two), 1, "page_skipped")])

    second = run_extraction(config())  # the default page limit takes the skipped page
    assert {k: second["plan"][k] for k in ("retried", "skipped")} == {"retried": 1, "skipped": 1}
    assert second["pages"] == 1
    assert part_rows(out) == sorted([(str(one), 0, "ok"), (str(two), 0, "ok"), (str(two), 1, "ok")])

    third = run_extraction(config())
    assert (third["plan"]["skipped"], third["pages"]) == (2, 0)
    # plan shards are Parquet too, but no glob over the whole output picks them up as pages
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet')").fetchall() == [(3,)]
    records = {r["run_id"]: r["state"] for r in OutputFolder(str(out)).runs()}
    assert set(records.values()) == {"succeeded"}
