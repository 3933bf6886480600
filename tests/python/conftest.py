import sys
import threading

import pytest

try:
    import pytest_timeout
except ImportError:  # pytest.ini's timeout would be ignored: no test may run unbounded
    raise ImportError("pytest-timeout is missing: scripts/test.sh installs it "
                      "(pip install pytest-timeout==2.4.0 into the venv)") from None

from harness import Server, kill_all


@pytest.fixture
def server(tmp_path):
    """A dura server on a fresh database and port; the test starts (and may kill) it."""
    server = Server(str(tmp_path / "db"))
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's thread method (pytest.ini), saying which test ran out of time and
    killing the servers before it dumps every thread's stack and ends the run: a hung test
    fails the run instead of hanging it. (The signal method would raise inside the SDK's
    event loop and leave its workers running into the next test.)"""
    if settings.method != "thread":
        return None

    def expired():
        sys.stderr.write(f"\nTIMEOUT: {item.nodeid} did not finish within {settings.timeout:.0f} s "
                         "(pytest-timeout); killing its servers and ending the run\n")
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
