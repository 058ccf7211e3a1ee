"""`pageray eval` end to end on the generated labeled sample set (pipeline.evaluation.samples):
against an output folder written by hand with known errors (exact scores). Against a real run of
the tiny model it is the README's own commands (tests/test_readme.py, `check_sample_scores`)."""
from __future__ import annotations

import json
import subprocess
from datetime import date, datetime, timezone

import pymupdf
import pytest
from clusters import BIN
from pytest import approx

from pageray.pipeline.config import DEFAULT_MODEL
from pageray.pipeline.datamodel import output_schema, rows_to_table
from pageray.pipeline.evaluation import LabelsError, evaluate, format_table
from pageray.pipeline.evaluation.labels import read_labels
from pageray.pipeline.evaluation.samples import SCHEMAS, write_labeled_samples
from pageray.pipeline.evaluation.scoring import paths
from pageray.pipeline.ledger.folder import OutputFolder
from pageray.pipeline.ledger.records import RunRecord, claim
from pageray.pipeline.storage import doc_id_for
from pageray.schemas import arrow_type, load_schema

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def made_by_hand(out, schema_name: str, rows: list[dict]) -> None:
    """An output folder as a finished run leaves it, rows given as (source_uri, page_index,
    status, fields), without Ray or a model."""
    schema = load_schema(schema_name)
    folder = OutputFolder(str(out))
    claim(folder, schema, DEFAULT_MODEL, "r1", append=False)
    folder.write_run(RunRecord(run_id="r1", state="succeeded", started_at=T0.isoformat(),
                               schema=schema.to_dict() | {"id": schema.id}))
    full = [{"run_id": "r1", "schema_id": schema.id, "schema_name": schema.name, "model_id": DEFAULT_MODEL,
             "doc_id": doc_id_for(r["source_uri"]), "page_count": 2, "valid": r["status"] == "ok",
             "created_at": T0, **r} for r in rows]
    folder.write_part("r1", rows_to_table(full, output_schema(arrow_type(schema))))


def _truth(labeled) -> dict:
    """The labels as typed rows' fields, by (file name, page)."""
    fields = arrow_type(load_schema(labeled.schema))
    return {(label.source, label.page_index): label.fields for label in read_labels(labeled.labels, fields)}


