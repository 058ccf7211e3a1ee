#!/usr/bin/env python
"""Static vs continuous batching on a mixed-answer-length workload (pipeline/bench/continuous.py).

    python benchmarks/bench_continuous.py --pages 24 --slots 4 --median 24 --p95 120   # CPU, tiny model
    python benchmarks/bench_continuous.py --json benchmarks/results/continuous.json

Prints occupancy (live rows / slots, averaged over decode steps) and decode steps of each, the
pages/s of continuous over static, and tokens_match_reference.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_continuous.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | random-8b (GPU) | a model folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--schema", default="table", help="built-in schema name or schema file (prompt and grammar)")
    p.add_argument("--pages", type=int, default=24)
    p.add_argument("--slots", type=int, default=4, help="decode slots (static: pages per batch)")
    p.add_argument("--median", type=float, default=24.0, help="median output budget per page, tokens")
    p.add_argument("--p95", type=float, default=120.0, help="95th percentile of the budgets, tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip decoding each page alone (tokens_match_reference is then null)")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT")
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from pageray.extractors.extractor import ExtractFields, ExtractSettings
    from pageray.extractors.model.loading import ModelSpec
    from pageray.extractors.vision.pixels import model_crops
    from pageray.pipeline.bench.continuous import compare, lognormal_budgets
    from pageray.pipeline.bench.models import build_bench_model
    from pageray.pipeline.bench.pages import render_pages
    from pageray.schemas import load_schema

    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    bench = build_bench_model(a.model, a.device)
    extractor = ExtractFields(ModelSpec(model=bench.label), load_schema(a.schema),
                              ExtractSettings(batch_size=a.slots, max_new_tokens=int(a.p95), page_time_limit_s=None),
                              loaded=(bench.model, bench.pageray_processor, bench.device))
    pages, _ = render_pages(a.pages)
    crops = {}
    for page in pages:  # a repeated page object is the same pixels (bench.pages)
        if id(page) not in crops:
            image = np.frombuffer(page["image"], np.uint8).reshape(page["image_height"], page["image_width"], 3)
            crops[id(page)] = model_crops(image, split=True)
    budgets = lognormal_budgets(a.pages, a.median, a.p95, a.seed)
    out = compare(extractor, [crops[id(p)] for p in pages], budgets, a.slots, a.reference)
    out.update(model=bench.label, device=str(bench.device), schema=a.schema,
               budgets={"distribution": "lognormal", "median": a.median, "p95": a.p95, "seed": a.seed})
    print(json.dumps(out, indent=2))
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["tokens_static_equal_continuous"] and out["tokens_match_reference"] is not False else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
