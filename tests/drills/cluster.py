"""A cluster of real `dura server start` processes ($DURA_BIN) on 127.0.0.1 for the drills.

Everything that waits is async and bounded, so a drill can restart a node while its workers
keep running on the same event loop, and a node that never comes up fails the drill instead
of hanging it. A node never outlives the test process: the kernel SIGKILLs it when its parent
dies (the parent-death signal), and the fixture, an atexit hook and the per-test timeout
(conftest.py) kill it on every other way out. A first start whose ports someone took after
free_ports() looked (a parallel run) is retried on fresh ports."""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from temporalio.client import Client
from temporalio.service import RetryConfig

from dura_processes import ADDRESS_IN_USE, PORT_ATTEMPTS, die_with, excerpt, forget, kill_group, spawn

DURA_BIN = os.environ.get("DURA_BIN", "dura")
READY_LINE = "Dura node ready"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The SDK retries UNAVAILABLE itself, but by default gives up after 10 s. A client pinned to
# one node (there is no load balancer here) must outlast that node's restart, which on a
# 2-core machine running three debug builds can take longer; 60 s still fails a real hang.
CLIENT_RETRY = RetryConfig(max_elapsed_time_millis=60_000, max_retries=100)

def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _PortTaken(Exception):
    pass


class Node:
    def __init__(self, node_id: int, tmp_dir: str, client_port: int, peer_port: int, metrics_port: int):
        self.id = node_id
        self.client_port, self.peer_port, self.metrics_port = client_port, peer_port, metrics_port
        self.data_dir = os.path.join(tmp_dir, f"node-{node_id}")
        self.log_base = os.path.join(tmp_dir, f"node-{node_id}.log")
        self.starts = 0
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> str:
        """This start's log: node-I.log for the first start, node-I.log.K for the K-th restart."""
        k = self.starts - 1
        return self.log_base if k <= 0 else f"{self.log_base}.{k}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return ANSI.sub("", f.read())
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def excerpt(self) -> str:
        return excerpt(self.log_text())


