"""The bench's output: the side-by-side summary, the plain-text table and the JSON file."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pageray.pipeline.bench.batching import batching_summary


def summary(rows: list[dict]) -> dict:
    """Today's path and the new one side by side: the figures the issue asks for."""
    if rows and all("workload" in r for r in rows):  # the batching rows alone (--batching only)
        return {"batching": batching_summary(rows)}
    by = {r["name"]: r for r in rows}
    get = lambda name, key: by.get(name, {}).get(key)  # noqa: E731
    out = {
        "host_ms_per_page": {"today": get("pageray-generate", "host_ms_per_page"),
                             "new": get("pageray", "host_ms_per_page")},
        "host_ms_per_step": {f"batch {r['batch']}": {"today": r["old_ms_per_step"], "new": r["new_ms_per_step"]}
                             for r in rows if r["name"].startswith("host-step-")},
        "cpu_stage_pages_per_core": {"today": get("cpu-stage-today", "pages_per_cpu_s"),
                                     "new": get("cpu-stage-new", "pages_per_cpu_s")},
        "pages_per_s": {r["name"]: r["pages_per_s"] for r in rows if "vs_baseline" in r or r["name"] == "e2e-ray"},
    }
    b = get("pageray", "batch")
    out["host_ms_per_step"][f"in the model run, batch {b}"] = {
        "today": get("pageray-generate", "host_ms_per_step"), "new": get("pageray", "host_ms_per_step")}
    batching = batching_summary(rows)
    if batching:
        out["batching"] = batching
    return out


COLUMNS = (("name", "config"), ("device", "device"), ("pages", "pages"), ("batch", "batch"),
           ("new_tokens", "new tok"), ("wall_s", "wall s"), ("pages_per_s", "pages/s"),
           ("pages_per_cpu_s", "pages/cpu-s"), ("tokens_per_s", "out tok/s"), ("host_ms_per_page", "host ms/page"),
           ("host_ms_per_step", "host ms/step"), ("peak_mem_gib", "peak GiB"), ("gpu_busy", "GPU busy"),
           ("vs_baseline", "x baseline"), ("pct_of_floor", "% of floor"), ("occupancy", "occupancy"),
           ("vs_static", "x static"), ("tokens_match_reference", "tokens = ref"), ("note", "note"))


def _fmt(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key == "gpu_busy":
        return f"{100 * value:.0f}%"
    if isinstance(value, bool):
        return str(value).lower()
    if key in ("vs_baseline", "vs_static"):
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


def write_json(rows: list[dict], path: str | Path, options: Any = None, extra: dict | None = None) -> None:
    """`options`: the bench's BenchOptions (bench.harness, which imports this), a dataclass, or None."""
    payload = {"options": asdict(options) if options else None, "summary": summary(rows), "rows": rows, **(extra or {})}
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


