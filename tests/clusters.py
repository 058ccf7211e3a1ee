"""Real Ray nodes on this machine for the slow tests: one `ray start --block` process per node.

Each node is a `ray start --block` child in its own process group (so ending the group ends
its GCS, raylet, object store, agents and workers), with its own short temp dir (Ray allows
--temp-dir per node; unix socket paths must stay under 108 bytes) and its own ports (workers
bind OS-chosen ports), so several nodes, and other tests' clusters, can share the machine.
Nodes are started with --node-ip-address=127.0.0.1; Ray 2.60 advertises the machine's routable
IP instead, but the addresses used here (GCS, dashboard) are on 127.0.0.1.

Ray's dashboard requires token authentication, so every cluster gets a token; the same
RAY_AUTH_MODE / RAY_AUTH_TOKEN must be in the environment of every node, driver and CLI call.
Set PAGERAY_TEST_KEEP_RAY_LOGS=1 to keep the nodes' temp dirs (logs) after a test.
"""
from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from processes import processes, wait_until

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AGENT_NOT_READY = "No available agent to submit job"
STARTED = "Ray runtime started."  # what `ray start` prints once its node is up


@functools.cache
def _port_slice() -> range:
    """This test process's own ports: below the kernel's ephemeral range (where outgoing
    connections and every port-0 bind land, so a port picked there and released can be taken
    again before its server binds it), split between pytest-xdist workers so two never share one."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    start = 20000  # above `ray start`'s default worker ports (10002-19999)
    width = (low - start) // max(count, 1)
    return range(start + index * width, start + (index + 1) * width)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port no server on this machine holds and this process has not handed out before."""
    ports = _port_slice()
    for _ in range(len(ports)):
        port = ports[secrets.randbelow(len(ports))]
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {ports}")


