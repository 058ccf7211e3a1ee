"""`pageray` command line: parse flags, build a validated config, call the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pageray.extractors.batching import CPU_BATCH
from pageray.pipeline.config import default, flag
from pageray.pipeline.errors import FatalError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PDF folders -> Idefics2 on Ray -> typed Parquet")
schemas_app = typer.Typer(no_args_is_help=True, help="Built-in and user extraction schemas")
model_app = typer.Typer(no_args_is_help=True, help="Model utilities")
app.add_typer(schemas_app, name="schemas")
app.add_typer(model_app, name="model")


def fail(exc: BaseException | str) -> None:
    typer.secho(f"pageray: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def print_summary(record: dict) -> None:
    counts = record.get("counts", {})
    plan = record.get("plan", {})
    typer.echo(f"run {record['run_id']}: {record['state']} in {record.get('wall_s')} s")
    kinds = ", ".join(f"{kind} {plan.get(kind, 0)}" for kind in ("new", "changed", "resumed", "retried", "forced",
                                                                  "skipped"))
    typer.echo(f"  documents: {kinds}; with errors {record.get('documents_with_errors', 0)}")
    if plan.get("passed_over"):
        typer.echo(f"  passed over by the listing: {json.dumps(plan['passed_over'], sort_keys=True)}")
    typer.echo(f"  pages: {record.get('pages', 0)}  by status: {json.dumps(counts, sort_keys=True)}"
               f"  truncated: {record.get('truncated', 0)}")
    decode = record.get("decode") or {}
    if decode.get("steps"):  # where the extractors' time went (pipeline.driver.decode_counts)
        typer.echo(f"  decode ({decode['engine']}): {decode['steps']} steps, {decode['steps_per_page']} per page, "
                   f"occupancy {decode['occupancy']:.0%}")
    for note in record.get("notes", []):
        typer.echo(f"  {note}")
    typer.echo(f"  pages/s: {record.get('pages_per_s')}  output: {record['config']['out']}")


# Typer prints a type beside every option, flags too ("--force <bool>"), which reads as if a flag
# took a value (and `--force true` then reads "true" as an input): a flag's metavar is empty.
FLAG = ""


def _option(field: str, help: str, **kw):
    """A `pageray extract` option for a RunConfig field: its flag and default come from the config;
    not given, it is None and the config's default applies."""
    shown = default(field)
    if isinstance(shown, bool):
        kw.setdefault("metavar", FLAG)
    return typer.Option(None, flag(field), help=help + ("" if shown in (None, False, []) else f" (default {shown})"), **kw)


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None and v != []}


