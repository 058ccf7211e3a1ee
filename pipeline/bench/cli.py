"""The benchmark's one front end: `pageray bench ...` and `python benchmarks/bench_extract.py ...`
both parse their arguments here (argparse, so the second runs where typer is not installed, as
on the device machines) and call the same harness. Defaults are BenchOptions'.

Progress goes to stderr; the results table is printed last, on stdout. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import sys

from pipeline.bench.harness import BenchOptions, bench_command

EXAMPLES = """examples:
  {prog} --model random-8b --pages 64 --new-tokens 128      # a GPU: idefics2-8b shapes, random bf16 weights
  {prog} --model tiny --pages 4 --new-tokens 8              # CPU smoke run
"""


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Throughput: Idefics2 model-card baseline vs pageray's extractor, "
                                            "same device, pages and model, fixed output length.",
                                epilog=EXAMPLES.format(prog=prog))
    d = BenchOptions()
    p.add_argument("--model", default=d.model,
                   help="tiny | random-8b (idefics2-8b shapes, random bf16 weights, GPU) | checkpoint folder or hub id")
    p.add_argument("--pages", type=int, default=d.pages, help="pages per configuration (sample letter/A4 documents, cycled)")
    p.add_argument("--new-tokens", type=int, default=d.new_tokens, help="exact generated tokens per page (EOS ignored)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pageray's pages per generate()")
    p.add_argument("--schema", default=d.schema, help="built-in schema name or schema file (prompt and grammar)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--processor", default=d.processor,
                   help="random-8b only: folder or hub id of a real Idefics2 processor (tokenizer, no weights)")
    p.add_argument("--probe-bucketing", action="store_true", default=d.probe_bucketing,
                   help="add a pageray-bucketed row: the extractor called once per page shape")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", default=d.warmup,
                   help="skip the untimed warm-up batch per configuration")
    p.add_argument("--no-profile", dest="profile", action="store_false", default=d.profile,
                   help="skip the profiled pass that measures GPU busy")
    p.add_argument("--json", dest="json_out", metavar="OUT", default=None, help="also write the rows as JSON to OUT")
    return p


def main(argv: list[str] | None = None, prog: str = "bench_extract.py") -> int:
    args = vars(parser(prog).parse_args(argv))
    from pipeline.errors import FatalError

    try:
        bench_command(**args)
    except (ValueError, FatalError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0
