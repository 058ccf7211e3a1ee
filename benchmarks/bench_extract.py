#!/usr/bin/env python
"""Throughput benchmark: Idefics2 model-card baseline vs pageray's extractor (GitHub issue 5).

    python benchmarks/bench_extract.py --model random-8b --pages 64 --new-tokens 128
    python benchmarks/bench_extract.py --model tiny --pages 4 --new-tokens 8      # CPU smoke run

Progress goes to stderr; the results table is printed last, on stdout. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny",
                   help="tiny | random-8b (idefics2-8b shapes, random bf16 weights, GPU) | checkpoint folder or hub id")
    p.add_argument("--pages", type=int, default=16, help="pages per configuration (sample letter/A4 documents, cycled)")
    p.add_argument("--new-tokens", type=int, default=128, help="exact generated tokens per page (EOS ignored)")
    p.add_argument("--batch-size", type=int, default=8, help="pageray's pages per generate()")
    p.add_argument("--schema", default="invoice", help="built-in schema name or schema file (prompt and grammar)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--processor", default=None,
                   help="random-8b only: folder or hub id of a real Idefics2 processor (tokenizer, no weights)")
    p.add_argument("--probe-bucketing", action="store_true",
                   help="add a pageray-bucketed row: the extractor called once per page shape")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up batch per configuration")
    p.add_argument("--no-profile", action="store_true", help="skip the profiled pass that measures GPU busy")
    p.add_argument("--json", dest="json_out", metavar="OUT", default=None, help="also write the rows as JSON to OUT")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.bench.harness import bench_command
    from pipeline.errors import FatalError

    try:
        bench_command(json_out=args.json_out, model=args.model, pages=args.pages, new_tokens=args.new_tokens,
                      batch_size=args.batch_size, schema=args.schema, device=args.device,
                      processor=args.processor, probe_bucketing=args.probe_bucketing, warmup=not args.no_warmup, profile=not args.no_profile)
    except (ValueError, FatalError) as exc:
        print(f"bench_extract: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
