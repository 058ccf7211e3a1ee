"""Shared fixtures: the tiny offline Idefics2 (built once), sample documents, a local Ray."""
from __future__ import annotations

import os
import re
import secrets
import urllib.request
from pathlib import Path

import hypothesis  # noqa: F401 - imported now, see below
import pytest

# hypothesis is imported here, before any test starts Ray's threads: CPython 3.11's ast module keeps
# its recursion depth in per-interpreter state, and its plugin imported hypothesis lazily at the
# terminal summary, where pytest's assertion rewriting ran ast.parse in the main thread while a
# background thread formatted a traceback (3.11 parses source lines for the ^^^ carets): a green run
# then ended in "SystemError: AST constructor recursion depth mismatch".
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# The session's Ray head (fixture ray_head) uses token authentication, which Ray reads once, when
# it is imported: this process (the in-process driver of ray_local) must carry the token from the
# start. Private clusters (tests/clusters.py) and the runs given their environment use their own.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))


def pytest_configure(config):
    # The tiny model's ops are microseconds long; with torch's two intra-op threads on a 2-core
    # machine that also runs Ray workers, each op waits on a descheduled thread (measured: 28 s
    # against 0.8 s for one 120-token batch under load). Ray workers already get one thread
    # (Ray sets OMP_NUM_THREADS from num_cpus); this gives the test process the same.
    import torch

    torch.set_num_threads(1)


# The longest tests (over a minute each on 2 cores: `.ci/run` prints the slowest), started first.
LONGEST = ("test_readme.py", "test_pydantic_e2e.py", "test_job_submit.py", "test_lost.py", "test_soak.py",
           "test_resume.py", "test_hostile.py", "test_s3.py")


def pytest_collection_modifyitems(items):
    # Marks follow what a test uses, so no Ray test lands in the fast part (`-m "not slow"`) by accident.
    for item in items:
        if {"ray_head", "ray_local"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pipeline)
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.slow)
    # Slow tests first, the longest of them before the rest: with `-n 2` each process takes the
    # next test (or module: pytest_xdist_make_scheduler) when it is free, so neither is left alone
    # with a long one at the end while the other idles. In one process the order changes nothing
    # but when a failure shows.
    def rank(item) -> tuple[bool, int]:
        name = item.path.name
        return item.get_closest_marker("slow") is None, LONGEST.index(name) if name in LONGEST else len(LONGEST)

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config, log):
    """With `-n 2`, each process takes the next test when it is free, except that the tests of a
    module with a module-scoped fixture (a run, a cluster, a loaded model) go to one process
    together: split across two, each would build the fixture (test_pipeline's run twice, test_s3's
    cluster twice)."""
    if config.getoption("dist") != "load":
        return None  # a --dist the user chose
    config.option.loadscopereorder = False  # keep the slow-first order (pytest_collection_modifyitems)
    from xdist.scheduler import LoadScopeScheduling

    shared: dict[str, bool] = {}

    def has_module_fixture(file: str) -> bool:
        if file not in shared:
            path = config.rootpath / file
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            shared[file] = re.search(r"@pytest\.fixture\(scope=.(module|class).", text) is not None
        return shared[file]

    class TestOrModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if has_module_fixture(file) else nodeid

    return TestOrModule(config, log)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from pageray.extractors.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-idefics2")


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> Path:
    from pageray.pipeline.samples import write_samples

    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture(scope="session")
def ray_head():
    """The session's one Ray cluster (one per test process with `-n 2`): a `ray start --head` node
    (2 CPUs, with the job server), started once (a Ray bring-up costs 10-30 s on a busy 2-core
    machine) and shared by every test for which a cluster of its own is not the point. Private
    clusters (tests/clusters.py) stay for tests that kill nodes or need a node's own environment.

    * A `pageray extract` (or any driver) in a subprocess joins it with
      `env=ray_head.driver_env()` (RAY_ADDRESS and the auth token; add variables as keywords).
    * `ray job submit`: `submit_job(ray_head, args)` (tests/clusters.py).
    * In this process: the `ray_local` fixture, connected to this head.
    Each driver is its own Ray job: what one test's driver sets in its runtime env (ray_local's
    crash hook, the PAGERAY_/HF_/AWS_ variables `pageray extract` forwards) reaches that job's
    workers only, and a killed driver's workers go with it."""
    from clusters import Cluster, cluster_env

    cluster = Cluster(cluster_env(RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"]))
    try:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_job_server()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_local(ray_head):
    """This process as a driver of the session's cluster (ray_head), for the pipeline tests that
    run in-process. Its workers, and only they, carry the render crash hook: a document named like
    CRASH_NAME aborts its render child (tests/test_hostile.py), wherever else this process renders."""
    import ray

    from corpus import CRASH_NAME
    from pageray.pipeline.render.isolation import CRASH_HOOK_ENV

    ray.init(address=ray_head.gcs_address, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                                       CRASH_HOOK_ENV: CRASH_NAME}})
    yield ray
    ray.shutdown()


@pytest.fixture()
def s3_bucket(monkeypatch):
    """moto's S3 server on 127.0.0.1 (no Ray), with the AWS variables pointing at it."""
    import boto3
    from clusters import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    # moto keeps its buckets in this process's memory, shared by every server it starts: start empty
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="docs")
    try:
        yield client
    finally:
        server.stop()
