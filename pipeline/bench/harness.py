"""The throughput benchmark: today's extractor path against the new one, on the same pages and model.

Rows (pipeline/bench/runs.py has the model configurations):

  baseline, pageray-generate, pageray, pageray-unconstrained
                  pages/s, out tok/s, peak GiB, GPU busy, and the actor's host work:
                  host_ms_per_page (before the model) and host_ms_per_step (decoding)
  host-step-bN    host ms per decode step at batch N without a model (pipeline/bench/hoststep.py):
                  today's forcing planner against the incremental one, 32,003-token vocabulary
  cpu-*           render and each preprocessing, pages/s per core (pipeline/bench/pages.py)
  floor           roofline pages/s from page FLOPs, decode bytes and measured device rates
  e2e-ray         (--e2e) pages/s through run_extraction on a local Ray (pipeline/bench/e2e.py)
  generate-batch, static-batching, continuous-batching, continuous-graphs
                  (--batching on|only) a mixed-answer-length workload: occupancy, decode steps,
                  pages/s of continuous over static, tokens_match_reference (pipeline/bench/batching.py)

`pageray bench` calls `bench_command(**kwargs)`; see benchmarks/README.md for the columns.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from pageray.pipeline.bench.continuous import Workload
from pageray.pipeline.bench.flops import floor_seconds_per_page, measure_device, page_flops
from pageray.pipeline.bench.hoststep import BATCHES, host_step_rows
from pageray.pipeline.bench.models import build_bench_model, check_request, pageray_attention, set_attention
from pageray.pipeline.bench.pages import (cpu_stage_rows, load_documents, load_pages, prepare_pages, render_pages,
                                  time_processor)
from pageray.pipeline.bench.report import format_table, summary, write_json
from pageray.pipeline.bench.runs import (make_extractor, measure, run_baseline, run_generate, run_pageray,
                                 staging_ms_per_page)

__all__ = ["BenchOptions", "bench_command", "bench_command_options", "format_table", "run_bench", "summary"]
BUSY = ("nvml", "profiler", "off")
BATCHING = ("on", "off", "only")


@dataclass(frozen=True)
class BenchOptions:
    model: str = "tiny"        # "tiny" | "random-8b" | a checkpoint folder or hub id
    pages: int = 16            # pages measured per configuration (sample documents, cycled)
    new_tokens: int = 128      # every configuration decodes exactly this many steps (EOS ignored)
    batch_size: int = 8        # pages per model batch (pageray-generate, pageray)
    schema: str = "invoice"    # built-in schema or file: the prompt and the grammar
    device: str = "auto"       # auto -> cuda if torch sees one, else cpu
    warmup: bool = True        # a short untimed run per configuration first
    busy: str = "nvml"         # GPU busy: nvml (sampled in the timed pass) | profiler (extra pass) | off
    processor: str | None = None   # random-8b: a processor folder (default: the real tokenizer, made here)
    pages_dir: str | None = None   # read pages saved by pages.save_pages instead of rendering them
    baseline_pages: int | None = None  # the baseline on the first N pages only (it is the slow row)
    host_step: bool = True     # the model-free host-per-step rows
    host_step_budget: int = 256
    host_step_batches: tuple = BATCHES
    cpu_stage: bool = True     # the CPU stage rows (today's processor pass costs ~0.1-0.4 s per page)
    e2e: bool = False          # end to end through Ray (needs ray, and a model folder: tiny or a checkpoint)
    # the batching rows' workload (bench.continuous.Workload holds its defaults and checks)
    batching: str = "on"       # on | off | only (the batching rows alone)
    batching_pages: int = Workload.pages
    slots: int = Workload.slots
    answer_median: float = Workload.median
    answer_p95: float = Workload.p95
    answer_seed: int = Workload.seed
    batching_edge: int = Workload.longest_edge  # 0: the pages as given
    repeats: int = Workload.repeats
    reference: bool = Workload.reference

    def __post_init__(self) -> None:
        for name in ("pages", "new_tokens", "batch_size", "host_step_budget", "baseline_pages"):
            value = getattr(self, name)
            if value is None and name == "baseline_pages":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"bench {name} must be an integer >= 1, got {value!r}")
        if not self.host_step_batches or any(not isinstance(v, int) or v < 1 for v in self.host_step_batches):
            raise ValueError(f"bench host_step_batches must be integers >= 1, got {self.host_step_batches!r}")
        if self.busy not in BUSY:
            raise ValueError(f"bench busy must be one of {BUSY}, got {self.busy!r}")
        if self.batching not in BATCHING:
            raise ValueError(f"bench batching must be one of {BATCHING}, got {self.batching!r}")
        self.workload()  # its own checks, before any work

    def workload(self) -> Workload:
        return Workload(self.batching_pages, self.slots, self.answer_median, self.answer_p95, self.answer_seed,
                        self.batching_edge or None, self.repeats, self.reference)


def bench_command_options(**kwargs) -> BenchOptions:
    """BenchOptions from keyword arguments (None means the default); unknown keys are refused."""
    known = {f.name for f in fields(BenchOptions)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown bench option(s) {unknown}; known: {sorted(known)}")
    return BenchOptions(**{k: v for k, v in kwargs.items() if v is not None})


_STARTED = time.monotonic()


def _log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _model_row(name: str, stats: dict, n: int, opts: BenchOptions, device: str, batch: int, note: str) -> dict:
    wall, steps = stats["wall_s"], stats["steps"]
    row = {"name": name, "device": device, "pages": n, "batch": batch, "new_tokens": opts.new_tokens,
           "wall_s": wall, "pages_per_s": n / wall, "tokens_per_s": stats["generated"] / wall,
           "pages_per_cpu_s": n / stats["cpu_s"] if stats["cpu_s"] else None,
           "peak_mem_gib": stats["peak_mem_gib"], "gpu_busy": stats["gpu_busy"],
           "host_ms_per_page": 1e3 * stats["host_prep_s"] / n,
           "host_ms_per_step": 1e3 * stats["host_step_s"] / steps if steps else None, "note": note}
    if "wait_s" in stats and steps:
        row["wait_ms_per_step"] = 1e3 * stats["wait_s"] / steps
    if "json_tokens" in stats:
        row.update(json_tokens=stats["json_tokens"], ok=stats["ok"])
        row["note"] += f"; JSON tokens {stats['json_tokens']}/{n * opts.new_tokens}; ok {stats['ok']}/{n}"
    if stats.get("errors"):
        row["errors"] = sorted(stats["errors"])
        row["note"] += f"; errors {row['errors']}"
    if "busy_error" in stats:
        row["note"] += f"; GPU busy n/a: {stats['busy_error']}"
    return row


def run_bench(options: BenchOptions = BenchOptions(), log: Callable[[str], None] = _log, bench=None) -> list[dict]:
    """Measure everything once and return the rows; `bench` (models.BenchModel) reuses a loaded model."""
    from pageray.schemas import load_schema

    opts, schema = options, load_schema(options.schema)
    check_request(opts.model, opts.device)
    if opts.pages_dir:
        pages, render_t = load_pages(opts.pages, Path(opts.pages_dir)), None
    else:
        log(f"rendering {opts.pages} pages")
        pages, render_t = render_pages(opts.pages, load_documents())
    if bench is None:
        log(f"loading model {opts.model!r}")
        bench = build_bench_model(opts.model, opts.device, opts.processor)
    rows = []
    if opts.batching != "off":
        from pageray.pipeline.bench.batching import batching_rows

        rows = batching_rows(bench, schema, pages, opts.workload(), log)
    if opts.batching == "only":
        return rows
    return _throughput_rows(opts, schema, bench, pages, render_t, log) + rows


def _throughput_rows(opts: BenchOptions, schema, bench, pages: list[dict], render_t, log) -> list[dict]:
    device, config, n, b = bench.device, bench.model.config, len(pages), opts.batch_size
    kind = "cpu" if not device.startswith("cuda") else _gpu_name()
    ex = make_extractor(bench, schema, b, opts.new_tokens)
    prepared, prepare_t = prepare_pages(pages, ex.spec.split_images)
    rows = []
    if opts.cpu_stage:
        log("CPU stage: today's processor and PreparePixels")
        old_t = time_processor(ex.processor, ex.prompt, pages, b)
        rows += cpu_stage_rows(n, render_t, old_t, prepare_t, type(ex.processor.image_processor).__name__)
    if opts.host_step:
        rows += host_step_rows(ex.grammar, opts.host_step_budget, opts.host_step_batches, log)

    def timed(run, timed_pages, warm):
        return measure(run, timed_pages, opts.new_tokens, device, warm if opts.warmup else None, opts.busy, warm)

    base_pages = pages[:opts.baseline_pages or n]
    log(f"baseline (model card: one page per generate, sdpa, unconstrained) on {len(base_pages)} pages")
    set_attention(bench.model, "sdpa")
    base = timed(run_baseline(bench, ex.prompt), base_pages, pages[:1])
    attn = set_attention(bench.model, pageray_attention(device))
    log(f"pageray-generate (today: processor + generate + ConstrainedBatch, batch {b}, {attn})")
    gen = timed(run_generate(ex, b), pages, pages[:b])
    log("pageray (PreparePixels rows, per-shape vision, decode loop)")
    new = timed(run_pageray(ex, True), prepared, prepared[:b])
    log("pageray without constrained decoding")
    unc = timed(run_pageray(ex, False), prepared, prepared[:b])
    new["host_prep_s"] = unc["host_prep_s"] = staging_ms_per_page(ex, prepared, b) * n / 1e3
    overhead = 100.0 * (new["wall_s"] / unc["wall_s"] - 1.0)
    model_rows = [
        _model_row("baseline", base, len(base_pages), opts, kind, 1, f"{bench.label}; sdpa; model-card processor"),
        _model_row("pageray-generate", gen, n, opts, kind, b, f"today: {attn}; processor in the actor; "
                   "generate + ConstrainedBatch (re-parsing planner)"),
        _model_row("pageray", new, n, opts, kind, b, f"{attn}; crops from PreparePixels; decode loop; "
                   f"constrained {overhead:+.1f}% wall vs unconstrained"),
        _model_row("pageray-unconstrained", unc, n, opts, kind, b, f"{attn}; decode loop, plain argmax"),
    ]
    model_rows[2]["constrained_overhead_pct"] = overhead

    log("measuring device matmul rate and copy bandwidth")
    rates = measure_device(device, bench.model.dtype)
    patch, prompt_tokens = config.vision_config.patch_size, ex.decoder.prompt_tokens()
    geometry = [([(h // patch) * (w // patch) for h, w in r["crop_shapes"]], prompt_tokens) for r in prepared]
    floor = floor_seconds_per_page(config, geometry, opts.new_tokens, b, rates["flops_per_s"],
                                   rates["bytes_per_s"], bench.dtype_bytes)
    gflops = sum(page_flops(config, c, t, opts.new_tokens)["total"] for c, t in geometry) / n / 1e9
    floor_pps = 1.0 / floor["total_s"]
    floor_row = {
        "name": "floor", "device": kind, "pages": n, "batch": b, "new_tokens": opts.new_tokens,
        "pages_per_s": floor_pps, "tokens_per_s": floor_pps * opts.new_tokens,
        "flops_per_s": rates["flops_per_s"], "bytes_per_s": rates["bytes_per_s"], "gflop_per_page": gflops,
        "note": (f"matmul {rates['matmul']} {rates['flops_per_s'] / 1e12:.2f} TFLOP/s, copy "
                 f"{rates['bytes_per_s'] / 1e9:.0f} GB/s; {gflops:.1f} GFLOP/page; prompt {prompt_tokens} "
                 f"tokens/page; per page: vision+prefill {1e3 * floor['prefill_s']:.2f} ms, decode "
                 f"{1e3 * floor['decode_s']:.2f} ms"),
    }
    for row in model_rows:
        row["vs_baseline"] = row["pages_per_s"] / model_rows[0]["pages_per_s"]
        row["pct_of_floor"] = 100.0 * row["pages_per_s"] / floor_pps
    rows = model_rows + rows + [floor_row]
    if opts.e2e:
        rows.append(_e2e(bench, opts, log))
    return rows


def _e2e(bench, opts: BenchOptions, log) -> dict:
    from pageray.pipeline.bench.e2e import e2e_row

    if bench.folder is None:
        raise ValueError(f"--e2e needs a model folder the Ray actors can load; {opts.model!r} is built in memory")
    return e2e_row(bench.folder, opts.schema, opts.batch_size, opts.new_tokens, log=log)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def bench_command(json_out: str | None = None, echo: Callable[[str], None] = print,
                  log: Callable[[str], None] = _log, **kwargs) -> list[dict]:
    """What `pageray bench` runs: options from kwargs, measure, optionally write JSON, and print
    the table last."""
    options = bench_command_options(**kwargs)
    rows = run_bench(options, log)
    if json_out:
        write_json(rows, json_out, options)
    echo(format_table(rows))
    return rows