@app.command()
def extract(
    inputs: Optional[List[str]] = typer.Argument(None, help="PDF/image files, folders or s3:// prefixes"),
    schema_ref: Optional[str] = typer.Option(None, flag("schema_ref"), help="built-in name (see `pageray schemas list`), a YAML/JSON schema file (plain JSON Schema too), or a Pydantic model: models.py:Class or package.module:Class"),
    out: Optional[str] = typer.Option(None, "--out", help="output folder or s3:// prefix"),
    config_file: Optional[str] = typer.Option(None, "--config", metavar="FILE",
                                              help="YAML/JSON file of options (keys: the options' names, e.g. "
                                              "batch_size, or their flags); flags given here override it"),
    verbose: bool = typer.Option(False, "--verbose", metavar=FLAG, help="also show Ray's own log lines (always kept in Ray's "
                                 "log folder); does not change the run"),
    model: Optional[str] = _option("model", "hub id or local folder with Idefics2 weights"),
    batch_size: Optional[str] = _option("batch_size", "pages per model batch, or auto (fit the GPU's free memory; "
                                        f"{CPU_BATCH} on CPU)"),
    scope: Optional[str] = _option("scope", "page|document: also write one row per document to OUT/documents/ "
                                   "(default: document for invoice, receipt, paper, form)"),
    document_mode: Optional[str] = _option("document_mode", "merge|multi_image: document rows merged from per-page "
                                           "answers, or short documents read in one prompt with all their pages"),
    multi_image_max_pages: Optional[int] = _option("multi_image_max_pages", "longest document read in one prompt; "
                                                   "longer ones are merged (default: what fits the context)"),
    max_new_tokens: Optional[int] = _option("max_new_tokens", "output budget per page (default: from the schema)"),
    dtype: Optional[str] = _option("dtype", "auto|bfloat16|float16|float32"),
    quantize: Optional[str] = _option("quantize", "4bit|8bit (bitsandbytes, GPU only)"),
    attn_implementation: Optional[str] = _option("attn_implementation", "auto|sdpa|flash_attention_2|eager"),
    split_images: Optional[bool] = typer.Option(None, f"--split/{flag('split_images')}", metavar=FLAG,
                                                help="4 crops + the page per image (default), or one 980px image"),
    actors: Optional[int] = _option("actors", "extractor actors (default: one per GPU, 1 on CPU)"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="name of this run's record and part files "
                                         "(default: the UTC time and a random suffix)"),
    force: Optional[bool] = _option("force", "recompute documents already in the output"),
    prune: Optional[bool] = _option("prune", "drop rows of documents under INPUTS no longer listed"),
    wait: Optional[bool] = _option("wait", "wait for a live run on the same output instead of refusing"),
    lease_timeout_s: Optional[float] = _option("lease_timeout_s", "seconds without a heartbeat after which another "
                                               "run may take the output folder over (this run is then fenced)"),
    append: Optional[bool] = _option("append", "allow adding to an output made with another schema/model"),
    follow_symlinks: Optional[bool] = _option("follow_symlinks", "list files behind symlinks too"),
    max_pages_per_doc: Optional[int] = _option("max_pages_per_doc", "later pages become page_skipped rows"),
    longest_edge_px: Optional[int] = _option("longest_edge_px", "render size: longest page side in px"),
    max_page_pixels: Optional[int] = _option("max_page_pixels", "pixel cap for odd page shapes"),
    max_file_bytes: Optional[int] = _option("max_file_bytes", "larger files: file_too_large"),
    render_timeout_s: Optional[float] = _option("render_timeout_s", "seconds per document render"),
    render_memory_mb: Optional[int] = _option("render_memory_mb", "address-space cap of a render child"),
    render_retries: Optional[int] = _option("render_retries", "retries after a render crash"),
    passwords: Optional[str] = _option("passwords", "file of passwords to try on encrypted PDFs: one per line, or "
                                       "YAML/JSON mapping file names or globs to passwords; only its path is recorded",
                                       metavar="FILE"),
    page_time_limit_s: Optional[float] = _option("page_time_limit_s", "seconds of generation per batch"),
    engine: Optional[str] = _option("engine", "static|continuous: decode in static batches, or keep every decode "
                                    "slot busy by refilling it as a page finishes"),
    retry: List[str] = _option("retry", "a final status to redo this run, e.g. render_timeout after raising "
                               "--render-timeout (repeatable)"),
) -> None:
    """Extract one typed row per page into OUT/data/*.parquet."""
    values = _given(**{k: v for k, v in locals().items() if k not in ("config_file", "verbose")})
    from pageray.pipeline.driver.api import extract as run
    from pageray.pipeline.app.config_file import load_config_file, resolve_options
    from pageray.pipeline.driver.ray_logs import set_verbose

    set_verbose(verbose)
    for path in inputs or []:  # `--force true`: the flag takes no value, so "true" came here as an input
        if path.lower() in ("true", "false") and not Path(path).exists():
            fail(f"input {path!r} does not exist; flags take no value: write --force, not --force {path}")
    try:  # the Python API's extract(): one config, validated before any work, for both
        # pipeline.config_file: the --config file's options, the flags given over them
        values = resolve_options(load_config_file(config_file) if config_file else {}, values, config_file)
        record = run(values.pop("inputs"), schema=values.pop("schema_ref"), out=values.pop("out"), **values)
    except (FatalError, ValueError) as exc:
        fail(exc)
    print_summary(record)


