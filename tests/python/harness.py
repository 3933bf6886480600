"""Starts real `dura server start-dev` processes ($DURA_BIN) for the Python tests."""

import asyncio
import os
import signal
import socket
import subprocess

from temporalio.client import Client

DURA_BIN = os.environ.get("DURA_BIN", "dura")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: str, port: int):
        self.db, self.port, self.proc = db, port, None

    async def start(self) -> Client:
        self.proc = subprocess.Popen(
            [DURA_BIN, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--db-filename", self.db, "--log-level", "error"],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        for _ in range(200):
            try:
                return await Client.connect(f"127.0.0.1:{self.port}")
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("dura did not come up")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
