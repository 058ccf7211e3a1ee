"""`pageray report OUT`: the sections of the page, from the numbers (data, fields) and the
figures, written as one HTML file plus the same figures as PNG files in a folder beside it.

Every section says in words when it has nothing to show (an empty output, a run whose pages all
failed, rows without a text layer), so a report is written for any output folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pageray.pipeline.report import data, figures, html
from pageray.pipeline.report.fields import field_stats

FIGURES = {"status": "Pages by status", "throughput": "Pages/s per worker over time",
           "confidence": "Confidence histogram of ok pages", "fields": "Fill and grounding rate per field",
           "tokens": "Output tokens and truncation", "eval": "Scores against the labels"}


@dataclass(frozen=True)
class Written:
    html: Path
    folder: Path  # the figures as PNG files
    figures: list[Path]


def default_html(run_id: str | None) -> Path:
    return Path(f"pageray-report-{run_id}.html" if run_id else "pageray-report.html")


def figures_dir(html_path: Path) -> Path:
    return html_path.with_name(html_path.stem + "-figures")


def write_report(out: str | os.PathLike, html_path: str | os.PathLike | None = None, run_id: str | None = None,
                 labels: str | os.PathLike | None = None) -> Written:
    """Write the report of the output folder `out` (or of its run `run_id`); with `labels`, also
    the scores of `pageray eval` (pipeline.evaluation.evaluate) against them."""
    loaded = data.load(out, run_id)
    scores = None
    if labels is not None:
        from pageray.pipeline.evaluation import evaluate

        scores = evaluate(labels, os.fspath(out))
    target = Path(html_path) if html_path is not None else default_html(run_id)
    drawn, sections = render(loaded, scores)
    folder = figures_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, png in drawn.items():
        (folder / f"{name}.png").write_bytes(png)
        written.append(folder / f"{name}.png")
    scope = f"run {run_id}" if run_id else "all runs"
    title = f"pageray report: {scope}"
    manifest = loaded.manifest or {}
    meta = [f"output: {loaded.out}", f"schema: {manifest.get('schema_name', '?')} (id {manifest.get('schema_id', '?')})"
            f"; model: {manifest.get('model', '?')}", f"figures as PNG files: {folder}"]
    target.write_text(html.page(title, meta, sections), encoding="utf-8")
    return Written(target, folder, written)


def render(loaded: data.Loaded, scores: dict | None) -> tuple[dict[str, bytes], list[tuple[str, str, str]]]:
    """The figures (name -> PNG) and the sections of the page."""
    current, drawn = loaded.current, {}

    def show(name: str, fig) -> str:
        if fig is None:
            return ""
        drawn[name] = figures.png(fig)
        return html.figure(name, drawn[name], FIGURES[name])

    ok = data.ok_rows(current)
    notes = "".join(html.note(n) for n in loaded.notes)
    sections = [("summary", "Summary", notes + _summary(loaded))]
    if current.empty:
        sections.append(("empty", "Nothing to show", html.empty(
            "This output has no page rows" + (f" for run {loaded.run_id}" if loaded.run_id else "")
            + ", so there are no figures: no run has committed a page yet.")))
    else:
        no_ok = "" if len(ok) else html.empty("No page of this output is ok: every page failed (see the failed "
                                              "documents below), so there is no model output to plot.")
        sections.append(("status", "Status breakdown", show("status", figures.status_figure(data.status_counts(current)))
                         + no_ok))
        starts = {r["run_id"]: pd.Timestamp(r["started_at"]) for r in loaded.runs if r.get("started_at")}
        rates, bin_s = data.throughput(loaded.rows, starts)
        if rates.empty:
            speed = html.empty("No row has a created_at time.")
        else:
            speed = show("throughput", figures.throughput_figure(rates, bin_s)) + html.paragraph(
                "From each row's created_at, stamped when its block of pages is committed (so a worker's rate "
                "comes in bursts), and its worker column, the Ray node id and pid of the extractor that made "
                "it; time runs from the run's started_at.")
        sections.append(("throughput", "Throughput", speed))
        sections.append(("confidence", "Confidence", show("confidence", figures.confidence_figure(
            pd.to_numeric(ok["confidence"]).dropna().to_numpy())) or html.empty("No ok page has a confidence.")))
        sections.append(("fields", "Fields: fill rate and grounding", _fields(loaded, ok, show)))
        sections.append(("tokens", "Output tokens and truncation", _tokens(loaded, current, show)))
    sections.append(("slowest", "Slowest documents", _slowest(current)))
    sections.append(("failed", "Failed documents", _failed(current)))
    if scores is not None:
        sections.append(("eval", "Scores against labels (pageray eval)", _scores(scores, show)))
    sections.append(("config", "Runs and configuration", _runs(loaded)))
    return drawn, sections


def _summary(loaded: data.Loaded) -> str:
    s = data.summary(loaded.current)
    lines = [("pages", s["pages"], html.integer), ("documents", s["documents"], html.integer),
             ("ok pages", s["ok"], html.integer), ("ok share", s["ok_share"], html.share),
             ("truncated pages", s["truncated"], html.integer),
             ("mean confidence (ok)", s["mean_confidence"], html.decimal),
             ("mean grounded fraction (ok)", s["mean_grounded"], html.share),
             ("output tokens (ok)", s["output_tokens"], html.integer), ("runs", len(loaded.runs), html.integer)]
    return html.table([{"what": k, "value": "" if v is None else f(v)} for k, v, f in lines],
                      [("what", "", None), ("value", "", None)])


def _fields(loaded: data.Loaded, ok: pd.DataFrame, show) -> str:
    if loaded.json_schema is None:
        return html.empty("No run record of this output holds its schema, so fields cannot be named.")
    if ok.empty:
        return html.empty("No ok page: no field was filled.")
    from pageray.pipeline.evaluation.scoring import paths

    order = paths(loaded.fields_type) if loaded.fields_type is not None else ()
    answered = ok[ok["fields"].map(lambda v: v is not None)]  # a page read with others may carry no answer
    stats = field_stats(loaded.json_schema, answered["fields"], answered["ungrounded_fields"], order)
    grounded = "" if stats["checked"].any() else html.note(
        "No ok page has a text layer (scans, or rows from before grounding existed), so no value could be "
        "checked against the page: grounding rates are empty, not zero.")
    columns = [("field", "field", None), ("places", "of", html.integer), ("filled", "filled", html.integer),
               ("fill_rate", "fill rate", html.share), ("checked", "checked", html.integer),
               ("grounded", "grounded", html.integer), ("grounding_rate", "grounding rate", html.share)]
    return (show("fields", figures.fields_figure(stats)) + grounded
            + html.paragraph("A list's items are counted per item (line_items[].amount: of all items).")
            + html.table(stats.reset_index(), columns))


def _tokens(loaded: data.Loaded, current: pd.DataFrame, show) -> str:
    ran = current[current["output_tokens"].notna()]
    if ran.empty:
        return html.empty("No page ran the model, so there are no output tokens.")
    budgets = {r["config"].get("max_new_tokens") for r in loaded.runs if (r.get("config") or {}).get("max_new_tokens")}
    budget = budgets.pop() if len(budgets) == 1 else None
    cut = data.truncation(current)
    columns = [("status", "status", None), ("rows", "pages", html.integer), ("truncated", "truncated", html.integer),
               ("share", "share", html.share)]
    return (show("tokens", figures.tokens_figure(ran, cut, budget))
            + html.paragraph("Truncated pages ran out of output budget (--max-new-tokens) or time and were closed "
                             "validly; raise the budget if many are.")
            + html.table(cut.reset_index(), columns))


def _slowest(current: pd.DataFrame) -> str:
    slow = data.slowest_documents(current)
    if slow.empty:
        return html.empty("No documents.")
    return html.table(slow, [("source_uri", "document", None), ("pages", "pages", html.integer),
                             ("render_s", "render s", html.decimal), ("extract_s", "extract s", html.decimal),
                             ("total_s", "total s", html.decimal), ("statuses", "statuses", None)])


def _failed(current: pd.DataFrame, limit: int = 200) -> str:
    failed = data.failed_documents(current)
    if failed.empty:
        return html.empty("No document has a failed page.")
    shown = html.paragraph(f"{len(failed)} documents with failed pages" + (
        f"; the first {limit} shown" if len(failed) > limit else "") + ".")
    return shown + html.table(failed.head(limit), [
        ("source_uri", "document", None), ("failed", "failed pages", html.integer), ("pages", "pages", html.integer),
        ("statuses", "statuses", None), ("error", "error", html.clip(600))])


def _scores(scores: dict, show) -> str:
    from pageray.pipeline.evaluation import format_table

    return (show("eval", figures.eval_figure(scores))
            + html.paragraph("Scored by pipeline.evaluation (as `pageray eval` does) on the folder's current rows.")
            + html.preformatted(format_table(scores)))


def _runs(loaded: data.Loaded) -> str:
    if not loaded.runs:
        return html.empty("No run record.")
    rows = [{"run_id": r.get("run_id"), "state": r.get("state"), "started_at": r.get("started_at"),
             "wall_s": r.get("wall_s"), "pages": r.get("pages"), "pages_per_s": r.get("pages_per_s"),
             "truncated": r.get("truncated"), "counts": ", ".join(f"{k} {v}" for k, v in (r.get("counts") or {}).items()),
             # where the extractors' time went (pipeline.driver.decode_counts); older records have none
             **{f"decode_{k}": v for k, v in (r.get("decode") or {}).items()}}
            for r in loaded.runs]
    table = html.table(rows, [("run_id", "run", None), ("state", "state", None), ("started_at", "started", None),
                              ("wall_s", "wall s", html.decimal), ("pages", "pages", html.integer),
                              ("pages_per_s", "pages/s", html.decimal), ("truncated", "truncated", html.integer),
                              ("decode_engine", "engine", None), ("decode_steps", "decode steps", html.integer),
                              ("decode_steps_per_page", "steps/page", html.decimal),
                              ("decode_occupancy", "occupancy", html.share), ("counts", "by status", None)])
    configs = "".join(html.details(f"config of run {r.get('run_id')}", html.code(
        {"config": r.get("config"), "decode": r.get("decode"), "versions": r.get("versions"),
         "notes": r.get("notes")}))
        for r in reversed(loaded.runs))
    return table + configs