@app.command()
def plan(
    inputs: Optional[List[str]] = typer.Argument(None, help="files, folders or s3:// prefixes"),
    out: Optional[str] = typer.Option(None, "--out", help="the output folder or s3:// prefix extract would write"),
    config_file: Optional[str] = typer.Option(None, "--config", metavar="FILE",
                                              help="the YAML/JSON options file of `pageray extract --config`; "
                                              "flags given here override it"),
    schema_ref: Optional[str] = typer.Option(None, flag("schema_ref"), help="default: the one the output folder was made with"),
    model: Optional[str] = typer.Option(None, "--model", help="default: the one the output folder was made with"),
    force: Optional[bool] = _option("force", "recompute documents already in the output"),
    append: Optional[bool] = _option("append", "allow adding to an output made with another schema/model"),
    follow_symlinks: Optional[bool] = _option("follow_symlinks", "list files behind symlinks too"),
    retry: List[str] = _option("retry", "a final status to redo (repeatable)"),
    max_pages_per_doc: Optional[int] = _option("max_pages_per_doc", "later pages become page_skipped rows"),
    max_file_bytes: Optional[int] = _option("max_file_bytes", "larger files: file_too_large"),
) -> None:
    """Dry run: what `extract` would do (documents, estimated pages, skipped, shards). Writes nothing."""
    from pageray.pipeline.app.config_file import load_config_file, resolve_options
    from pageray.pipeline.ledger.plan import dry_run

    options = _given(inputs=inputs, out=out, schema_ref=schema_ref, model=model, force=force, append=append,
                     follow_symlinks=follow_symlinks, retry=retry, max_pages_per_doc=max_pages_per_doc,
                     max_file_bytes=max_file_bytes)
    try:  # a --config file's options, as extract reads them; schema and model default to the folder's
        options = resolve_options(load_config_file(config_file) if config_file else {}, options, config_file,
                                  required=("inputs", "out"))
        summary = dry_run(options.pop("inputs"), options.pop("out"), options.pop("schema_ref", None),
                          options.pop("model", None), **options)
    except (FatalError, ValueError) as exc:
        fail(exc)
    typer.echo(json.dumps(summary, indent=2))


@schemas_app.command("list")
def schemas_list() -> None:
    """The built-in schemas: name, version, id and description."""
    from pageray.schemas import list_builtin, load_schema

    for name in list_builtin():
        s = load_schema(name)
        typer.echo(f"{name:<12} v{s.version}  {s.id}  {s.description}")


@schemas_app.command("show")
def schemas_show(name: str = typer.Argument(..., help="a built-in name, a schema file or models.py:Class")) -> None:
    """A schema's fields, types and output budget."""
    from pageray.schemas import load_schema, schema_summary

    try:
        typer.echo(schema_summary(load_schema(name)))
    except ValueError as exc:
        fail(exc)


@model_app.command("tiny")
def model_tiny(out: Path = typer.Option(..., "--out", help="the folder to write it to (pass it as --model)"),
               seed: int = typer.Option(0, "--seed", help="seed of its random weights")) -> None:
    """Build the offline tiny Idefics2 (random weights) used by tests and the demo."""
    from pageray.extractors.model.tiny import build_tiny_model

    typer.echo(f"tiny Idefics2 written to {build_tiny_model(out, seed=seed)}")


@app.command()
def demo(workdir: Path = typer.Option(Path("pageray-demo"), "--workdir", help="folder for the samples, the "
                                      "tiny model and the output"),
         model: Optional[str] = typer.Option(None, "--model", help="default: build the tiny offline model"),
         verbose: bool = typer.Option(False, "--verbose", metavar=FLAG, help="also show Ray's own log lines")) -> None:
    """Make sample documents, build the tiny model if needed, run the pipeline, print a summary."""
    from pageray.pipeline.app.demo import run_demo
    from pageray.pipeline.driver.ray_logs import set_verbose

    set_verbose(verbose)
    try:
        run_demo(workdir, model, echo=typer.echo)
    except (FatalError, ValueError) as exc:
        fail(exc)


