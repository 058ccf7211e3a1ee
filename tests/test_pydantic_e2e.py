"""A Pydantic model as users write it (optional fields, a nested model, an enum, a Literal, dates,
datetimes, times, a UUID, lists of models, numeric, length and item-count constraints, a pattern)
through load -> prompt -> grammar -> the tiny model -> Parquet: as `models.py:Class` over the
samples with `pageray extract` and with `ray job submit`, which write the same rows (the job's entry
point is the CLI's run; tests/test_job_submit.py's runtime-env test is the other job test), and over
one invoice as a raw `model_json_schema()` file with `ray job submit` (whose entry point runs the
CLI's own code in the job's driver, where the schema is loaded; the class runs show both ways
write the same rows), all on the session's cluster.
DuckDB checks each column's type and that every ok row honours every constraint, truncated rows
included (the budget is small, so most rows are closed by the forced completion)."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import textwrap

import duckdb
import jsonschema
import pytest
from cheap import SMALL_RENDER_FLAGS
from clusters import BIN, submit_job

pytestmark = pytest.mark.slow

MODELS = textwrap.dedent('''
    """Invoices as a data team models them."""
    import datetime
    import enum
    import uuid
    from typing import List, Literal, Optional

    from pydantic import BaseModel, Field


    class Currency(str, enum.Enum):
        EUR = "EUR"
        USD = "USD"


    class Vendor(BaseModel):
        name: str = Field(max_length=40, description="Seller's name as printed.")
        country: Optional[str] = Field(None, pattern=r"^[A-Z]{2}$", description="ISO country code.")


    class LineItem(BaseModel):
        description: str = Field(description="What was sold.")
        quantity: int = Field(ge=1, le=1000, description="How many.")
        amount: float = Field(ge=0, description="Line total.")


    class Invoice(BaseModel):
        """An invoice page: who sold what, when, for how much."""

        number: str = Field(pattern=r"^[A-Z]{2}-[0-9]{3,6}$", description="Invoice number.")
        kind: Literal["invoice", "credit_note"] = Field(description="Document kind.")
        vendor: Vendor
        currency: Optional[Currency] = Field(None, description="Currency of the amounts.")
        issued: Optional[datetime.date] = Field(None, description="Issue date.")
        printed_at: Optional[datetime.datetime] = Field(None, description="Timestamp printed.")
        opens_at: Optional[datetime.time] = Field(None, description="Shop opening time.")
        reference: Optional[uuid.UUID] = Field(None, description="Payment reference.")
        items: List[LineItem] = Field(min_length=1, max_length=4, description="Line items.")
        total: float = Field(gt=0, description="Grand total.")
        status: Literal["draft", "final"] = Field("final", description="Draft or final.")
        paid: bool = Field(False, description="Marked as paid.")
        notes: List[str] = Field(default_factory=list, description="Handwritten notes.")
''')

COLUMNS = ("select fields.number as number, fields.kind as kind, fields.vendor as vendor, "
           "fields.currency as currency, fields.issued as issued, fields.printed_at as printed_at, "
           "fields.opens_at as opens_at, fields.reference as reference, fields.items as items, "
           "fields.total as total from read_parquet('{out}/data/*.parquet') where status = 'ok'")
TYPES = {"number": "VARCHAR", "kind": "VARCHAR", "currency": "VARCHAR", "issued": "DATE",
         "printed_at": "TIMESTAMP WITH TIME ZONE", "opens_at": "TIME", "reference": "VARCHAR",
         "total": "DOUBLE", "vendor": "STRUCT(\"name\" VARCHAR, country VARCHAR)",
         "items": "STRUCT(description VARCHAR, quantity INTEGER, amount DOUBLE)[]"}


def check_output(out, model):
    """Each column's type and constraints, and that every ok row (truncated ones included) is
    an instance of the user's class and of its JSON Schema, defaults where the model wrote none."""
    con = duckdb.connect()
    answers = con.sql(f"select raw_text, valid, fields.status, fields.paid from read_parquet('{out}/data/*.parquet') "
                      "where status = 'ok' or truncated").fetchall()
    for raw, valid, status, paid in answers:
        value = json.loads(raw, strict=False)
        assert valid, raw
        model.model_validate(value)
        jsonschema.validate(value, model.model_json_schema())
        assert status == value.get("status", "final") and paid is value.get("paid", False)
    query = COLUMNS.format(out=out)
    assert dict(con.sql(f"select column_name, column_type from (describe {query})").fetchall()) == TYPES
    rows = con.sql(query).fetchall()
    assert rows, "the tiny model must give ok rows"
    for number, kind, vendor, currency, _, _, _, reference, items, total in rows:
        assert re.fullmatch(r"[A-Z]{2}-[0-9]{3,6}", number) and kind in ("invoice", "credit_note")
        assert len(vendor["name"]) <= 40
        assert vendor["country"] is None or re.fullmatch(r"[A-Z]{2}", vendor["country"])
        assert currency in (None, "EUR", "USD")
        assert reference is None or re.fullmatch(r"[0-9a-fA-F-]{36}", reference)
        assert 1 <= len(items) <= 4 and total > 0
        assert all(1 <= i["quantity"] <= 1000 and i["amount"] >= 0 for i in items)
    truncated = con.sql(f"select count(*) from read_parquet('{out}/data/*.parquet') "
                        "where status = 'ok' and truncated").fetchall()[0][0]
    return len(rows), truncated


