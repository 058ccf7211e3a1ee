"""`--batch-size auto`: the memory model, on idefics2-8b's real shapes, and the config around it."""
from __future__ import annotations

import pytest

from pageray.extractors.batching import AUTO_MAX, CPU_BATCH, fit_batch, page_cost, resolve_batch_size
from pageray.pipeline.bench.models import idefics2_8b_config
from pageray.pipeline.config import RunConfig
from pageray.pipeline.errors import ConfigError

GIB = 2 ** 30


@pytest.fixture(scope="module")
def config_8b():
    return idefics2_8b_config(32001, 0, 32003)


def test_a_page_of_idefics2_8b_costs_its_kv_cache_and_more(config_8b):
    cost = page_cost(config_8b, prompt_tokens=1200, new_tokens=512, dtype_bytes=2)
    kv = 2 * 32 * 8 * 128 * (1200 + 512) * 2  # K and V, 32 layers, 8 KV heads of 128, bf16
    assert kv < cost.per_page < 2 * kv
    assert 1 * GIB < cost.fixed < 8 * GIB  # 64 crops through SigLIP-so400m


def test_batch_grows_with_free_memory_and_stays_in_bounds(config_8b):
    cost = page_cost(config_8b, 1200, 512, 2)
    h100_free, h200_free = 80 * GIB - 17 * GIB, 141 * GIB - 17 * GIB  # after 8.4 B bf16 weights
    sizes = [fit_batch(free, cost) for free in (2 * GIB, 20 * GIB, h100_free, h200_free)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] <= AUTO_MAX
    assert 100 <= sizes[2] <= AUTO_MAX  # an H100 holds ~200 pages of KV at 512 new tokens
    longer = page_cost(config_8b, 1200, 4096, 2)
    assert fit_batch(h100_free, longer) < sizes[2]


def test_explicit_sizes_stay_and_cpu_gets_a_small_batch():
    assert resolve_batch_size(3, None, "cuda:0", 1200, 512) == 3
    assert resolve_batch_size("auto", None, "cpu", 1200, 512) == CPU_BATCH


def test_config_takes_auto_or_a_number():
    base = dict(inputs=["x"], out="o", schema_ref="invoice")
    assert RunConfig(**base).batch_size == "auto"
    assert RunConfig(**base, batch_size="16").batch_size == 16
    with pytest.raises(ConfigError, match="batch.size"):
        RunConfig.build(**base, batch_size="lots")
