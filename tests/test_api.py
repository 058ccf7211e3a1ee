"""The Python API (pipeline.api): extract() runs the CLI's validated config, read() the current rows."""
from __future__ import annotations

import datetime
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from cheap import SMALL_RENDER
from outputs import SCOPE, commit

from pageray.pipeline import extract, read
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunRecord, claim
from pageray.schemas import SchemaError, load_schema

CHEAP = {"max_new_tokens": 16, "batch_size": 2, **SMALL_RENDER}


@pytest.mark.parametrize("options, named", [
    ({"batch_sise": 2}, "'batch_sise' (did you mean 'batch_size'?)"),
    ({"schema_ref": "receipt"}, "'schema_ref' (the schema is extract()'s schema= argument)"),
    ({"batch_size": 0}, "--batch-size"),
    ({"quantize": "4bit", "dtype": "float32"}, "--dtype float32"),
])
def test_bad_options_are_refused_before_any_work_naming_them(options, named, samples, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as refused:
        extract(samples / "invoice.pdf", schema="invoice", out=out, **options)
    assert named in str(refused.value)
    assert not out.exists()


def test_a_class_that_is_no_schema_is_refused_before_any_work(samples, tmp_path):
    from pydantic import BaseModel

    class NoDocstring(BaseModel):
        total: float

    with pytest.raises(SchemaError, match="description"):
        extract([samples / "invoice.pdf"], schema=NoDocstring, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_class_is_resolved_once_from_the_class_itself_with_its_budget(samples, tmp_path, monkeypatch):
    from pydantic import BaseModel, Field

    import pageray.schemas
    from pageray.pipeline.driver.api import resolve_run

    class Slip(BaseModel):
        """A delivery slip."""
        __version__ = "3"
        __max_new_tokens__ = 96
        reference: str = Field(description="the slip's reference")

    loaded = []
    real = pageray.schemas.load_schema
    monkeypatch.setattr(pageray.schemas, "load_schema", lambda spec: loaded.append(spec) or real(spec))
    run = resolve_run(samples / "invoice.pdf", Slip, tmp_path / "out")
    assert loaded == [Slip]  # no schema file written and loaded back
    assert run.schema == real(Slip)  # same id (and budget): re-runs are incremental
    assert (run.config.max_new_tokens, run.budget_from) == (96, "schema")
    assert run.config.extract_settings().max_new_tokens == 96  # what the workers get, resolved
    assert run.config.schema_ref == f"{Slip.__module__}:{Slip.__qualname__}"  # names it in the record
    assert not run.config.document_scope()
    assert resolve_run(samples / "invoice.pdf", Slip, tmp_path / "out", max_new_tokens=40).budget_from == "flag"


def _made_by_hand(out: str, state: str = "succeeded") -> None:
    """An output folder as a run of the built-in transcribe schema leaves it, without Ray."""
    schema = load_schema("transcribe")
    folder = OutputFolder(out)
    claim(folder, schema, SCOPE.model_id, "r1", append=False)
    folder.write_run(RunRecord(run_id="r1", state=state, started_at="2026-01-01T00:00:00+00:00",
                               schema=schema.to_dict() | {"id": schema.id}))
    commit(out, "r1", "/in/a.pdf", [0, 1], size=10, mtime_ns=1)
    commit(out, "r1", "/in/b.pdf", [0], size=20, mtime_ns=2, page_count=1)
    # what readers never match: a killed writer's temporary file
    folder.fs.open_output_stream(f"{folder.data_path}/.part-r1-x.parquet.1234.tmp").close()


def test_read_on_s3_as_arrow_and_pandas(s3_bucket):
    out = "s3://docs/out"
    _made_by_hand(out)
    dataset = read(out)
    assert isinstance(dataset, pads.Dataset)
    assert dataset.schema.field("fields").type == pa.struct([pa.field("text", pa.string())])
    assert sorted(dataset.to_table(columns=["source_uri", "page_index"]).to_pylist(),
                  key=lambda r: (r["source_uri"], r["page_index"])) == [
        {"source_uri": "/in/a.pdf", "page_index": 0}, {"source_uri": "/in/a.pdf", "page_index": 1},
        {"source_uri": "/in/b.pdf", "page_index": 0}]
    df = read(out, as_="pandas")
    assert len(df) == 3 and str(df["page_index"].dtype) == "int32[pyarrow]"


def test_read_warns_while_a_run_is_unfinished_and_refuses_what_is_no_output(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    _made_by_hand(out, state="compacting")  # its heartbeat stopped in 2026-01-01: "died?"
    with pytest.warns(UserWarning, match="newest created_at is current"):
        assert read(out).count_rows() == 3
    with pytest.raises(ValueError, match="arrow, pandas, polars"):
        read(out, as_="csv")
    monkeypatch.setitem(sys.modules, "polars", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install polars"), pytest.warns(UserWarning):
        read(out, as_="polars")
    with pytest.raises(Exception, match="not a pageray output folder"):
        read(tmp_path / "nothing-here")


def test_read_warns_while_a_merge_is_unfinished(tmp_path):
    out = str(tmp_path / "out")
    _made_by_hand(out, state="succeeded")
    OutputFolder(out).write_json("_compact/part-m1-0.parquet.json", {"target": "part-m1-0.parquet", "sources": []})
    with pytest.warns(UserWarning, match="merge of small part files is under way"):
        read(out)


@pytest.mark.slow
def test_extract_with_a_builtin_name_then_read_shows_only_the_newest_version(ray_local, samples, tiny_model, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("invoice.pdf", "receipt.pdf"):
        shutil.copy(samples / name, inbox / name)
    first = extract(inbox, schema="transcribe", out=out, model=tiny_model, **CHEAP)
    assert first["state"] == "succeeded" and first["plan"]["new"] == 2
    assert first["config"]["schema_ref"] == "transcribe"  # the record the CLI writes
    before = read(out).to_table().to_pylist()
    assert len(before) == first["pages"] == 2

    shutil.copy(samples / "paper_first_page.pdf", inbox / "receipt.pdf")  # same path, new content
    os.utime(inbox / "receipt.pdf", ns=(time.time_ns(), time.time_ns()))
    second = extract([str(inbox)], schema="transcribe", out=str(out), model=str(tiny_model), **CHEAP)
    assert (second["plan"]["changed"], second["plan"]["skipped"]) == (1, 1)
    after = {Path(r["source_uri"]).name: r for r in read(out).to_table().to_pylist()}
    assert len(after) == read(out).count_rows() == 2, "one current row per page"
    assert after["invoice.pdf"]["run_id"] == first["run_id"]
    old = next(r for r in before if r["source_uri"].endswith("/receipt.pdf"))
    assert after["receipt.pdf"]["run_id"] == second["run_id"]
    assert after["receipt.pdf"]["doc_sha256"] != old["doc_sha256"]


@pytest.mark.slow
def test_extract_with_a_class_defined_here_and_read_typed_columns(ray_local, samples, tiny_model, tmp_path,
                                                                 monkeypatch):
    from pydantic import BaseModel, Field

    import pageray.schemas

    class Line(BaseModel):
        """One line of the bill."""
        what: str = Field(description="what was bought")
        amount: Optional[float] = Field(None, description="its price")

    class Bill(BaseModel):
        """A bill read from one page."""
        number: str = Field(description="the bill number")
        issued: Optional[datetime.date] = Field(None, description="the date of issue")
        total: float = Field(description="the amount due")
        lines: list[Line] = Field(description="the bill's lines")

    assert "<locals>" in Bill.__qualname__  # no "module:Class" spec could import it
    out = tmp_path / "out"
    loaded = []  # every schema the run loads, in the driver (workers are handed it)
    real = pageray.schemas.load_schema
    monkeypatch.setattr(pageray.schemas, "load_schema", lambda spec: loaded.append(spec) or real(spec))
    record = extract([samples / "invoice.pdf"], schema=Bill, out=out, model=tiny_model, **CHEAP)
    assert record["state"] == "succeeded" and record["pages"] == 1
    assert loaded == [Bill], "the class is loaded once, from itself, and no schema file is loaded back"
    assert record["schema"]["id"] == load_schema(Bill).id and record["schema"]["name"] == "bill"
    assert record["config"]["schema_ref"] == f"{Bill.__module__}:{Bill.__qualname__}"

    df = read(out, as_="pandas")
    assert len(df) == 1
    fields = df["fields"].dtype.pyarrow_dtype
    assert fields.field("total").type == pa.float64() and fields.field("issued").type == pa.date32()
    assert fields.names == ["number", "issued", "total", "lines"]  # the class's order, not sorted
    assert fields.field("lines").type == pa.list_(pa.struct([pa.field("what", pa.string()),
                                                            pa.field("amount", pa.float64())]))
    assert str(df["page_index"].dtype) == "int32[pyarrow]" and str(df["valid"].dtype) == "bool[pyarrow]"
    assert df["fields"].struct.field("total").dtype == "double[pyarrow]"

    again = extract([samples / "invoice.pdf"], schema=Bill, out=out, model=tiny_model, **CHEAP)
    assert again["plan"]["skipped"] == 1 and again["pages"] == 0  # the same class is the same schema