def test_the_sample_set_is_labeled_right_by_construction(tmp_path):
    made = write_labeled_samples(tmp_path)
    assert set(made) == set(SCHEMAS)
    for labeled in made.values():
        for (name, page), fields in _truth(labeled).items():
            with pymupdf.open(labeled.documents / name) as doc:
                words = " ".join(doc[page].get_text().replace(",", "").split())
            for value in _leaves(fields):  # every labeled string and number is printed on its page
                printed = ([f"{value:,.2f}", f"{value:g}"] if isinstance(value, float | int)
                           else [value] if isinstance(value, str) else [])
                assert not printed or value in ("checked", "unchecked") or any(
                    p.replace(",", "") in words for p in printed), (name, page, value)
    again = write_labeled_samples(tmp_path / "again")
    for schema, labeled in made.items():
        assert labeled.labels.read_bytes() == again[schema].labels.read_bytes()
        for pdf in labeled.documents.iterdir():
            assert pdf.read_bytes() == (again[schema].documents / pdf.name).read_bytes(), "byte-identical"


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def test_known_errors_in_invoice_predictions_give_known_scores(tmp_path):
    labeled = write_labeled_samples(tmp_path / "samples", ("invoice",))["invoice"]
    truth = _truth(labeled)
    uri = lambda name: str(labeled.documents / name)  # noqa: E731
    first = dict(truth["invoice-001.pdf", 0])
    first["vendor"] = first["vendor"] | {"name": "HARBOUR TOOLS  LTD."}  # normalised match only
    first["total"] = 290.38  # wrong (280.38)
    first["line_items"] = first["line_items"][::-1]  # read in another order: no loss but list exactness
    second = dict(truth["invoice-002.pdf", 0])
    second["invoice_date"] = date(2024, 2, 4)  # day and month swapped
    second["line_items"] = second["line_items"][:3]  # the last item missed
    out = tmp_path / "out"
    made_by_hand(out, "invoice", [
        {"source_uri": uri("invoice-001.pdf"), "page_index": 0, "status": "ok", "fields": first},
        {"source_uri": uri("invoice-002.pdf"), "page_index": 0, "status": "ok", "fields": second},
        # invoice-002.pdf page 1 has no row: a missing page
        {"source_uri": uri("invoice-003.pdf"), "page_index": 0, "status": "model_error", "fields": None},
        {"source_uri": str(tmp_path / "unlabeled.pdf"), "page_index": 0, "status": "ok", "fields": None},
    ])
    scores = evaluate(labeled.labels, out)

    assert scores["schema"] == {"name": "invoice", "id": load_schema("invoice").id}
    assert (scores["pages"], scores["matched_pages"], scores["ok_pages"]) == (4, 3, 2)
    assert scores["missing"] == [{"line": 3, "source_uri": uri("invoice-002.pdf"), "page_index": 1}]
    assert scores["not_ok"] == [{"line": 4, "source_uri": uri("invoice-003.pdf"), "page_index": 0,
                                 "status": "model_error"}]
    # leaves and errors per page: 24 (1 wrong total), 28 (a wrong date, 4 leaves of the missed item),
    # 20 with 14 non-null (all missed), 20 with 19 non-null (all missed)
    assert [(p["leaves"], p["errors"]) for p in scores["per_page"]] == [(24, 1), (28, 5), (20, 14), (20, 19)]
    assert scores["json_accuracy"] == approx((23 / 24 + 23 / 28 + 6 / 20 + 1 / 20) / 4)
    f = scores["fields"]
    assert list(f) == [p for p in paths(arrow_type(load_schema("invoice")))]
    expect = {  # path: (exact, normalized, anls, tp, fp, fn)
        "invoice_number": (2 / 4, 2 / 4, 2 / 4, 2, 0, 2),
        "invoice_date": (2 / 4, 2 / 4, None, 1, 1, 2),
        "due_date": (1.0, 1.0, None, 2, 0, 0),
        "vendor.name": (1 / 4, 2 / 4, 2 / 4, 2, 0, 2),
        "vendor.address": (3 / 4, 3 / 4, 3 / 4, 2, 0, 1),
        "customer.name": (3 / 4, 3 / 4, 3 / 4, 2, 0, 1),
        "currency": (2 / 4, 2 / 4, 2 / 4, 2, 0, 2),
        "subtotal": (2 / 4, 2 / 4, None, 1, 0, 2),
        "total": (1 / 4, 1 / 4, None, 0, 1, 3),
        "line_items": (0.0, 1 / 4, None, 6, 0, 5),
        "line_items[].description": (6 / 11, 6 / 11, 6 / 11, 6, 0, 5),
        "line_items[].amount": (6 / 11, 6 / 11, None, 6, 0, 5),
    }
    for path, (exact, normalized, anls, tp, fp, fn) in expect.items():
        got = f[path]
        assert (got["exact"], got["normalized"], got["anls"]) == (approx(exact), approx(normalized), anls and
                                                                  approx(anls)), path
        assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, fn), path
    assert f["line_items[].amount"]["support"] == 11 and f["due_date"]["support"] == 4
    assert (f["invoice_date"]["precision"], f["invoice_date"]["recall"], f["invoice_date"]["f1"]) == (
        0.5, approx(1 / 3), approx(0.4))
    assert (f["total"]["precision"], f["total"]["f1"]) == (0.0, 0.0)
    assert scores["micro"] == {"precision": approx(43 / 45), "recall": approx(43 / 82), "f1": approx(86 / 127),
                               "tp": 43, "fp": 2, "fn": 39}
    assert scores["overall"] == {"leaves": 92, "exact": approx(52 / 92), "normalized": approx(53 / 92),
                                 "anls": approx(24 / 39)}
    json.loads(json.dumps(scores, allow_nan=False))

    table = format_table(scores)
    assert "\n| line_items[].amount      | 11 |  54.5 |  54.5 |    - | 100.0 |  54.5 |  70.6 |\n" in table
    assert "\n| micro (all leaves)       | 92 |  56.5 |  57.6 | 61.5 |  95.6 |  52.4 |  67.7 |\n" in table
    assert table.endswith("JSON accuracy 53.2. 4 labeled pages: 3 in the output, 2 ok; missing invoice-002.pdf p1; "
                          "not ok invoice-003.pdf p0 (model_error).")

    # the same through `pageray eval`, which prints the table and writes the scores
    cli = subprocess.run([str(BIN / "pageray"), "eval", str(labeled.labels), str(out), "--json",
                          str(tmp_path / "scores.json")], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert table in cli.stdout
    assert json.loads((tmp_path / "scores.json").read_text())["micro"]["tp"] == 43
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "invoice-001.pdf"}\nnot json\n')
    cli = subprocess.run([str(BIN / "pageray"), "eval", str(bad), str(out)], capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0 and "bad.jsonl:1: missing 'fields'" in cli.stderr


def test_paper_lists_of_strings_and_sources_written_as_paths(tmp_path):
    labeled = write_labeled_samples(tmp_path / "samples", ("paper",))["paper"]
    truth = dict(_truth(labeled)["paper-001.pdf", 0])
    predicted = truth | {"title": truth["title"].upper(), "authors": ["Grace Chen", "Ana Lima"],
                         "doi": "doi:" + truth["doi"]}
    out = tmp_path / "out"
    made_by_hand(out, "paper", [{"source_uri": str(labeled.documents / "paper-001.pdf"), "page_index": 0,
                                 "status": "ok", "fields": predicted}])
    relative = tmp_path / "relative.jsonl"  # the label names the file by a relative path
    relative.write_text(labeled.labels.read_text().replace('"paper-001.pdf"', '"documents/paper-001.pdf"'))
    scores = evaluate(relative, out, schema="paper")
    f = scores["fields"]
    assert (f["authors"]["tp"], f["authors"]["fn"], f["authors[]"]["tp"], f["authors[]"]["fn"]) == (2, 1, 2, 1)
    assert (f["title"]["exact"], f["title"]["normalized"]) == (0.0, 1.0)
    assert f["doi"]["anls"] == approx(1 - 4 / 28) and f["doi"]["normalized"] == 0.0
    assert scores["per_page"][0] | {} == {"line": 1, "source_uri": str(labeled.documents / "paper-001.pdf"),
                                          "page_index": 0, "status": "ok", "leaves": 9, "errors": 2,
                                          "json_accuracy": approx(7 / 9)}
    assert scores["micro"] == {"precision": approx(7 / 8), "recall": approx(7 / 9), "f1": approx(14 / 17),
                               "tp": 7, "fp": 1, "fn": 2}
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"source": "paper-01.pdf", "fields": {"title": "x"}}\n')
    with pytest.raises(LabelsError, match=r"wrong.jsonl:1: no document of .* is 'paper-01.pdf' "
                                          r"\(did you mean 'paper-001.pdf'\?\)"):
        evaluate(wrong, out)
