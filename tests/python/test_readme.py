"""Every code block of README.md a user would copy runs as written, so the README cannot rot:
the start command, the local cluster, the Python quick start, the `temporal` CLI commands and
the time-skipping snippet. `dura` is the build under test ($DURA_BIN, on PATH as `dura`), and
`scripts/start-dev.sh` runs it too ($DURA_BIN instead of its release build).

A block this file does not know fails the test, so a new one gets a test or a stated reason."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dura_processes import kill_group, spawn
from harness import DURA_BIN

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

# Blocks not run here, and why.
NOT_RUN = {
    "bash scripts/test.sh": "the test command itself",
    "bench compare --workload echo": "a release build and two 20 s runs; tests/tests/bench.rs runs `dura bench`",
    "TestWorkflowEnvironment.createTimeSkipping": "tests/typescript/src/tests/time-skipping.test.ts runs the same call",
}


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", README, re.S)]


def block_with(text: str) -> str:
    found = [body for _, body in blocks() if text in body]
    assert len(found) == 1, f"{len(found)} README blocks contain {text!r}"
    return found[0]


# Loaded by every Python program the tests run (`sitecustomize`, through PYTHONPATH): once the
# program's work is done, the process exits without interpreter teardown, keeping the
# program's outcome, as the conformance suite's probe does. The SDK's native runtime sometimes
# crashes that teardown (SIGSEGV, or an abort in PyGILState_Release) after the program printed
# its result; the block under test is still run unchanged. An uncaught exception still exits 1
# (a `sys.exit(n)` would exit 0: no README block calls it, and each test checks the output).
SKIP_TEARDOWN = """\
import atexit, os, sys

_failed = False
_excepthook = sys.excepthook


def _note_failure(*exc_info):
    global _failed
    _failed = True
    _excepthook(*exc_info)


def _exit_now():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if _failed else 0)


sys.excepthook = _note_failure
atexit.register(_exit_now)
"""


@pytest.fixture
def user_env(tmp_path):
    """A shell environment whose PATH has `dura` (the build under test) and the venv's tools,
    and whose Python programs skip interpreter teardown (`SKIP_TEARDOWN`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dura").symlink_to(os.path.abspath(DURA_BIN))
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(SKIP_TEARDOWN)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}"
    env["DURA_BIN"] = str(bin_dir / "dura")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_dir), env.get("PYTHONPATH")]))
    return env


def run_shell(script: str, cwd: Path, env: dict, timeout: float = 120) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script}\nexited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_block_is_covered():
    covered = ["start-dev.sh --db-filename", "local-cluster.sh start 3", "from temporalio.worker import Worker",
               "temporal operator namespace create", "start_time_skipping(", *NOT_RUN]
    for language, body in blocks():
        assert any(marker in body for marker in covered), f"README block not run by any test:\n{body}"


def test_the_local_cluster_block(tmp_path, user_env):
    script = block_with("local-cluster.sh start 3").replace("deploy/local-cluster.sh", str(ROOT / "deploy/local-cluster.sh"))
    try:
        out = run_shell(script, tmp_path, user_env, timeout=240)
        assert "leader" in out.lower(), out
    finally:
        subprocess.run([str(ROOT / "deploy/local-cluster.sh"), "stop"], cwd=tmp_path, env=user_env,
                       capture_output=True, timeout=60)


def wait_for_server(env: dict, address: str = "localhost:7233", seconds: float = 60) -> None:
    probe = (
        "import asyncio\n"
        "from temporalio.client import Client\n"
        f"asyncio.run(Client.connect({address!r}))\n"
    )
    deadline = time.monotonic() + seconds
    while True:
        if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0:
            return
        assert time.monotonic() < deadline, f"no server at {address}"
        time.sleep(0.5)


def test_the_start_command_the_quick_start_and_the_cli(tmp_path, user_env):
    start = block_with("start-dev.sh --db-filename").strip().replace("scripts/", f"{ROOT}/scripts/")
    # In a directory of the test's: the command's data directory is relative.
    server = spawn(["bash", "-c", f'cd "{tmp_path}" && exec {start}'], str(tmp_path / "server.log"), user_env)
    try:
        wait_for_server(user_env)
        (tmp_path / "hello.py").write_text(block_with("from temporalio.worker import Worker"))
        out = run_shell(f"{sys.executable} hello.py", tmp_path, user_env)
        assert "Result: Hello, Temporal!" in out, out
        out = run_shell(block_with("temporal operator namespace create"), tmp_path, user_env)
        assert "hello-1" in out and "orders" in out, out
    finally:
        kill_group(server)


def test_the_time_skipping_snippet(tmp_path, user_env):
    snippet = block_with("start_time_skipping(").replace('"/path/to/dura"', repr(os.path.abspath(DURA_BIN)))
    snippet = snippet.replace("...  # env.client, env.sleep(...), env.get_current_time()",
                              "print('virtual now', await env.get_current_time())")
    program = "import asyncio\n\nasync def main():\n" + "".join(
        f"    {line}\n" for line in snippet.splitlines()
    ) + "\nasyncio.run(main())\n"
    (tmp_path / "skip.py").write_text(program)
    out = run_shell(f"{sys.executable} skip.py", tmp_path, user_env)
    assert "virtual now" in out, out
