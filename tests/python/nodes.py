"""`dura server start` processes for tests that need a node's own flags (TLS, auth): each on
its own loopback address and ports, ready once its `/readyz` says so."""

import asyncio
import os
import urllib.request
from pathlib import Path

from dura_processes import spawn
from harness import DURA_BIN, free_port, within

class Node:
    """One `dura server start` process on its own loopback address."""

    def __init__(self, tmp_path: Path, n: int, ip: str, ports: tuple[int, int, int], args: list[str]):
        self.ip, (self.port, self.peer_port, self.metrics_port) = ip, ports
        self.log = tmp_path / f"node-{n}.log"
        self.proc = spawn(
            [DURA_BIN, "server", "start", "--node-id", str(n), "--data-dir", str(tmp_path / f"data-{n}"),
             "--ip", ip, "--port", str(self.port), "--peer-port", str(self.peer_port),
             "--metrics-port", str(self.metrics_port), "--shards", "4", *args],
            str(self.log),
            {**os.environ, "DURA_LOG_LEVEL": "info"},
        )

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.ip}:{self.metrics_port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    async def wait_ready(self, seconds: float = 90) -> None:
        async def poll():
            while not self.ready():
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                await asyncio.sleep(0.3)

        await within(seconds, poll(), f"node {self.address} ready")


# A node alone, whose peer port no one reaches.
ALONE = ["--replication", "1", "--peer-plaintext"]


def ports() -> tuple[int, int, int]:
    return free_port(), free_port(), free_port()