class Cluster:
    def __init__(self, tmp_dir: str, n: int = 3, extra_args=()):
        self.tmp_dir = str(tmp_dir)
        self.extra_args = list(extra_args)
        self.nodes = {i: Node(i, self.tmp_dir, 0, 0, 0) for i in range(1, n + 1)}
        self._pick_ports()
        self.paused: set[int] = set()

    def _pick_ports(self) -> None:
        ports = free_ports(3 * len(self.nodes))
        for i, nd in self.nodes.items():
            nd.client_port, nd.peer_port, nd.metrics_port = ports[3 * (i - 1): 3 * i]
        self.initial_cluster = ",".join(f"{i}=127.0.0.1:{nd.peer_port}" for i, nd in self.nodes.items())

    # -- process control ------------------------------------------------------------------

    def _spawn(self, i: int) -> None:
        nd = self.nodes[i]
        assert not nd.running(), f"node {i} is already running"
        nd.starts += 1
        args = [
            DURA_BIN, "server", "start", "--node-id", str(i), "--data-dir", nd.data_dir,
            "--ip", "127.0.0.1", "--port", str(nd.client_port), "--peer-port", str(nd.peer_port),
            "--metrics-port", str(nd.metrics_port), "--initial-cluster", self.initial_cluster,
            "--replication", str(len(self.nodes)), "--shards", "4", "--log-level", "info", "--peer-plaintext",
            *self.extra_args,
        ]
        # Own session: a signal meant for the node never reaches pytest, and pytest's Ctrl-C
        # never reaches the node half-way through a drill.
        nd.proc = spawn(args, nd.log_path, env={**os.environ, "NO_COLOR": "1"})

    async def _wait_ready(self, i: int, timeout: float = 90) -> None:
        nd = self.nodes[i]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not nd.running():
                forget(nd.proc)
                if ADDRESS_IN_USE in nd.log_text():
                    raise _PortTaken(f"node {i}: {nd.log_path}")
                raise RuntimeError(f"node {i} exited with {nd.proc.returncode} during start-up; "
                                   f"log {nd.log_path}:\n{nd.excerpt()}")
            if READY_LINE in nd.log_text():
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"node {i} not ready after {timeout} s; log {nd.log_path}:\n{nd.excerpt()}")

    async def start(self) -> None:
        """Starts every node on an empty data directory. When a node finds a port taken, the
        whole cluster starts again on fresh ports (the peer ports are in every node's
        --initial-cluster), from empty data directories."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            for i in self.nodes:
                self._spawn(i)
            outcomes = await asyncio.gather(*[self._wait_ready(i) for i in self.nodes], return_exceptions=True)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if not failures:
                return
            if attempt == PORT_ATTEMPTS or not all(isinstance(f, _PortTaken) for f in failures):
                self.stop_all()
                raise next((f for f in failures if not isinstance(f, _PortTaken)), failures[0])
            self.stop_all()
            for nd in self.nodes.values():
                shutil.rmtree(nd.data_dir, ignore_errors=True)
            self._pick_ports()

    async def restart(self, i: int, timeout: float = 90) -> None:
        """Starts node i again on its own ports (the cluster knows it by them). A port
        someone took in the moment since the node died is retried a few times, then fails."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._spawn(i)
            try:
                return await self._wait_ready(i, timeout)
            except _PortTaken:
                if attempt == PORT_ATTEMPTS:
                    raise RuntimeError(f"node {i}'s ports {self.nodes[i].client_port}, {self.nodes[i].peer_port}, "
                                       f"{self.nodes[i].metrics_port} stayed taken after it died:\n{self.nodes[i].excerpt()}")
                await asyncio.sleep(1)

    def kill9(self, i: int) -> None:
        kill_group(self.nodes[i].proc)
        self.paused.discard(i)

    def stop(self, i: int) -> None:
        os.killpg(self.nodes[i].proc.pid, signal.SIGSTOP)
        self.paused.add(i)

    def cont(self, i: int) -> None:
        os.killpg(self.nodes[i].proc.pid, signal.SIGCONT)
        self.paused.discard(i)

    async def terminate(self, i: int, timeout: float = 30) -> float:
        """SIGTERM node i and wait for it to exit; returns how long the exit took."""
        nd = self.nodes[i]
        t0 = time.monotonic()
        nd.proc.send_signal(signal.SIGTERM)
        while nd.proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"node {i} still running {timeout} s after SIGTERM:\n{nd.tail()}")
            await asyncio.sleep(0.1)
        forget(nd.proc)
        return time.monotonic() - t0

    def stop_all(self) -> None:
        for nd in self.nodes.values():
            if nd.proc is not None:
                kill_group(nd.proc)
        self.paused.clear()

    def up(self) -> list[int]:
        """Nodes that are running and not SIGSTOPped."""
        return [i for i, nd in self.nodes.items() if nd.running() and i not in self.paused]

    # -- clients and status -----------------------------------------------------------------

    async def client(self, i: int) -> Client:
        return await asyncio.wait_for(
            Client.connect(self.nodes[i].address, retry_config=CLIENT_RETRY), timeout=30
        )

    async def status(self, via: int, timeout: float = 15) -> dict:
        proc = await asyncio.create_subprocess_exec(
            DURA_BIN, "cluster", "status", "--address", self.nodes[via].address, "--output", "json",
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=die_with(os.getpid()),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"cluster status via node {via} took over {timeout} s")
        if proc.returncode != 0:
            raise RuntimeError(f"cluster status via node {via} failed: {err.decode().strip()}")
        return json.loads(out)

    async def status_any(self, timeout: float = 30) -> dict:
        """The status as the first live node that answers reports it (a node may be mid-restart)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for i in self.up():
                try:
                    return await self.status(via=i)
                except RuntimeError as e:
                    last = e
            await asyncio.sleep(0.5)
        raise RuntimeError(f"no node answered cluster status within {timeout} s: {last}")

    async def busiest_shard_leader(self, timeout: float = 30) -> int:
        """The node leading the shard group with the highest applied index (waits out elections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shards = [g for g in (await self.status_any())["groups"] if g["kind"] == "shard"]
            busiest = max(shards, key=lambda g: g["applied"])
            if busiest["leader"] is not None:
                return busiest["leader"]
            await asyncio.sleep(0.5)
        raise RuntimeError(f"busiest shard has no leader after {timeout} s")

    def log_lines(self, pattern: str) -> list[str]:
        """Lines matching pattern in every log of every start, prefixed with the log's name."""
        rx = re.compile(pattern)
        hits = []
        for nd in self.nodes.values():
            for k in range(nd.starts):
                path = nd.log_base if k == 0 else f"{nd.log_base}.{k}"
                try:
                    with open(path, errors="replace") as f:
                        name = os.path.basename(path)
                        hits += [f"{name}: {ANSI.sub('', line.rstrip())}" for line in f if rx.search(ANSI.sub("", line))]
                except FileNotFoundError:
                    pass
        return hits
