#!/usr/bin/env python
"""`pageray bench` on a lent H100/H200, as that machine is (Python 3.12, torch, transformers,
torchvision, sentencepiece; no ray, PyMuPDF, xgrammar, mistral-common, pydantic or jsonschema;
no network). Two steps:

  here:   python benchmarks/device_bench.py prepare
          pages rendered to benchmarks/pages/ (PNG, tracked: they travel with the working tree);
          Idefics2's real tokenizer as a processor folder, and the wheels the device lacks, in
          benchmarks/device/ (ignored by benchmarks/.gitignore: name it in the device call's carry)
  there:  python3 benchmarks/device_bench.py run
          installs the carried wheels into /tmp/pageray-site, builds the random-init idefics2-8b
          on the GPU once, runs first the batching rows (one mixed-answer-length workload, the same
          pages and per-row stop steps in each: the model card's batched generate, pageray static,
          pageray continuous, continuous with CUDA graphs where the engine has them; see
          pipeline/bench/batching.py), then baseline / pageray-generate / pageray /
          pageray-unconstrained at 128 and 512 new tokens, and writes
          benchmarks/results/<date>-<device>.json (and a copy under $OUT, which is what comes back)

`run --cpu --model FOLDER` is the same path on a CPU with a tiny checkpoint (tests/test_bench.py).
See benchmarks/README.md for the device call and the time it needs.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository, when not installed
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAGES = ROOT / "benchmarks" / "pages"
DEVICE = ROOT / "benchmarks" / "device"
RESULTS = ROOT / "benchmarks" / "results"
SITE = Path("/tmp/pageray-site")
# What the device image lacks (/work/.library/device/KINDS.md), at the versions installed here.
WHEELS = ("xgrammar", "apache-tvm-ffi", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
          "typing-extensions", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py")
NEEDED = ("xgrammar", "pydantic", "jsonschema")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")
# (new tokens, pages, baseline pages): sized to finish well inside 8 minutes of an H200
PLANS = {"cuda": [(128, 16, 8), (512, 8, 4)], "cpu": [(8, 2, 2), (16, 2, 1)]}
# The batching workload per device: on the GPU full-size pages and 32 slots; no page-alone
# reference there (bf16 sums differ with the batch's make-up, so token equality with a one-page
# run is not expected; the token-exact proof is CPU fp32, tests/test_engine*.py)
# One timed pair on the GPU (its timings are steady, unlike a shared CPU's), sized to about 3 of
# the call's minutes by estimate: ~1,700 static and ~800 continuous decode steps at ~35 ms.
BATCHING = {"cuda": dict(batching_pages=96, slots=16, answer_median=64.0, answer_p95=256.0, answer_seed=0,
                         batching_edge=0, repeats=1, reference=False),
            "cpu": dict(batching_pages=4, slots=2, answer_median=64.0, answer_p95=160.0, answer_seed=0,
                        batching_edge=490, repeats=1, reference=True)}
ROW_KEYS = ("name", "device", "new_tokens", "pages", "batch", "wall_s", "pages_per_s", "tokens_per_s", "peak_mem_gib",
            "gpu_busy", "vs_baseline", "pct_of_floor", "host_ms_per_page", "host_ms_per_step", "note")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def prepare(args) -> None:
    from importlib.metadata import version

    from pageray.pipeline.bench.models import processor_folder
    from pageray.pipeline.bench.pages import render_pages, save_pages

    out = Path(args.dir)
    if args.pages or not (PAGES / "pages.json").is_file():
        pages, _ = render_pages(6)  # the six distinct pages of the sample documents
        shutil.rmtree(PAGES, ignore_errors=True)
        save_pages(pages, PAGES)
    if not (out / "processor" / "tokenizer.json").is_file():
        processor_folder(out / "processor")
    if args.wheels:
        wheels = out / "wheels"
        shutil.rmtree(wheels, ignore_errors=True)
        pins = [f"{name}=={version(name)}" for name in WHEELS]
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels), *pins],
                       check=True)
    for path in (PAGES, out / "processor", out / "wheels"):
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {_size(path) / 2 ** 20:.1f} MiB")
    print(f"device call: carry [{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}], "
          "command: PYTHONUNBUFFERED=1 python3 benchmarks/device_bench.py run")


def bootstrap(wheels: Path) -> None:
    """Install the carried wheels (all of them, so the versions are the ones pinned here, whatever
    the image holds) into SITE, then start again with SITE first on the path."""
    files = sorted(wheels.glob("*.whl"))
    if files and not os.environ.get("PAGERAY_BENCH_SITE"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, files)], check=True)
        path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH")) if p)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONPATH": path,
                                                                 "PAGERAY_BENCH_SITE": str(SITE)})
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"device_bench: {missing} not importable and no wheels in {wheels} (run `python "
                 "benchmarks/device_bench.py prepare` where pip works, and carry benchmarks/device)")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _environment(device: str) -> dict:
    import platform
    from importlib.metadata import version

    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
           "carried_wheels_at": os.environ.get("PAGERAY_BENCH_SITE")}
    for name in ("transformers", "xgrammar", "tokenizers", "numpy", "pillow", "torchvision"):
        try:
            env[name] = version(name)
        except Exception:  # noqa: BLE001 - not installed
            env[name] = None
    return env


def run(args) -> int:
    bootstrap(Path(args.dir) / "wheels")
    import torch

    from pageray.pipeline.bench.harness import BenchOptions, run_bench
    from pageray.pipeline.bench.models import build_bench_model
    from pageray.pipeline.bench.batching import batching_summary
    from pageray.pipeline.bench.report import format_table, summary

    started = time.monotonic()
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.torch_threads)
    plan = PLANS[device]
    plan = list(zip(args.new_tokens or [p[0] for p in plan], args.pages or [p[1] for p in plan],
                    args.baseline_pages or [p[2] for p in plan]))
    model = args.model or ("random-8b" if device == "cuda" else "tiny")
    processor = Path(args.dir) / "processor"
    bench = build_bench_model(model, device, str(processor) if processor.is_dir() else None)
    env = _environment(device)
    print(f"device_bench: {json.dumps(env)}", flush=True)
    slug = "".join(c if c.isalnum() else "-" for c in env["device"].lower()).strip("-") if device == "cuda" else "cpu"
    name = f"{datetime.now(timezone.utc):%Y-%m-%d}-{slug}.json"
    targets = [Path(args.results) / name] + ([Path(os.environ["OUT"]) / name] if os.environ.get("OUT") else [])
    payload = {"script": "benchmarks/device_bench.py run", "environment": env, "model": bench.label,
               "batching": None, "configurations": [], "runs": [], "skipped": []}

    def save() -> None:  # after each step: a run cut short still leaves its rows
        payload["elapsed_s"] = time.monotonic() - started
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(payload, indent=2, default=str) + "\n")

    if args.batching:
        workload = {**BATCHING[device], **{k: v for k, v in (("batching_pages", args.batching_pages),
                                                                ("slots", args.slots)) if v}}
        opts = BenchOptions(model=model, device=device, pages=6, pages_dir=str(PAGES), batching="only", **workload)
        rows = _step(payload, "batching", lambda: run_bench(opts, bench=bench))
        payload["batching"] = {"options": asdict(opts), "summary": batching_summary(rows), "rows": rows}
        save()
        print(format_table(rows), flush=True)
    for i, (new_tokens, pages, base_pages) in enumerate(plan):
        if time.monotonic() - started > args.budget_s:
            payload["skipped"].append({"new_tokens": new_tokens, "reason": f"over --budget-s {args.budget_s}"})
            continue
        opts = BenchOptions(model=model, device=device, pages=pages, new_tokens=new_tokens, batch_size=args.batch_size,
                            baseline_pages=base_pages, pages_dir=str(PAGES), host_step=i == 0, cpu_stage=i == 0,
                            host_step_budget=args.host_step_budget, warmup=args.warmup, batching="off")
        rows = _step(payload, f"{new_tokens}-token", lambda: run_bench(opts, bench=bench), new_tokens=new_tokens)
        payload["configurations"] += [{k: r.get(k) for k in ROW_KEYS} for r in rows if "vs_baseline" in r]
        payload["runs"].append({"options": asdict(opts), "summary": summary(rows), "rows": rows})
        save()
        print(format_table(rows), flush=True)
    print(f"wrote {', '.join(map(str, targets))} in {time.monotonic() - started:.0f} s")
    return 0 if payload["configurations"] else 1


def _step(payload: dict, what: str, step, **ident) -> list[dict]:
    """One step's rows; a failure is recorded under "skipped" and the other steps still run
    (one lease: keep the figures that were measured)."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001
        import traceback

        payload["skipped"].append({"step": what, **ident, "reason": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc()[-4000:]})
        print(f"device_bench: the {what} run failed: {type(exc).__name__}: {exc}", flush=True)
        return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="device_bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="here: pages, the processor folder and the wheels")
    prep.add_argument("--dir", default=str(DEVICE), help="where the processor folder and the wheels go")
    prep.add_argument("--pages", action="store_true", help="render the pages again even if benchmarks/pages has them")
    prep.add_argument("--no-wheels", dest="wheels", action="store_false", help="skip downloading the wheels")
    go = sub.add_parser("run", help="there: the benchmark")
    go.add_argument("--dir", default=str(DEVICE), help="the carried folder (processor/, wheels/)")
    go.add_argument("--results", default=str(RESULTS), help="folder for <date>-<device>.json")
    go.add_argument("--cpu", action="store_true", help="the CPU path, even where CUDA is available")
    go.add_argument("--model", default=None, help="default: random-8b on CUDA, tiny on CPU")
    go.add_argument("--new-tokens", type=_ints, default=None, metavar="N,N", help="per configuration (128,512)")
    go.add_argument("--pages", type=_ints, default=None, metavar="N,N", help="pages per configuration (16,8)")
    go.add_argument("--baseline-pages", type=_ints, default=None, metavar="N,N", help="baseline pages (8,4)")
    go.add_argument("--batch-size", type=int, default=8)
    go.add_argument("--host-step-budget", type=int, default=256)
    go.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up runs")
    go.add_argument("--torch-threads", type=int, default=1, help="CPU path only")
    go.add_argument("--no-batching", dest="batching", action="store_false", help="skip the batching rows")
    go.add_argument("--batching-pages", type=int, default=None, help="batching workload pages (GPU 96, CPU 4)")
    go.add_argument("--slots", type=int, default=None, help="batching decode slots (GPU 16, CPU 2)")
    go.add_argument("--budget-s", type=float, default=330.0,
                    help="start no further configuration after this many seconds")
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
