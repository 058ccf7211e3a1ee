"""The benchmark's one front end: `pageray bench ...` and `python benchmarks/bench_extract.py ...`
both parse their arguments here (argparse, so the second runs where typer is not installed, as
on the device machines) and call the same harness. Defaults are BenchOptions'.

Progress goes to stderr; the results table is printed last, on stdout. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import sys

from pageray.pipeline.bench.harness import BenchOptions, bench_command

EXAMPLES = """examples:
  {prog} --model tiny --pages 4 --new-tokens 8 --batching off   # CPU smoke run
  {prog} --model tiny --pages 16 --new-tokens 64 --e2e       # CPU, with the end-to-end Ray row
  {prog} --model tiny --batching only --torch-threads 1 --json out.json   # static vs continuous batching
  {prog} --model random-8b --pages 16 --new-tokens 128 --processor DIR   # a GPU: idefics2-8b shapes
  python benchmarks/device_bench.py run                      # the lent GPU's whole script
"""


def _batches(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Throughput and host cost: the Idefics2 model-card baseline, today's "
                                            "extractor path and the new one, same device, pages and model, fixed "
                                            "output length.",
                                epilog=EXAMPLES.format(prog=prog))
    d = BenchOptions()
    p.add_argument("--model", default=d.model,
                   help="tiny | random-8b (idefics2-8b shapes, random bf16 weights, GPU) | checkpoint folder or hub id")
    p.add_argument("--pages", type=int, default=d.pages, help="pages per configuration (sample letter/A4 documents, cycled)")
    p.add_argument("--new-tokens", type=int, default=d.new_tokens, help="exact decode steps per page (EOS ignored)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pages per model batch (not the baseline)")
    p.add_argument("--schema", default=d.schema, help="built-in schema name or schema file (prompt and grammar)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--processor", default=d.processor,
                   help="random-8b: a processor folder (tokenizer, no weights); default: Idefics2's real "
                        "tokenizer, made here from mistral-common")
    p.add_argument("--pages-dir", default=d.pages_dir,
                   help="read pre-rendered pages (PNG + pages.json, e.g. benchmarks/pages) instead of rendering")
    p.add_argument("--baseline-pages", type=int, default=d.baseline_pages,
                   help="run the (slow) baseline on the first N pages only")
    p.add_argument("--busy", choices=("nvml", "profiler", "off"), default=d.busy,
                   help="GPU busy: NVML sampled during the timed pass, or torch.profiler on an extra pass")
    p.add_argument("--host-step-budget", type=int, default=d.host_step_budget,
                   help="token budget of the model-free host-per-step rows")
    p.add_argument("--host-step-batches", type=_batches, default=d.host_step_batches, metavar="N,N,...",
                   help="batch sizes of the host-per-step rows")
    p.add_argument("--no-host-step", dest="host_step", action="store_false", default=d.host_step,
                   help="skip the host-per-step rows")
    p.add_argument("--no-cpu-stage", dest="cpu_stage", action="store_false", default=d.cpu_stage,
                   help="skip the CPU stage rows")
    p.add_argument("--e2e", action="store_true", default=d.e2e,
                   help="add end-to-end pages/s through run_extraction on a local Ray (needs ray; tiny or a folder)")
    g = p.add_argument_group("batching rows", "static vs continuous batching on a mixed-answer-length workload: "
                             "per-page output budgets from a seeded lognormal (pipeline/bench/continuous.py)")
    g.add_argument("--batching", choices=("on", "off", "only"), default=d.batching,
                   help="run the batching rows too, not at all, or alone")
    g.add_argument("--batching-pages", type=int, default=d.batching_pages, help="pages (the bench's pages, cycled)")
    g.add_argument("--slots", type=int, default=d.slots, help="decode slots (static: pages per batch)")
    g.add_argument("--answer-median", type=float, default=d.answer_median, help="median output budget, tokens")
    g.add_argument("--answer-p95", type=float, default=d.answer_p95, help="95th percentile of the budgets, tokens")
    g.add_argument("--answer-seed", type=int, default=d.answer_seed)
    g.add_argument("--batching-edge", type=int, default=d.batching_edge,
                   help="downscale the pages to this longest side, px (0: as rendered)")
    g.add_argument("--repeats", type=int, default=d.repeats, help="timed static/continuous pairs (spread reported)")
    g.add_argument("--no-reference", dest="reference", action="store_false", default=d.reference,
                   help="skip decoding each page alone (tokens_match_reference is then null)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", default=d.warmup,
                   help="skip the short untimed warm-up run per configuration")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch.set_num_threads(N) first (1 on a small shared CPU box: the tiny model's ops are tiny)")
    p.add_argument("--json", dest="json_out", metavar="OUT", default=None,
                   help="also write {options, summary, rows} as JSON to OUT")
    return p


def main(argv: list[str] | None = None, prog: str = "bench_extract.py") -> int:
    args = vars(parser(prog).parse_args(argv))
    threads = args.pop("torch_threads")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from pageray.pipeline.errors import FatalError

    try:
        bench_command(**args)
    except (ValueError, FatalError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0