def pages(out):
    return duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{out}/data/*.parquet') "
                      "order by all").fetchall()


def _import(path):
    spec = importlib.util.spec_from_file_location("e2e_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def models(tmp_path):
    (tmp_path / "models.py").write_text(MODELS, encoding="utf-8")
    return tmp_path / "models.py"


def test_a_pydantic_class_and_its_raw_json_schema_run_end_to_end(ray_head, models, samples, tiny_model, tmp_path):
    flags = [str(samples), "--model", str(tiny_model), "--max-new-tokens", "48", "--batch-size", "4",
             *SMALL_RENDER_FLAGS]
    local = subprocess.run([str(BIN / "pageray"), "extract", *flags, "--schema", f"{models}:Invoice",
                            "--out", str(tmp_path / "class-out")],
                           env=ray_head.driver_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    dumped = subprocess.run([str(BIN / "python"), "-c", "import json, models; print(json.dumps("
                             "models.Invoice.model_json_schema()))"],
                            capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    raw = tmp_path / "invoice.json"
    raw.write_text(dumped, encoding="utf-8")
    assert "$defs" in json.loads(dumped) and "anyOf" in dumped
    one = tmp_path / "one"
    one.mkdir()
    (one / "invoice.pdf").write_bytes((samples / "invoice.pdf").read_bytes())
    small = [str(one), *flags[1:]]
    job, status = submit_job(ray_head, [*small, "--schema", str(raw), "--out", str(tmp_path / "json-out")])
    assert job.returncode == 0 and status == "SUCCEEDED", status + job.stdout[-3000:] + job.stderr[-3000:]
    job, status = submit_job(ray_head, [*flags, "--schema", f"{models}:Invoice", "--out", str(tmp_path / "class-job")])
    assert job.returncode == 0 and status == "SUCCEEDED", status + job.stdout[-3000:] + job.stderr[-3000:]
    # `ray job submit` writes what `pageray extract` joining the same cluster writes, page for page
    assert pages(tmp_path / "class-job") == pages(tmp_path / "class-out")
    assert any(row[2] == "ok" for row in pages(tmp_path / "class-job"))
    invoice = _import(models).Invoice
    ok, truncated = check_output(tmp_path / "class-out", invoice)
    assert truncated, "a small budget must exercise the constrained forced completion"
    check_output(tmp_path / "json-out", invoice)
    check_output(tmp_path / "class-job", invoice)
