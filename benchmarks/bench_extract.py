#!/usr/bin/env python
"""Throughput benchmark: Idefics2 model-card baseline vs pageray's extractor.

    python benchmarks/bench_extract.py --model random-8b --pages 64 --new-tokens 128
    python benchmarks/bench_extract.py --model tiny --pages 4 --new-tokens 8      # CPU smoke run

The same front end as `pageray bench` (pipeline/bench/cli.py), without needing the CLI's
packages. See benchmarks/README.md.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

if __name__ == "__main__":
    from pageray.pipeline.bench.cli import main

    sys.exit(main(sys.argv[1:], prog="bench_extract.py"))