def cluster_env(**extra: str) -> dict[str, str]:
    """Environment for nodes, drivers and `ray` CLI calls of one new cluster (fresh token)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0",
           # The machine is shared: Ray's own OOM killer would kill this cluster's workers for
           # memory that other processes use. The kernel's OOM killer still guards the machine.
           "RAY_memory_monitor_refresh_ms": "0",
           # A busy 2-core machine can starve a raylet for a while; without slack the GCS
           # declares the node dead (missed health checks) and the run fails.
           "RAY_health_check_timeout_ms": "30000", "RAY_health_check_failure_threshold": "20",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _own_group_dies_with_parent() -> None:
    """In the child before exec: a new session (so the whole node can be signalled as one
    process group), and SIGTERM when the test process dies, so a killed pytest leaves no node."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Node:
    proc: subprocess.Popen
    temp_dir: str
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the node's own group: see _own_group_dies_with_parent
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        """SIGKILL the node's group and any process of this node that left it (found by the
        node's unique temp dir on its command line); remove the temp dir."""
        self.signal(signal.SIGKILL)
        self.wait(10)
        for pid in self._stragglers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not os.environ.get("PAGERAY_TEST_KEEP_RAY_LOGS"):  # set it to debug a failed run
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _stragglers(self) -> list[int]:
        own = self.temp_dir.encode()
        return processes(lambda cmdline: any(own + end in cmdline + b"\0" for end in (b"/", b"\0")))

    def started(self) -> bool:
        """`ray start` has printed that the node is up (its raylet registered with the GCS)."""
        try:
            return STARTED in self.log.read_text(errors="replace")
        except OSError:
            return False

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Cluster:
    """A head (GCS + dashboard/job server) and any number of worker nodes on this machine."""
    env: dict[str, str]
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def driver_env(self, **extra: str) -> dict[str, str]:
        """Environment for a driver (`pageray extract`, `python -c ...`) that joins this cluster."""
        return {**self.env, "RAY_ADDRESS": self.gcs_address, **extra}

    def _start(self, args: list[str], name: str) -> Node:
        temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        log = Path(tempfile.mkstemp(prefix=f"pageray-{name}-", suffix=".log", dir="/tmp")[1])
        cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1",
               f"--temp-dir={temp_dir}", "--disable-usage-stats", "--object-store-memory=300000000",
               f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               # 0/0: workers bind ports the OS picks, never a fixed range that another
               # cluster on this machine (`ray start` defaults to 10002-19999) also uses.
               "--min-worker-port=0", "--max-worker-port=0", *args]
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    preexec_fn=_own_group_dies_with_parent)
        node = Node(proc, temp_dir, log)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int, num_gpus: int = 0, dashboard: bool = True) -> Node:
        args = ["--head", f"--port={self.gcs_port}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
                f"--ray-client-server-port={free_port()}"]
        if dashboard:
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
        else:
            args += ["--include-dashboard=false"]
        return self._start(args, "head")

    def start_worker(self, num_cpus: int, num_gpus: int = 0) -> Node:
        return self._start([f"--address={self.gcs_address}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"],
                           "worker")

    def alive_nodes(self) -> list[dict]:
        """`ray.nodes()` of the cluster, asked from a separate process (this one stays Ray-free)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
                "print('NODES=' + json.dumps([{'NodeID': n['NodeID'], 'Resources': n['Resources']} "
                "for n in ray.nodes() if n['Alive']]))" % self.gcs_address)
        try:
            r = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                               timeout=45)
        except subprocess.TimeoutExpired:
            return []
        # Ray may print its own lines after ours (a warning at exit), so find ours by its mark
        marked = [ln for ln in r.stdout.splitlines() if ln.startswith("NODES=")]
        if r.returncode != 0 or not marked:
            return []
        return json.loads(marked[-1][len("NODES="):])

    def wait_for_nodes(self, count: int, timeout: float = 120) -> list[dict]:
        """The alive nodes, once there are `count`. Each ask is a Ray driver's start (~2 s of CPU),
        so it asks once `ray start` has said that every node is up."""
        nodes: list[dict] = []
        deadline = time.monotonic() + timeout
        self._wait_started(timeout)

        def enough() -> bool:
            self._check_alive()
            nodes[:] = self.alive_nodes()
            return len(nodes) >= count
        if not wait_until(enough, max(1.0, deadline - time.monotonic()), every_s=1):
            raise TimeoutError(f"cluster did not reach {count} nodes in {timeout} s\n" + self.logs())
        return nodes

    def _wait_started(self, timeout: float) -> None:
        def started() -> bool:
            self._check_alive()
            return all(node.started() for node in self.nodes)
        if not wait_until(started, timeout, every_s=0.2):
            raise TimeoutError(f"`ray start` did not say its node is up in {timeout} s\n" + self.logs())

    def wait_for_job_server(self, timeout: float = 120) -> None:
        self._wait_started(timeout)  # each ask below is a `ray` CLI process

        def answers() -> bool:
            self._check_alive()
            return subprocess.run([str(BIN / "ray"), "job", "list", "--address", self.dashboard_address],
                                  env=self.env, capture_output=True).returncode == 0
        if not wait_until(answers, timeout, every_s=2):
            raise TimeoutError(f"job server did not come up in {timeout} s\n" + self.logs())

    def _check_alive(self) -> None:
        dead = [n for n in self.nodes if not n.alive()]
        if dead:
            raise RuntimeError("a `ray start --block` process exited early\n" + self.logs())

    def logs(self) -> str:
        return "\n".join(f"--- {n.log} ---\n{n.log_tail()}" for n in self.nodes)

    def stop(self) -> None:
        """End every node at once: SIGKILL to each node's process group (and any process of it that
        left the group). A test's cluster keeps nothing worth a graceful shutdown, and `ray start
        --block` takes longer than any short grace to wind down on SIGTERM: a grace was only a wait
        (5 s per cluster)."""
        for node in reversed(self.nodes):
            node.kill()
            if not os.environ.get("PAGERAY_TEST_KEEP_RAY_LOGS"):
                node.log.unlink(missing_ok=True)
        self.nodes.clear()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def copy_checkout(target: Path) -> Path:
    """A user's clone of pageray (what `ray job submit --working-dir .` uploads from it): the
    repository's files, without this machine's virtualenv and caches."""
    shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache", "pageray-demo", "build", "dist"))
    return target


def until_agent_ready(submit: Callable[[], subprocess.CompletedProcess],
                      timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a job submission, again while Ray refuses it because the head's agent is not taking jobs yet.
    The job server answers `ray job list` before the head's dashboard agent has registered; until
    then a submission is refused (no job is created) and Ray's own message says to try again later."""
    deadline = time.monotonic() + timeout
    while True:
        done = submit()
        if AGENT_NOT_READY not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(2)


def submit_job(cluster: Cluster, args: list[str], runtime_env: dict | None = None,
               timeout: float = 600) -> tuple[subprocess.CompletedProcess, str]:
    """`ray job submit --working-dir REPO -- python -m pageray.jobs.extract ARGS`, waiting for the end;
    returns the CLI's process and the job's final status as the job server reports it."""
    extra = ["--runtime-env-json", json.dumps(runtime_env)] if runtime_env else []
    job = until_agent_ready(lambda: subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_address, "--working-dir", str(REPO),
         *extra, "--", "python", "-m", "pageray.jobs.extract", *args],
        env=cluster.env, capture_output=True, text=True, timeout=timeout))
    found = re.search(r"raysubmit_\w+", job.stdout + job.stderr)
    return job, job_status(cluster, found.group(0)) if found else "UNKNOWN (no job id in the output)"


def job_status(cluster: Cluster, job_id: str) -> str:
    """A job's status as the head's job server reports it: its REST API (what JobSubmissionClient
    calls), asked from this process with the cluster's token, not from a Python that imports Ray."""
    import urllib.request

    request = urllib.request.Request(f"{cluster.dashboard_address}/api/jobs/{job_id}",
                                     headers={"authorization": f"Bearer {cluster.env['RAY_AUTH_TOKEN']}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)["status"]
    except (OSError, ValueError, KeyError) as exc:
        return f"UNKNOWN: {type(exc).__name__}: {exc}"


def raylet_of(node: Node) -> int | None:
    """The pid of a node's raylet: the `raylet` process whose command line names the node's temp dir."""
    own = node.temp_dir.encode()
    found = processes(lambda cmdline: cmdline.split(b"\0", 1)[0].endswith(b"/raylet") and
                      any(own + end in cmdline for end in (b"/", b"\0")))
    return found[0] if found else None


def actor_titles(node: Node) -> list[str]:
    """Process titles of the node's Ray workers (the raylet's children): `ray::Class` for an idle
    actor, `ray::Class.method` while it runs a method (`.__init__` while it is constructed)."""
    from processes import parent_of

    raylet = raylet_of(node)
    titles = []
    for pid in processes(lambda cmdline: cmdline.startswith(b"ray::")):
        if raylet is not None and parent_of(str(pid)) == raylet:
            try:
                titles.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace"))
            except OSError:
                pass
    return titles


def busy_actor(node: Node, name: str) -> bool:
    """Whether an actor of the node whose title contains `name` is running a method other than its constructor."""
    return any(name in t and "." in t.rsplit(")", 1)[-1] and not t.endswith(".__init__") for t in actor_titles(node))
