"""`pageray eval LABELS OUT` as a library call: evaluate() scores, format_table() prints.

Why apart from the CLI: a notebook, a test or a CI gate ("fail if micro F1 drops below 0.9")
needs the same numbers as the command, as a plain dict that json.dumps writes as it is. The
definitions of every number are in pipeline.evaluation.scoring; the labels format in
pipeline.evaluation.labels; how labels find their rows in pipeline.evaluation.predictions.

evaluate() opens the output (its manifest and run records, which give the schema's Arrow type),
checks every label against that type and resolves every label's source before it reads a row
(a labels problem is refused at once), then reads the current rows of the labeled documents
only, and scores each labeled page.
"""
from __future__ import annotations

import os
from typing import Any

from pageray.pipeline.datamodel import Status
from pageray.pipeline.evaluation.labels import read_labels
from pageray.pipeline.evaluation.predictions import predictions
from pageray.pipeline.evaluation.scoring import Scorer


def evaluate(labels_path: str | os.PathLike, out: str | os.PathLike, *, schema: Any = None) -> dict:
    """Score the rows of the output folder `out` against the labels file `labels_path`.

    `schema` is as for pipeline.api.read (by default the one the folder was made with). Returns
    {"schema", "labels", "out", "pages", "matched_pages", "ok_pages", "missing", "not_ok",
    "fields", "micro", "overall", "json_accuracy", "per_page"} (scoring's docstring defines
    them); every value is JSON (floats, ints, strings, null)."""
    from pageray.pipeline.driver.api import read
    from pageray.pipeline.ledger.folder import OutputFolder

    labels_name, out_name = os.fspath(labels_path), os.fspath(out)
    dataset = read(out_name, as_="arrow", schema=schema)  # refuses what is no output folder
    fields_type = dataset.schema.field("fields").type
    labels = read_labels(labels_name, fields_type)
    if schema is None:
        manifest = OutputFolder(out_name).manifest() or {}
        named = {"name": manifest.get("schema_name"), "id": manifest.get("schema_id")}
    else:
        from pageray.schemas import ExtractionSchema, load_schema

        resolved = schema if isinstance(schema, ExtractionSchema) else load_schema(
            os.fspath(schema) if isinstance(schema, os.PathLike) else schema)
        named = {"name": resolved.name, "id": resolved.id}
    scorer = Scorer(fields_type)
    missing, not_ok, per_page = [], [], []
    for found in predictions(labels, dataset, labels_name, out_name):
        label, row = found.label, found.row
        where = {"line": label.line, "source_uri": found.source_uri, "page_index": label.page_index}
        status = row["status"] if row is not None else None
        if row is None:
            missing.append(where)
        elif status != Status.OK:
            not_ok.append(where | {"status": status})
        predicted = row["fields"] if status == Status.OK else None
        per_page.append(where | {"status": status} | scorer.page(label.fields, predicted))
    return {"schema": named, "labels": labels_name, "out": out_name,
            "pages": len(labels), "matched_pages": len(labels) - len(missing),
            "ok_pages": len(labels) - len(missing) - len(not_ok), "missing": missing, "not_ok": not_ok,
            **scorer.scores(), "per_page": per_page}


def format_table(scores: dict) -> str:
    """The scores as an aligned Markdown table (one row per field, then micro and overall),
    with the page counts and JSON accuracy under it: readable in a terminal, pasteable into a
    report as it is. A score that is not defined for a row prints as '-'."""
    head = ["field", "n", "exact", "norm", "ANLS", "P", "R", "F1"]
    body = [[path, str(f["support"]), *(_pct(f[k]) for k in ("exact", "normalized", "anls", "precision",
                                                                "recall", "f1"))]
            for path, f in scores["fields"].items()]
    micro, overall = scores["micro"], scores["overall"]
    body.append(["micro (all leaves)", str(overall["leaves"]), _pct(overall["exact"]), _pct(overall["normalized"]),
                 _pct(overall["anls"]), _pct(micro["precision"]), _pct(micro["recall"]), _pct(micro["f1"])])
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    lines = [line(head), rule] + [line(row) for row in body]
    pages = (f"{scores['pages']} labeled pages: {scores['matched_pages']} in the output, {scores['ok_pages']} ok"
             + (f"; missing {_pages(scores['missing'])}" if scores["missing"] else "")
             + (f"; not ok {_pages(scores['not_ok'])}" if scores["not_ok"] else ""))
    notes = ("Scores in percent; n is the number of labeled values (for a list, of labeled lists, its P/R/F1 "
             "counted per item).")
    return "\n".join(lines + ["", notes, f"JSON accuracy {_pct(scores['json_accuracy'])}. {pages}."])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _pages(pages: list[dict], limit: int = 3) -> str:
    named = [f"{os.path.basename(p['source_uri'])} p{p['page_index']}" + (f" ({p['status']})" if "status" in p else "")
             for p in pages[:limit]]
    return ", ".join(named) + (f" and {len(pages) - limit} more" if len(pages) > limit else "")
