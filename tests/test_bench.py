"""The throughput benchmark on CPU with the tiny model (no speed assertions): the harness, the
device script's CPU path, the model-free host-per-step rows, the saved pages; and the FLOP / byte
arithmetic of its floor against hand calculations."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pageray.pipeline.bench.harness import BenchOptions, bench_command, bench_command_options, format_table
from pageray.pipeline.bench.flops import decode_bytes_per_step, floor_seconds_per_page, page_flops

MODEL_ROWS = ("baseline", "pageray-generate", "pageray", "pageray-unconstrained")
ROWS = MODEL_ROWS + ("cpu-render", "cpu-preprocess-today", "cpu-preprocess-new", "cpu-stage-today", "cpu-stage-new",
                     "host-step-b8", "floor")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_config():
    from transformers import Idefics2Config

    return Idefics2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=980, patch_size=14),
        perceiver_config=dict(hidden_size=64, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                              resampler_head_dim=16, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=1024, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
        image_token_id=4,
    )


def test_page_flops_matches_a_hand_calculation(tiny_config):
    # Two crops of 10 and 6 real patches, a 20-token prompt, 3 new tokens. 2 FLOPs per MAC.
    # Vision, per crop of n patches (d=32, mlp 64, 1 layer):
    #   patch conv 2*n*(3*14*14)*32 = 37632n; q,k,v,o 4 * 2*n*32*32 = 8192n;
    #   QK^T + AV 2 * 2*n*n*32 = 128n^2; fc1 + fc2 2 * 2*n*32*64 = 8192n
    vision = sum(37632 * n + 8192 * n + 128 * n * n + 8192 * n for n in (10, 6))
    assert vision == 552_960 + 328_704
    # Connector, per crop: projection gate+up 2 * 2*n*32*128, down 2*n*128*64 = 32768n; perceiver
    # (4 latents, 2 heads x 16, 1 kv head, keys n+4): q 2*4*64*32, k+v 2 * 2*(n+4)*64*16,
    # QK^T + AV 2 * 2*4*(n+4)*32, o 2*4*32*64, MLP 3 * 2*4*64*256
    connector = sum(32768 * n + 16384 + 4096 * (n + 4) + 512 * (n + 4) + 16384 + 393216 for n in (10, 6))
    assert connector == 818_176 + 668_672
    # Text, per token and layer (d=64, 2 heads x 32, 1 kv head, mlp 128): q 64x64, k 64x32,
    # v 64x32, o 64x64, gate/up/down 64x128 x3 = 36864 MACs; 2 layers -> 147456 FLOPs/token.
    per_token = 2 * 2 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128)
    head = 2 * 64 * 1024
    # prefill: 20 tokens; causal attention: position i sees i keys, 4*i*64 per layer; 1 LM head
    prefill = 20 * per_token + 2 * sum(4 * i * 64 for i in range(1, 21)) + head
    assert prefill == 3_187_712
    # decode: tokens 2 and 3 see 21 and 22 keys
    decode = sum(per_token + 2 * 4 * keys * 64 + head for keys in (21, 22))
    assert decode == 579_072
    got = page_flops(tiny_config, [10, 6], prompt_tokens=20, new_tokens=3)
    assert got == {"vision": vision, "connector": connector, "prefill": prefill, "decode": decode,
                   "total": vision + connector + prefill + decode}
    assert page_flops(tiny_config, 10, 20, 1)["decode"] == 0


def test_decode_bytes_and_floor(tiny_config):
    # weights: 2 layers x 36864 + LM head 64x1024; KV: batch 2 x 2 layers x (K,V) x 1 head x 32 x 10
    weights, kv = 2 * 36864 + 64 * 1024, 2 * 2 * 2 * 1 * 32 * 10
    assert decode_bytes_per_step(tiny_config, 2, 10, 2) == (weights + kv) * 2
    assert decode_bytes_per_step(tiny_config, 1) == weights * 2
    pages = [([10, 6], 20)]
    slow = floor_seconds_per_page(tiny_config, pages, 3, 2, flops_per_s=1e9, bytes_per_s=1e3)
    fast = floor_seconds_per_page(tiny_config, pages, 3, 2, flops_per_s=1e9, bytes_per_s=1e12)
    assert slow["decode_s"] > fast["decode_s"] > 0 and slow["prefill_s"] == fast["prefill_s"] > 0


def test_busy_time_is_the_union_of_kernel_intervals():
    from pageray.pipeline.bench.busy import union_seconds

    assert union_seconds([(0.0, 1.0), (0.5, 1.5), (3.0, 4.0), (3.2, 3.4)]) == pytest.approx(2.5)
    assert union_seconds([]) == 0.0


def test_options_and_table():
    assert bench_command_options(model="tiny", pages=None) == BenchOptions(model="tiny")
    with pytest.raises(ValueError, match="unknown bench option"):
        bench_command_options(pagez=3)
    with pytest.raises(ValueError, match="new_tokens"):
        BenchOptions(new_tokens=0)
    with pytest.raises(ValueError, match="busy"):
        BenchOptions(busy="sometimes")
    with pytest.raises(ValueError, match="baseline_pages"):
        BenchOptions(baseline_pages=0)
    with pytest.raises(ValueError, match="batching must be one of"):
        BenchOptions(batching="sometimes")
    with pytest.raises(ValueError, match="median and p95"):
        bench_command(answer_median=300, answer_p95=200, log=lambda msg: None)  # refused before any work
    with pytest.raises(ValueError, match="slots"):
        BenchOptions(slots=0)
    with pytest.raises(ValueError, match="random-8b"):  # refused before any work on a CPU machine
        bench_command(model="random-8b", device="cpu", log=lambda msg: None)
    text = format_table([{"name": "x-row", "pages_per_s": 1.5, "gpu_busy": None, "note": "a note"}])
    header, rule, row = text.splitlines()
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]  # the columns, as the rule marks them
    cells = {header[a:b].strip(): row[a:b].strip() for a, b in spans[:-1]}
    assert (cells["config"], cells["pages/s"], cells["GPU busy"], cells["device"]) == ("x-row", "1.5", "n/a", "n/a")
    assert cells["host ms/page"] == cells["host ms/step"] == "n/a"
    assert row[spans[-1][0]:] == "a note"


def test_host_step_drives_both_planners_over_the_real_vocabulary(tiny_model):
    from pageray.extractors.extractor import ExtractFields, ExtractSettings
    from pageray.extractors.model.loading import ModelSpec
    from pageray.pipeline.bench.hoststep import allowed_tokens, drive, host_step_rows
    from pageray.schemas import load_schema

    ex = ExtractFields(ModelSpec(model=str(tiny_model)), load_schema("invoice"), ExtractSettings(batch_size=2))
    grammar = ex.grammar
    assert grammar.vocab_size == 32003
    plan = grammar.new_rows(1, 400, None).plan(0)  # far from the reserve window: the grammar's mask
    allowed = allowed_tokens(plan.bitmask[0], grammar.vocab_size).tolist()
    assert grammar.spell(b"{")[0] in allowed and all(grammar.token_bytes[t].startswith(b"{") for t in allowed)
    old, new = (drive(grammar, 3, 12, incremental, seed=1) for incremental in (False, True))
    assert old["texts"] == new["texts"] and all(json.loads(t) is not None for t in new["texts"])
    assert len(old["times"]) == len(new["times"]) > 0 and all(new["in_window"])  # budget < reserve: all forced
    [row] = host_step_rows(grammar, budget=12, batches=(2,))
    assert row["same_text"] and row["old_ms_per_step"] > 0 and row["host_ms_per_step"] == row["new_ms_per_step"] > 0


def test_saved_pages_are_the_rendered_pixels(tmp_path):
    from pageray.pipeline.bench.pages import load_pages, render_pages, save_pages

    pages, _ = render_pages(3)
    assert len(save_pages(pages + pages[:1], tmp_path)) == 3  # a repeated page is saved once
    loaded = load_pages(4, tmp_path)
    assert [p["image"] for p in loaded] == [bytes(p["image"]) for p in pages + pages[:1]]
    assert loaded[0] is loaded[3] and loaded[0]["doc_id"] == pages[0]["doc_id"]
    shipped = load_pages(6, ROOT / "benchmarks" / "pages")  # what the device script reads
    assert {(p["image_width"], p["image_height"]) for p in shipped} == {(1515, 1960), (1386, 1960), (1960, 1515)}


def test_processor_folder_has_the_real_tokenizer(tmp_path):
    from pageray.extractors.model.loading import ModelSpec, load_processor
    from pageray.extractors.vision.pixels import check_processor
    from pageray.pipeline.bench.models import idefics2_8b_config, processor_folder

    processor = load_processor(ModelSpec(model=str(processor_folder(tmp_path / "processor"))))
    assert not list((tmp_path / "processor").glob("*.safetensors"))  # a tokenizer, no weights
    tok = processor.tokenizer
    assert len(tok) == 32003 and tok.convert_tokens_to_ids("<image>") == 32001
    check_processor(processor, split=True)  # what the extractor's PageEncoder insists on
    config = idefics2_8b_config(tok.convert_tokens_to_ids("<image>"), tok.pad_token_id, len(tok))
    assert config.text_config.vocab_size == 32003 and config.image_token_id == 32001


def _fixed_length(row: dict) -> None:
    assert row["tokens_per_s"] * row["wall_s"] == pytest.approx(row["pages"] * row["new_tokens"]), row["name"]


def test_harness_runs_on_cpu_with_the_tiny_model(tmp_path, tiny_model):
    out, printed = tmp_path / "bench.json", []
    rows = bench_command(json_out=str(out), echo=printed.append, log=lambda msg: None, model=str(tiny_model),
                         pages=2, new_tokens=8, batch_size=2, device="cpu", warmup=False, baseline_pages=1,
                         host_step_budget=16, host_step_batches=(8,), batching="off")
    by_name = {r["name"]: r for r in rows}
    assert set(ROWS) <= set(by_name)
    for name in ROWS:
        if name.startswith("host-step-"):  # the host's step alone: no pages go through it
            continue
        assert by_name[name]["pages_per_s"] > 0, name
    assert by_name["baseline"]["pages"] == 1
    for name in MODEL_ROWS:
        row = by_name[name]
        assert row["peak_mem_gib"] is None and row["gpu_busy"] is None  # n/a on CPU
        assert row["host_ms_per_page"] > 0 and row["vs_baseline"] > 0 and row["pct_of_floor"] > 0
        _fixed_length(row)  # exactly new_tokens per page, EOS ignored
    for name in ("pageray-generate", "pageray"):
        assert by_name[name]["ok"] == 2 and by_name[name]["host_ms_per_step"] > 0, name
    for name in ("pageray", "pageray-unconstrained"):  # our decode loop measures its wait for the tokens
        row = by_name[name]
        assert row["pages_per_s"] == pytest.approx(row["pages"] / row["wall_s"]), name
        assert 0 < row["wait_ms_per_step"] < 1e3 * row["wall_s"], name  # in ms, part of the run's wall time
    assert "constrained_overhead_pct" in by_name["pageray"]
    assert by_name["host-step-b8"]["same_text"] is True
    assert by_name["cpu-stage-new"]["pages_per_cpu_s"] > 0 and by_name["floor"]["gflop_per_page"] > 0
    assert len(printed) == 1 and all(name in printed[0] for name in ROWS)
    saved = json.loads(out.read_text())
    assert [r["name"] for r in saved["rows"]] == [r["name"] for r in rows]
    assert saved["options"]["new_tokens"] == 8
    summary = saved["summary"]
    assert summary["host_ms_per_page"]["today"] == by_name["pageray-generate"]["host_ms_per_page"]
    assert summary["host_ms_per_page"]["new"] == by_name["pageray"]["host_ms_per_page"]
    assert set(summary["host_ms_per_step"]["batch 8"]) == {"today", "new"}


BATCHING_ROWS = ["generate-batch", "static-batching", "continuous-batching", "continuous-graphs"]


def _check_batching(summary: dict, rows: list[dict]) -> None:
    """The issue's batching figures: present, in range, token-exact, and fewer decode steps
    continuous than static on the stated workload (a count of work, not a time)."""
    assert [r["name"] for r in rows] == BATCHING_ROWS
    for key in ("pages", "slots", "median", "p95", "seed", "budgets"):
        assert key in summary["workload"], key
    for name in ("static", "continuous", "generate-batch"):
        assert 0 <= summary["occupancy"][name] <= 1, name
    assert summary["occupancy"]["continuous"] > summary["occupancy"]["static"]
    assert summary["decode_steps"]["continuous"] < summary["decode_steps"]["static"]
    assert summary["decode_steps"]["generate-batch"] == summary["decode_steps"]["static"]  # same stop steps
    assert summary["tokens_match_reference"] is True
    for key in ("pages_per_s_continuous_over_static", "pages_per_cpu_s_continuous_over_static"):
        assert summary[key]["min"] <= summary[key]["median"] <= summary[key]["max"] and summary[key]["min"] > 0
    assert "no CUDA-graph mode" in summary["continuous_graphs"] or summary["continuous_graphs"] == "measured"


def test_batching_rows_on_cpu(tmp_path, tiny_model):
    """`pageray bench --batching only`: static vs continuous batching on a seeded mixed-length workload."""
    out, printed = tmp_path / "bench.json", []
    rows = bench_command(json_out=str(out), echo=printed.append, log=lambda msg: None, model=str(tiny_model),
                         pages=3, device="cpu", batching="only", batching_pages=6, slots=2, answer_median=64,
                         answer_p95=160, repeats=2)
    saved = json.loads(out.read_text())
    assert [r["name"] for r in saved["rows"]] == [r["name"] for r in rows]
    _check_batching(saved["summary"]["batching"], rows)
    assert saved["summary"]["batching"]["workload"]["pages"] == 6 and len(
        saved["summary"]["batching"]["pages_per_s_continuous_over_static"]["each"]) == 2
    [table] = printed
    header, _, *body = table.splitlines()
    assert "occupancy" in header and "x static" in header and "tokens = ref" in header
    [cont] = [line for line in body if line.startswith("continuous-batching")]
    assert " true " in cont


BLOCKED = ("pymupdf", "fitz", "ray", "mistral_common", "typer")  # not on the device machines


@pytest.mark.slow  # a whole run of the script (~30 s on 2 cores); CI runs it
def test_device_script_cpu_path(tmp_path, tiny_model):
    """benchmarks/device_bench.py run, as on the GPU machine but on CPU with the tiny checkpoint,
    and with the packages the device lacks made unimportable (xgrammar and the others it carries
    as wheels stay: the wheels are what it installs there)."""
    runner = ("import runpy, sys\n"
              f"for m in {BLOCKED!r}: sys.modules[m] = None\n"
              "sys.argv = sys.argv[1:]\n"
              "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    cmd = [sys.executable, "-c", runner, str(ROOT / "benchmarks" / "device_bench.py"), "run", "--cpu",
           "--model", str(tiny_model), "--dir", str(tmp_path / "none"), "--results", str(tmp_path / "results"),
           "--new-tokens", "8,12", "--pages", "2,1", "--baseline-pages", "1,1", "--host-step-budget", "8",
           "--no-warmup"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)  # a hang guard
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = list((tmp_path / "results").glob("*-cpu.json"))
    assert (tmp_path / "out" / result.name).read_text() == result.read_text()  # the copy that comes back
    payload = json.loads(result.read_text())
    configs = [(c["name"], c["new_tokens"]) for c in payload["configurations"]]
    assert configs == [(name, n) for n in (8, 12) for name in MODEL_ROWS]
    for c in payload["configurations"]:
        assert c["pages_per_s"] > 0 and c["vs_baseline"] > 0 and c["pct_of_floor"] > 0
        assert c["device"] == "cpu" and "gpu_busy" in c and "peak_mem_gib" in c
        _fixed_length(c)
    assert payload["environment"]["xgrammar"] and not payload["skipped"]
    _check_batching(payload["batching"]["summary"], payload["batching"]["rows"])
    assert "continuous-batching" in done.stdout and "pageray-unconstrained" in done.stdout  # the tables
