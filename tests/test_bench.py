"""The throughput benchmark harness on CPU with the tiny model (no speed assertions), and the
FLOP / byte arithmetic of its floor against hand calculations."""
from __future__ import annotations

import json
import re

import pytest

from pipeline.bench.harness import BenchOptions, bench_command, bench_command_options, format_table
from pipeline.bench.flops import decode_bytes_per_step, floor_seconds_per_page, page_flops

ROWS = ("baseline", "pageray", "pageray-unconstrained", "cpu-render", "cpu-preprocess", "cpu-stage", "floor")


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
    from pipeline.bench.runs import union_seconds

    assert union_seconds([(0.0, 1.0), (0.5, 1.5), (3.0, 4.0), (3.2, 3.4)]) == pytest.approx(2.5)
    assert union_seconds([]) == 0.0


def test_options_and_table():
    assert bench_command_options(model="tiny", pages=None) == BenchOptions(model="tiny")
    with pytest.raises(ValueError, match="unknown bench option"):
        bench_command_options(pagez=3)
    with pytest.raises(ValueError, match="new_tokens"):
        BenchOptions(new_tokens=0)
    with pytest.raises(ValueError, match="random-8b"):  # refused before any work on a CPU machine
        bench_command(model="random-8b", device="cpu", log=lambda msg: None)
    text = format_table([{"name": "x-row", "pages_per_s": 1.5, "gpu_busy": None, "note": "a note"}])
    header, rule, row = text.splitlines()
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]  # the columns, as the rule marks them
    cells = {header[a:b].strip(): row[a:b].strip() for a, b in spans[:-1]}
    assert (cells["config"], cells["pages/s"], cells["GPU busy"], cells["device"]) == ("x-row", "1.5", "n/a", "n/a")
    assert row[spans[-1][0]:] == "a note"


def test_harness_runs_on_cpu_with_the_tiny_model(tmp_path):
    out, printed = tmp_path / "bench.json", []
    rows = bench_command(json_out=str(out), echo=printed.append, log=lambda msg: None,
                         model="tiny", pages=2, new_tokens=8, batch_size=2, device="cpu", warmup=False)
    by_name = {r["name"]: r for r in rows}
    assert set(ROWS) <= set(by_name)
    for name in ROWS:
        assert by_name[name]["pages_per_s"] > 0, name
    for name in ("baseline", "pageray", "pageray-unconstrained"):
        row = by_name[name]
        assert row["pages"] == 2 and row["tokens_per_s"] > 0
        assert row["peak_mem_gib"] is None and row["gpu_busy"] is None  # n/a on CPU
        assert row["tokens_per_s"] * row["wall_s"] == pytest.approx(2 * 8)  # fixed length, EOS ignored
    assert by_name["pageray"]["vs_baseline"] > 0 and by_name["pageray"]["pct_of_floor"] > 0
    assert "constrained_overhead_pct" in by_name["pageray"]
    assert by_name["cpu-stage"]["pages_per_cpu_s"] > 0 and by_name["floor"]["gflop_per_page"] > 0
    assert len(printed) == 1 and all(name in printed[0] for name in ROWS)
    saved = json.loads(out.read_text())
    assert [r["name"] for r in saved["rows"]] == [r["name"] for r in rows]
    assert saved["options"]["new_tokens"] == 8
