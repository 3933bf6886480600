"""What the Python tests (tests/python) and the drills (tests/drills) share: `dura` processes
that never outlive the test process, bounded waits, and the per-test timeout hook.

A process started by spawn() gets SIGKILL from the kernel when the test process dies (the
parent-death signal), and kill_all() — at exit, and when a test times out — kills whatever is
left; each runs in a session of its own, so a signal meant for it never reaches pytest."""

import asyncio
import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

try:
    import pytest_timeout
except ImportError:  # pytest.ini's timeout would be ignored: no test may run unbounded
    raise ImportError("pytest-timeout is missing: scripts/test.sh installs it "
                      "(pip install pytest-timeout==2.4.0 into the venv)") from None

ADDRESS_IN_USE = "Address already in use"
# How many times a start on a port someone else took is retried on fresh ports.
PORT_ATTEMPTS = 5

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork

_live: set[subprocess.Popen] = set()


def die_with(parent_pid: int):
    """A preexec_fn: the child gets SIGKILL when the process that spawned it dies, and exits
    at once if that process is already gone (it died between fork and the prctl)."""

    def preexec() -> None:
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent_pid:
            os._exit(126)

    return preexec


def spawn(args: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """Starts args in a session of its own (so killpg reaches everything it starts), its
    output in log_path, tied to this process by the parent-death signal."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with(os.getpid()), env=env,
        )
    _live.add(proc)
    return proc


def forget(proc: subprocess.Popen) -> None:
    """proc has exited and was reaped: nothing to kill any more."""
    _live.discard(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILLs proc's process group and reaps proc. Once proc is reaped its pid may belong
    to someone else, so a reaped proc is left alone."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the pid is ours until we reap it
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    _live.discard(proc)


@atexit.register
def kill_all() -> None:
    """SIGKILLs every process spawn() started that still runs (a SIGSTOPped one too)."""
    for proc in list(_live):
        kill_group(proc)


async def wait_until(what: str, check, timeout: float = 60, interval: float = 0.1):
    """Polls check() (sync or async) until it returns something truthy, which it returns; a
    TimeoutError naming `what` if that takes over `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not so after {timeout} s")
        await asyncio.sleep(interval)


def excerpt(text: str, head: int = 15, tail: int = 25) -> str:
    """A log's start (where an error says why dura stopped, before any backtrace) and end."""
    lines = text.splitlines()
    if len(lines) <= head + tail:
        return text or "(empty log)"
    return "\n".join(lines[:head] + [f"... ({len(lines) - head - tail} lines) ..."] + lines[-tail:])


def timeout_hook(what: str):
    """conftest.py's pytest_timeout_set_timer: pytest-timeout's thread method (pytest.ini),
    saying which test ran out of time and killing `what` it started before it dumps every
    thread's stack and ends the run, so a hung test fails the run instead of hanging it. (The
    signal method would raise inside the SDK's event loop and leave its workers running into
    the next test.)"""

    @pytest.hookimpl(tryfirst=True)
    def pytest_timeout_set_timer(item, settings):
        if settings.method != "thread":
            return None

        def expired():
            sys.stderr.write(f"\nTIMEOUT: {item.nodeid} did not finish within {settings.timeout:.0f} s "
                             f"(pytest-timeout); killing its {what} and ending the run\n")
            sys.stderr.flush()
            kill_all()
            pytest_timeout.timeout_timer(item, settings)  # dumps the stacks, then os._exit(1)

        timer = threading.Timer(settings.timeout, expired)
        timer.name = f"pytest-timeout {item.nodeid}"
        timer.daemon = True

        def cancel():
            timer.cancel()
            timer.join()

        item.cancel_timeout = cancel
        timer.start()
        return True

    return pytest_timeout_set_timer
