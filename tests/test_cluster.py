"""A real two-node Ray cluster on this machine: both nodes' extractors process pages.

Head and worker are separate `ray start --block` nodes (each with its own temp dir and ports,
see tests/clusters.py), each declaring one GPU. This machine has no CUDA, so each extractor
gets a Ray GPU id and still loads the model on CPU (`pick_device`). The driver is `pageray
extract` joining the cluster through RAY_ADDRESS, as on a real cluster's head node.

Each node declares 2 CPUs (logical; the machine has 2 cores). With 1 CPU per node the run
never starts: Ray Data's file-listing task (ListFiles, under read_parquet) always asks for one
whole CPU, and a GPU actor reserves 1 CPU unless told otherwise, so with one extractor (1 CPU)
and one render actor (0.5 CPU) placed, no node has a whole CPU left for the listing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from cheap import SMALL_RENDER_FLAGS
from clusters import BIN, Cluster, cluster_env

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
COPIES = 8  # 80 pages, small renders: a backlog both extractors draw from
ERROR_FILES = {"corrupt_truncated.pdf": "render_error", "encrypted_password_secret.pdf": "encrypted"}


def expected_pages(path: Path) -> list[int]:
    """Pages the pipeline must write for one input file: one row per page, one row for a
    document that cannot be opened (page 0)."""
    import pymupdf

    try:
        doc = pymupdf.open(path)
    except Exception:  # noqa: BLE001 - any unopenable file is one error row
        return [0]
    with doc:
        if doc.needs_pass or doc.page_count == 0:
            return [0]
        return list(range(doc.page_count))


@pytest.fixture()
def two_nodes():
    cluster = Cluster(cluster_env())
    try:
        t0 = time.monotonic()
        cluster.start_head(num_cpus=2, num_gpus=1, dashboard=False)
        cluster.wait_for_nodes(1)
        cluster.start_worker(num_cpus=2, num_gpus=1)
        nodes = cluster.wait_for_nodes(2)
        print(f"two nodes up in {time.monotonic() - t0:.0f} s")
        yield cluster, nodes
    finally:
        t1 = time.monotonic()
        cluster.stop()
        print(f"cluster stopped in {time.monotonic() - t1:.0f} s")


def test_pages_are_extracted_on_both_nodes(two_nodes, samples, tiny_model, tmp_path):
    cluster, nodes = two_nodes
    assert len(nodes) == 2
    assert all(n["Resources"].get("GPU") == 1 for n in nodes), nodes
    node_ids = {n["NodeID"] for n in nodes}

    docs = tmp_path / "docs"
    for i in range(COPIES):
        shutil.copytree(samples, docs / f"copy{i}")
    out = tmp_path / "out"
    t0 = time.monotonic()
    run = subprocess.run(
        [str(BIN / "pageray"), "extract", str(docs), "--schema", "invoice", "--model", str(tiny_model),
         "--max-new-tokens", "16", "--batch-size", "2", *SMALL_RENDER_FLAGS, "--out", str(out)],
        env={**cluster.env, "RAY_ADDRESS": cluster.gcs_address}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300)
    print(f"pageray extract on the cluster: {time.monotonic() - t0:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + cluster.logs()

    records = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert [r["state"] for r in records] == ["succeeded"]

    rows = duckdb.sql(f"select source_uri, page_index, status, valid, worker "
                      f"from read_parquet('{out}/data/*.parquet')").fetchall()
    assert len(rows) == records[0]["pages"]

    # Every page of every input exactly once.
    seen = Counter((uri, page) for uri, page, *_ in rows)
    assert [k for k, n in seen.items() if n > 1] == []
    expected = {(str(p), page) for p in sorted(docs.rglob("*")) if p.is_file() for page in expected_pages(p)}
    assert set(seen) == expected

    by_node = Counter(worker.split(":")[0] for *_, worker in rows)
    print(f"pages per node: {sorted(by_node.values())}")
    assert set(by_node) <= node_ids, f"pages per node: {dict(by_node)}; cluster nodes: {sorted(node_ids)}"

    # Fake GPUs: the extractors fell back to CPU instead of failing to load the model on CUDA.
    for uri, page, status, valid, _ in rows:
        name = Path(uri).name
        if name in ERROR_FILES:
            assert status == ERROR_FILES[name], (uri, page, status)
        else:
            assert status not in ("model_error", "render_error", "encrypted"), (uri, page, status)
        if status == "ok":
            assert valid, (uri, page)
    assert any(status == "ok" for _, _, status, _, _ in rows)

    # Pages on both nodes: work is handed out once both extractors have loaded the model
    # (pipeline.driver.run waits for the pool), so a node slower to start is not left idle.
    assert set(by_node) == node_ids, f"pages on one node only: {dict(by_node)}; cluster nodes: {sorted(node_ids)}"
