import sys
import threading
from datetime import datetime, timezone

import pytest

try:
    import pytest_timeout
except ImportError:  # pytest.ini's timeout would be ignored: no test may run unbounded
    raise ImportError("pytest-timeout is missing: scripts/test.sh installs it "
                      "(pip install pytest-timeout==2.4.0 into the venv)") from None

from cluster import Cluster, kill_all


@pytest.fixture
async def cluster(tmp_path, say):
    """A fresh 3-node cluster in tmp_path (data and per-start logs); always killed afterwards."""
    cluster = Cluster(tmp_path)
    say(f"cluster data and logs in {tmp_path}")
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop_all()


@pytest.fixture
def say(request, capsys):
    """Prints `DRILL <test>: ...` past pytest's capture, so the numbers show without -s too."""
    name = request.node.name.removeprefix("test_")
    first = [True]

    def say(msg: str) -> None:
        with capsys.disabled():
            # Wall-clock time (UTC, as the nodes log it) to line a message up with node logs.
            now = datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3]
            # The first line of a test starts a line of its own, after pytest's progress dots.
            print(f"{chr(10) if first[0] else ''}DRILL {name}: [{now}] {msg}", flush=True)
            first[0] = False

    return say


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's thread method (pytest.ini), saying which drill ran out of time and
    killing its nodes before it dumps every thread's stack and ends the run: a hung drill
    fails the run instead of hanging it."""
    if settings.method != "thread":
        return None

    def expired():
        sys.stderr.write(f"\nTIMEOUT: {item.nodeid} did not finish within {settings.timeout:.0f} s "
                         "(pytest-timeout); killing its nodes and ending the run\n")
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
