"""End-to-end pages/s through the real Ray pipeline: `pipeline.run.run_extraction` over copies of
the bundled sample documents, on a local Ray started here, with a model folder (the tiny model on
CPU). Natural output lengths (rows stop when their JSON closes), unlike the fixed-length rows.

Only APIs that predate issue 9 are used (RunConfig.build, run_extraction, write_samples), so the
same function measures an older checkout too (`python -m pageray.pipeline.bench.e2e MODEL [copies]` with
this file copied in): docs/BENCHMARKS.md says how "before" was taken.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pageray.pipeline.datamodel import Status

# rows that went through the model (document-level failures and skipped pages did not)
MODEL_STATUSES = (Status.OK, Status.INVALID_OUTPUT, Status.GENERATION_TIMEOUT, Status.MODEL_ERROR)


def e2e_row(model: str, schema: str = "invoice", batch_size: int = 4, max_new_tokens: int = 128,
            copies: int = 3, num_cpus: int = 2, log=lambda msg: None) -> dict:
    """One run over `copies` copies of the samples; Ray is started before the clock and shut
    down after it. Wall time covers planning, the actors' model load, render, extract, commit."""
    import ray

    from pageray.pipeline.config import RunConfig
    from pageray.pipeline.driver.run import run_extraction
    from pageray.pipeline.samples import write_samples

    with tempfile.TemporaryDirectory(prefix="pageray-bench-e2e-") as tmp:
        inputs = [Path(tmp) / f"copy{k}" for k in range(copies)]
        for folder in inputs:
            write_samples(folder)
        config = RunConfig.build(inputs=[str(p) for p in inputs], out=str(Path(tmp) / "out"), schema_ref=schema,
                                 model=model, batch_size=batch_size, max_new_tokens=max_new_tokens)
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        try:
            log(f"end to end: {copies} copies of the samples through Ray ({num_cpus} CPUs)")
            t0 = time.perf_counter()
            record = run_extraction(config)
            wall = time.perf_counter() - t0
        finally:
            if started_here:
                ray.shutdown()
    counts = record.get("counts") or {}
    pages = sum(counts.get(s, 0) for s in MODEL_STATUSES)
    return {"name": "e2e-ray", "device": f"cpu (local Ray, {num_cpus} CPUs)", "pages": pages,
            "batch": batch_size, "new_tokens": max_new_tokens, "wall_s": wall,
            "pages_per_s": pages / wall if wall else None, "tokens_per_s": record.get("output_tokens", 0) / wall,
            "state": record.get("state"), "counts": counts,
            "note": f"run_extraction, {copies} x samples, natural output length (max {max_new_tokens}); "
                    f"rows {dict(sorted(counts.items()))}; wall includes the actors' model load"}


if __name__ == "__main__":  # python -m pageray.pipeline.bench.e2e MODEL_FOLDER [copies]: one row, as JSON
    import json
    import sys

    print(json.dumps(e2e_row(sys.argv[1], copies=int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                             log=lambda msg: print(msg, file=sys.stderr)), indent=1, default=str))