@app.command()
def status(out: str = typer.Argument(..., help="an output folder")) -> None:
    """Summarise every run recorded in an output folder."""
    from pageray.pipeline.ledger.status import describe_runs

    try:
        typer.echo(describe_runs(out))
    except FatalError as exc:
        fail(exc)


@app.command("eval")
def evaluate(labels: Path = typer.Argument(..., help="labels, JSON Lines: {source, page_index, fields}"),
             out: str = typer.Argument(..., help="the output folder of a run over the labeled documents"),
             schema: Optional[str] = typer.Option(None, "--schema", help="default: the folder's"),
             json_path: Optional[Path] = typer.Option(None, "--json", help="also write the scores here")) -> None:
    """Score the current rows of OUT against labels: per field and overall (pipeline.evaluation)."""
    import json

    from pageray.pipeline.evaluation import evaluate as score, format_table

    try:
        scores = score(labels, out, schema=schema)
    except (FatalError, ValueError) as exc:
        fail(exc)
    typer.echo(format_table(scores))
    if json_path:
        json_path.write_text(json.dumps(scores, indent=2, allow_nan=False) + "\n", encoding="utf-8")


@app.command()
def report(out: str = typer.Argument(..., help="an output folder or s3:// prefix"),
           html: Optional[Path] = typer.Option(None, "--html", help="the page to write (default: "
                                               "./pageray-report[-RUN].html); its figures go to a folder beside it"),
           run: Optional[str] = typer.Option(None, "--run", help="one run's rows and record (default: the whole folder)"),
           labels: Optional[Path] = typer.Option(None, "--labels", help="also score against these labels, as "
                                                 "`pageray eval` does")) -> None:
    """One self-contained HTML page of a run or the whole folder, plus its figures as PNG files."""
    from pageray.pipeline.report import write_report

    try:
        written = write_report(out, html, run, labels)
    except (FatalError, ValueError) as exc:
        fail(exc)
    typer.echo(f"report: {written.html} ({len(written.figures)} figures, also as PNG files in {written.folder})")


@app.command()
def compact(out: str = typer.Argument(..., help="an output folder or s3:// prefix"),
            target_mb: Optional[int] = typer.Option(None, "--target-mb", min=1,
                                                    help="size of a merged file (default: 128)"),
            target_rows: Optional[int] = typer.Option(None, "--target-rows", min=1,
                                                      help="rows of a merged file (default: 100000)"),
            wait: bool = typer.Option(False, "--wait", metavar=FLAG, help="wait for a run that holds the folder"),
            lease_timeout: Optional[float] = typer.Option(None, flag("lease_timeout_s"), min=1,
                                                          help="seconds without a heartbeat after which another "
                                                          f"run may take the folder over (default {default('lease_timeout_s'):g})"),
            ) -> None:
    """Merge small part files into large ones (each run also does it when it ends)."""
    from pageray.pipeline.ledger.merge import compact as merge, describe

    targets = {k: v for k, v in (("target_bytes", target_mb and target_mb * 2**20),
                                 ("target_rows", target_rows)) if v}
    try:
        typer.echo(describe(merge(out, wait=wait, log=typer.echo, lease_timeout_s=lease_timeout, **targets)))
    except FatalError as exc:
        fail(exc)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Baseline (model-card recipe) vs pageray's extractor, same device/pages/model; table printed last.
    `pageray bench --help` lists the options (those of benchmarks/bench_extract.py)."""
    from pageray.pipeline.bench.cli import main as bench_main

    raise typer.Exit(bench_main(ctx.args, prog="pageray bench"))


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
