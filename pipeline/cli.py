"""`pageray` command line: parse flags, build a validated config, call the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.config import DEFAULT_MODEL, RunConfig
from pipeline.errors import FatalError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PDF folders -> Idefics2 on Ray -> typed Parquet")
schemas_app = typer.Typer(no_args_is_help=True, help="Built-in and user extraction schemas")
model_app = typer.Typer(no_args_is_help=True, help="Model utilities")
app.add_typer(schemas_app, name="schemas")
app.add_typer(model_app, name="model")


def fail(exc: BaseException) -> None:
    typer.secho(f"pageray: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def print_summary(record: dict) -> None:
    counts = record.get("counts", {})
    plan = record.get("plan", {})
    typer.echo(f"run {record['run_id']}: {record['state']} in {record.get('wall_s')} s")
    typer.echo(f"  documents: new {plan.get('new', 0)}, changed {plan.get('changed', 0)}, resumed "
               f"{plan.get('resumed', 0)}, forced {plan.get('forced', 0)}, skipped {plan.get('skipped', 0)}; "
               f"with errors {record.get('documents_with_errors', 0)}")
    typer.echo(f"  pages: {record.get('pages', 0)}  by status: {json.dumps(counts, sort_keys=True)}")
    typer.echo(f"  pages/s: {record.get('pages_per_s')}  output: {record['config']['out']}")


@app.command()
def extract(
    inputs: List[str] = typer.Argument(..., help="PDF/image files, folders or s3:// prefixes"),
    schema: str = typer.Option(..., "--schema", help="built-in name (see `pageray schemas list`) or YAML/JSON file"),
    out: str = typer.Option(..., "--out", help="output folder or s3:// prefix"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="hub id or local folder with Idefics2 weights"),
    batch_size: int = typer.Option(8, "--batch-size", help="pages per generate() call"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens"),
    dtype: str = typer.Option("auto", "--dtype", help="auto|bfloat16|float16|float32"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="4bit|8bit (bitsandbytes, GPU only)"),
    attn: str = typer.Option("auto", "--attn", help="auto|sdpa|flash_attention_2|eager"),
    no_split: bool = typer.Option(False, "--no-split", help="one 980px image per page instead of 4 crops + page"),
    actors: Optional[int] = typer.Option(None, "--actors", help="extractor actors (default: one per GPU, 1 on CPU)"),
    run_id: Optional[str] = typer.Option(None, "--run-id"),
    force: bool = typer.Option(False, "--force", help="recompute documents already in the output"),
    prune: bool = typer.Option(False, "--prune", help="drop rows of documents under INPUTS no longer listed"),
    append: bool = typer.Option(False, "--append", help="allow adding to an output made with another schema/model"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks"),
    max_pages_per_doc: int = typer.Option(2000, "--max-pages-per-doc", help="later pages become page_skipped rows"),
    longest_edge_px: int = typer.Option(1960, "--longest-edge", help="render size: longest page side in px"),
    max_page_pixels: int = typer.Option(1960 * 1960, "--max-page-pixels", help="pixel cap for odd page shapes"),
    max_file_bytes: int = typer.Option(512 * 1024 * 1024, "--max-file-bytes", help="larger files: file_too_large"),
    render_timeout_s: float = typer.Option(120.0, "--render-timeout", help="seconds per document render"),
    render_memory_mb: int = typer.Option(4096, "--render-memory-mb", help="address-space cap of a render child"),
    render_retries: int = typer.Option(1, "--render-retries", help="retries after a render crash"),
    page_time_limit_s: float = typer.Option(300.0, "--page-time-limit", help="seconds of generation per batch"),
    retry: List[str] = typer.Option([], "--retry", help="a final status to redo this run, e.g. render_timeout "
                                    "after raising --render-timeout (repeatable)"),
) -> None:
    """Extract one typed row per page into OUT/data/*.parquet."""
    from pipeline.run import run_extraction

    values = dict(inputs=inputs, out=out, schema_ref=schema, model=model, batch_size=batch_size,
                  max_new_tokens=max_new_tokens, dtype=dtype, quantize=quantize, attn_implementation=attn,
                  split_images=not no_split, actors=actors, force=force, prune=prune, append=append,
                  follow_symlinks=follow_symlinks, max_pages_per_doc=max_pages_per_doc,
                  longest_edge_px=longest_edge_px, max_page_pixels=max_page_pixels, max_file_bytes=max_file_bytes,
                  render_timeout_s=render_timeout_s, render_memory_mb=render_memory_mb,
                  render_retries=render_retries, page_time_limit_s=page_time_limit_s, retry=retry)
    if run_id:
        values["run_id"] = run_id
    try:
        config = RunConfig.build(**values)
        config.extraction_schema()  # a bad schema is refused before any work
        record = run_extraction(config)
    except (FatalError, ValueError) as exc:
        fail(exc)
    print_summary(record)


@app.command()
def plan(
    inputs: List[str] = typer.Argument(..., help="files, folders or s3:// prefixes"),
    out: str = typer.Option(..., "--out"),
    schema: Optional[str] = typer.Option(None, "--schema", help="default: the one the output folder was made with"),
    model: Optional[str] = typer.Option(None, "--model", help="default: the one the output folder was made with"),
    force: bool = typer.Option(False, "--force"),
    append: bool = typer.Option(False, "--append"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks"),
    retry: List[str] = typer.Option([], "--retry", help="a final status to redo (repeatable)"),
    max_pages_per_doc: int = typer.Option(2000, "--max-pages-per-doc"),
    max_file_bytes: int = typer.Option(512 * 1024 * 1024, "--max-file-bytes"),
) -> None:
    """Dry run: what `extract` would do (documents, estimated pages, skipped, shards). Writes nothing."""
    from pipeline.ledger.plan import dry_run

    try:
        summary = dry_run(inputs, out, schema, model, force=force, append=append, follow_symlinks=follow_symlinks,
                          retry=retry, max_pages_per_doc=max_pages_per_doc, max_file_bytes=max_file_bytes)
    except (FatalError, ValueError) as exc:
        fail(exc)
    typer.echo(json.dumps(summary, indent=2))


@schemas_app.command("list")
def schemas_list() -> None:
    from schemas import list_builtin, load_schema

    for name in list_builtin():
        s = load_schema(name)
        typer.echo(f"{name:<12} v{s.version}  {s.id}  {s.description}")


@schemas_app.command("show")
def schemas_show(name: str) -> None:
    from schemas import load_schema, schema_summary

    try:
        typer.echo(schema_summary(load_schema(name)))
    except ValueError as exc:
        fail(exc)


@model_app.command("tiny")
def model_tiny(out: Path = typer.Option(..., "--out"), seed: int = 0) -> None:
    """Build the offline tiny Idefics2 (random weights) used by tests and the demo."""
    from extractors.tiny import build_tiny_model

    typer.echo(f"tiny Idefics2 written to {build_tiny_model(out, seed=seed)}")


@app.command()
def demo(workdir: Path = typer.Option(Path("pageray-demo"), "--workdir"),
         model: Optional[str] = typer.Option(None, "--model", help="default: build the tiny offline model")) -> None:
    """Make sample documents, build the tiny model if needed, run the pipeline, print a summary."""
    from pipeline.demo import run_demo

    try:
        run_demo(workdir, model, echo=typer.echo)
    except (FatalError, ValueError) as exc:
        fail(exc)


@app.command()
def status(out: str = typer.Argument(..., help="an output folder")) -> None:
    """Summarise every run recorded in an output folder."""
    from pipeline.ledger.status import describe_runs

    try:
        typer.echo(describe_runs(out))
    except FatalError as exc:
        fail(exc)


@app.command()
def bench(
    model: str = typer.Option("tiny", "--model", help="tiny | random-8b (GPU) | checkpoint folder or hub id"),
    pages: int = typer.Option(16, "--pages"),
    new_tokens: int = typer.Option(128, "--new-tokens", help="fixed output length (EOS ignored)"),
    batch_size: int = typer.Option(8, "--batch-size"),
    schema: str = typer.Option("invoice", "--schema"),
    json_out: Optional[str] = typer.Option(None, "--json", help="also write the rows as JSON"),
) -> None:
    """Baseline (model-card recipe) vs pageray's extractor, same device/pages/model; table printed last."""
    from pipeline.bench.harness import bench_command

    try:
        bench_command(json_out=json_out, echo=typer.echo, model=model, pages=pages, new_tokens=new_tokens,
                      batch_size=batch_size, schema=schema)
    except (FatalError, ValueError) as exc:
        fail(exc)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
