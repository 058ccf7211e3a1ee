"""GPU throughput benchmark: the model-card baseline vs pageray's extractor, one run.

Same device, same pages, same model object, fixed output length. Rows:

  baseline               Idefics2 model card: one page per processor call and per `generate`,
                         AutoProcessor defaults (image splitting on), sdpa, unconstrained
  pageray                extractors.extractor.ExtractFields.__call__: its batching, its processor
                         settings, xgrammar-constrained decoding
  pageray-unconstrained  the same extractor with its logits processors removed
  pageray-bucketed       (opt-in probe) the extractor called once per page shape
  cpu-render, cpu-preprocess, cpu-stage
                         PyMuPDF at 1960 px and Idefics2 preprocessing, one process
  floor                  roofline pages/s from page FLOPs, decode bytes and measured device rates

`pageray bench` calls `bench_command(**kwargs)`; see benchmarks/README.md for the columns.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

from pipeline.bench.flops import floor_seconds_per_page, measure_device, page_flops
from pipeline.bench.models import build_bench_model, check_request, pageray_attention, set_attention
from pipeline.bench.pages import cpu_stage_rows, load_documents, preprocess_pages, render_pages
from pipeline.bench.runs import make_extractor, measure, run_baseline, run_pageray

__all__ = ["BenchOptions", "bench_command", "bench_command_options", "format_table", "run_bench"]


@dataclass(frozen=True)
class BenchOptions:
    model: str = "tiny"        # "tiny" | "random-8b" | a checkpoint folder or hub id
    pages: int = 16            # pages measured per configuration (sample documents, cycled)
    new_tokens: int = 128      # every generate runs exactly this many steps (EOS ignored)
    batch_size: int = 8        # pageray's pages per generate (ExtractSettings.batch_size)
    schema: str = "invoice"    # built-in schema or file: the prompt and the grammar
    device: str = "auto"       # auto -> cuda if torch sees one, else cpu
    warmup: bool = True        # one untimed batch per configuration first
    profile: bool = True       # GPU only: a separate profiled pass for the busy fraction
    processor: str | None = None  # random-8b only: a real Idefics2 processor folder / hub id
    probe_bucketing: bool = False  # also run pageray once per page shape (no cross-shape padding)

    def __post_init__(self) -> None:
        for name in ("pages", "new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"bench {name} must be an integer >= 1, got {value!r}")


def bench_command_options(**kwargs) -> BenchOptions:
    """BenchOptions from keyword arguments (None means the default); unknown keys are refused."""
    known = {f.name for f in fields(BenchOptions)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown bench option(s) {unknown}; known: {sorted(known)}")
    return BenchOptions(**{k: v for k, v in kwargs.items() if v is not None})


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _model_row(name: str, stats: dict, n: int, opts: BenchOptions, device: str, batch: int, note: str) -> dict:
    wall = stats["wall_s"]
    return {"name": name, "device": device, "pages": n, "batch": batch, "new_tokens": opts.new_tokens,
            "wall_s": wall, "pages_per_s": n / wall, "tokens_per_s": stats["generated"] / wall,
            "pages_per_cpu_s": n / stats["cpu_s"] if stats["cpu_s"] else None,
            "peak_mem_gib": stats["peak_mem_gib"], "gpu_busy": stats["gpu_busy"],
            "generate_s": stats["generate_s"], "logits_processor_s": stats["logits_s"],
            "note": note + (f"; GPU busy n/a: {stats['profile_error']}" if "profile_error" in stats else "")}


def run_bench(options: BenchOptions = BenchOptions(), log: Callable[[str], None] = _log) -> list[dict]:
    """Measure everything once and return the rows of the results table."""
    from schemas import load_schema

    opts, schema = options, load_schema(options.schema)
    check_request(opts.model, opts.device)
    log(f"rendering {opts.pages} pages")
    pages, render_t = render_pages(opts.pages, load_documents())
    log(f"loading model {opts.model!r}")
    bench = build_bench_model(opts.model, opts.device, opts.processor)
    device, config = bench.device, bench.model.config
    ex = make_extractor(bench, schema, opts.batch_size, opts.new_tokens)
    patch = config.vision_config.patch_size
    geometry, pre_t = preprocess_pages(bench.pageray_processor, ex.prompt, pages, opts.batch_size, patch)
    rows = cpu_stage_rows(len(pages), render_t, pre_t, type(bench.pageray_processor.image_processor).__name__)
    kind = "cpu" if not device.startswith("cuda") else _gpu_name()
    first, batch1 = pages[:opts.batch_size], pages[:1]
    warm = opts.warmup

    log("baseline (model card: one page per generate, sdpa, unconstrained)")
    set_attention(bench.model, "sdpa")
    base = measure(run_baseline(bench, ex.prompt, pages, opts.new_tokens), pages, device,
                   batch1 if warm else None, pages[:2] if opts.profile else None)
    attn = set_attention(bench.model, pageray_attention(device))
    log(f"pageray (batch {opts.batch_size}, {attn}, xgrammar)")
    con = measure(run_pageray(ex, pages, opts.new_tokens, True), pages, device,
                  first if warm else None, first if opts.profile else None)
    log("pageray without constrained decoding")
    unc = measure(run_pageray(ex, pages, opts.new_tokens, False), pages, device,
                  first if warm else None, first if opts.profile else None)

    probe = None
    if opts.probe_bucketing:
        log("probe: pageray called once per page shape")
        probe = measure(run_pageray(ex, pages, opts.new_tokens, True, bucketed=True), pages, device,
                        first if warm else None, first if opts.profile else None)

    n, total = len(pages), len(pages) * opts.new_tokens
    overhead = 100.0 * (con["wall_s"] / unc["wall_s"] - 1.0)
    model_rows = [
        _model_row("baseline", base, n, opts, kind, 1, f"{bench.label}; sdpa; model-card processor"),
        _model_row("pageray", con, n, opts, kind, opts.batch_size,
                   f"{attn}; constrained {overhead:+.1f}% wall vs unconstrained; "
                   f"JSON tokens {con['json_tokens']}/{total} (rest: decoding after the JSON closed); "
                   f"ok {con['ok']}/{n}" + (f"; errors {con['errors']}" if con["errors"] else "")),
        _model_row("pageray-unconstrained", unc, n, opts, kind, opts.batch_size, f"{attn}; no logits processor"),
    ]
    model_rows[1]["constrained_overhead_pct"] = overhead
    if probe is not None:
        model_rows.append(_model_row("pageray-bucketed", probe, n, opts, kind, opts.batch_size,
                                     f"{attn}; probe, not pageray: one extractor call per page shape"))

    log("measuring device matmul rate and copy bandwidth")
    rates = measure_device(device, bench.model.dtype)
    floor = floor_seconds_per_page(config, geometry, opts.new_tokens, opts.batch_size,
                                   rates["flops_per_s"], rates["bytes_per_s"], bench.dtype_bytes)
    gflops = sum(page_flops(config, c, t, opts.new_tokens)["total"] for c, t in geometry) / n / 1e9
    floor_pps = 1.0 / floor["total_s"]
    floor_row = {
        "name": "floor", "device": kind, "pages": n, "batch": opts.batch_size, "new_tokens": opts.new_tokens,
        "pages_per_s": floor_pps, "tokens_per_s": floor_pps * opts.new_tokens,
        "flops_per_s": rates["flops_per_s"], "bytes_per_s": rates["bytes_per_s"], "gflop_per_page": gflops,
        "note": (f"matmul {rates['matmul']} {rates['flops_per_s'] / 1e12:.2f} TFLOP/s, copy "
                 f"{rates['bytes_per_s'] / 1e9:.0f} GB/s; {gflops:.1f} GFLOP/page; prompt "
                 f"{sum(t for _, t in geometry) / n:.0f} tokens/page; per page: vision+prefill "
                 f"{1e3 * floor['prefill_s']:.2f} ms, decode {1e3 * floor['decode_s']:.2f} ms"),
    }
    for row in model_rows:
        row["vs_baseline"] = row["pages_per_s"] / model_rows[0]["pages_per_s"]
        row["pct_of_floor"] = 100.0 * row["pages_per_s"] / floor_pps
    return model_rows + rows + [floor_row]


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


COLUMNS = (("name", "config"), ("device", "device"), ("pages", "pages"), ("batch", "batch"),
           ("new_tokens", "new tok"), ("wall_s", "wall s"), ("pages_per_s", "pages/s"),
           ("pages_per_cpu_s", "pages/cpu-s"), ("tokens_per_s", "out tok/s"), ("peak_mem_gib", "peak GiB"),
           ("gpu_busy", "GPU busy"), ("vs_baseline", "x baseline"), ("pct_of_floor", "% of floor"),
           ("note", "note"))


def _fmt(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key == "gpu_busy":
        return f"{100 * value:.0f}%"
    if key == "vs_baseline":
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """A plain-text table; a value a row does not have (GPU figures on CPU, say) prints n/a."""
    head = [title for _, title in COLUMNS]
    body = [[_fmt(key, row.get(key)) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head) - 1)]
    lines = []
    for cells in [head, ["-" * w for w in widths] + ["----"]] + body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1])
    return "\n".join(lines)


def write_json(rows: list[dict], path: str | Path, options: BenchOptions | None = None) -> None:
    payload = {"options": asdict(options) if options else None, "rows": rows}
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


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
