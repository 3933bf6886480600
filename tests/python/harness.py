"""Starts real `dura server start-dev` processes ($DURA_BIN) for the Python tests.

A server never outlives the test process: the kernel SIGKILLs it when its parent dies (the
parent-death signal), and the fixtures' finalizers, an atexit hook and the per-test timeout
(conftest.py) kill it on every other way out. Each start writes dura's stdout and stderr to a
log file of its own; a start fails at once, with that log, when dura exits during start-up,
and picks a fresh port when dura says the one it was given is taken (free_port() only finds
a port that was free a moment ago: a parallel run may take it in between). A client is handed
out only once our dura holds the listening socket: another server on a taken port would
answer the connection just as well."""

import asyncio
import os
import socket
import subprocess
import time
import uuid

from temporalio.client import Client

from dura_processes import ADDRESS_IN_USE, PORT_ATTEMPTS, excerpt, kill_group, spawn

DURA_BIN = os.environ.get("DURA_BIN", "dura")
# A debug build on a loaded 2-core machine; a server that is not up by then is broken.
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_hello(client: Client, name: str, worker_client: Client | None = None) -> str:
    """The guide's hello world on a fresh queue: its worker on `worker_client` (default
    `client`), started through `client`; its result within a minute."""
    from temporalio.worker import Worker

    from workflows_under_test import HelloWorkflow, say_hello

    queue = f"hello-{uuid.uuid4()}"
    async with Worker(worker_client or client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        return await within(
            60,
            client.execute_workflow(HelloWorkflow.run, name, id=f"hello-{uuid.uuid4()}", task_queue=queue),
            "a hello workflow",
        )


async def within(seconds: float, awaitable, what: str):
    """awaitable's result, or an AssertionError naming what did not finish in time."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what} did not finish within {seconds} s") from None


def owns_listener(pid: int, port: int) -> bool:
    """Whether process pid holds the socket listening on this TCP port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except FileNotFoundError:
            continue
        inodes |= {r[9] for r in rows if r[1].endswith(f":{port:04X}") and r[3] == "0A"}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}:
                return True
        except OSError:
            pass
    return False


async def wait_until_owner(proc: subprocess.Popen, port: int, timeout: float = 10) -> bool:
    """True once proc listens on port; False if it exits or, still running, never does."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if owns_listener(proc.pid, port):
            return True
        await asyncio.sleep(0.1)
    return False


class _PortTaken(Exception):
    pass


class Server:
    """One dura dev server on database `db`; start() may be called again after kill9() or
    stop(), on the same database (and port, unless it was taken meanwhile)."""

    def __init__(self, db: str, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.db, self.port, self.proc = db, port or free_port(), None
        self.extra_args = list(extra_args)
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        """This start's log: DB.log for the first start, DB.log.K for the K-th restart."""
        return f"{self.db}.log" + (f".{self.starts - 1}" if self.starts > 1 else "")

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_excerpt(self) -> str:
        """The log's start (where an error says why dura stopped, before any backtrace) and end."""
        return excerpt(self.log_text())

    async def start(self) -> Client:
        for _ in range(PORT_ATTEMPTS):
            assert self.proc is None or self.proc.poll() is not None, "dura is already running"
            self.starts += 1
            self.proc = spawn(
                [DURA_BIN, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
                 "--db-filename", self.db, "--log-level", "error", *self.extra_args],
                self.log_path,
            )
            try:
                return await self._connect()
            except _PortTaken:
                self.port = free_port()
        raise RuntimeError(f"dura found its port taken {PORT_ATTEMPTS} times in a row; last log "
                           f"{self.log_path}:\n{self.log_excerpt()}")

    async def _connect(self) -> Client:
        """A client once dura answers; checks ten times a second whether dura has exited,
        also while a connection attempt is pending."""
        deadline, last = time.monotonic() + START_TIMEOUT, None
        while time.monotonic() < deadline:
            attempt = asyncio.ensure_future(Client.connect(self.address))
            try:
                give_up = min(deadline, time.monotonic() + 5)
                while not attempt.done() and self.proc.poll() is None and time.monotonic() < give_up:
                    await asyncio.wait({attempt}, timeout=0.1)
            finally:
                if not attempt.done():
                    attempt.cancel()
            if attempt.done() and not attempt.cancelled():
                last = attempt.exception()
                # Something answered; make sure it is our dura, not another process that took
                # the port (a parallel run's server answers just as well): ours holds the
                # listening socket, or soon exits saying the port is taken.
                if last is None:
                    if await wait_until_owner(self.proc, self.port):
                        return attempt.result()
                    if self.proc.poll() is None:  # up, yet another process has the port
                        kill_group(self.proc)
                        raise _PortTaken()
            if self.proc.poll() is not None:
                kill_group(self.proc)
                if ADDRESS_IN_USE in self.log_text():
                    raise _PortTaken()
                raise RuntimeError(f"dura exited with {self.proc.returncode} during start-up on {self.address}; "
                                   f"log {self.log_path}:\n{self.log_excerpt()}")
            await asyncio.sleep(0.1)
        kill_group(self.proc)
        raise RuntimeError(f"dura did not answer on {self.address} within {START_TIMEOUT} s (last error: {last}); "
                           f"log {self.log_path}:\n{self.log_excerpt()}")

    def kill9(self) -> None:
        kill_group(self.proc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if dura has not exited 30 s later."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        kill_group(self.proc)  # whatever is left of its process group
