import pytest

from dura_processes import kill_group, timeout_hook
from harness import Server


@pytest.fixture
def server(tmp_path):
    """A dura server on a fresh database and port; the test starts (and may kill) it."""
    server = Server(str(tmp_path / "db"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nodes():
    """`nodes.Node`s the test starts, killed when it ends."""
    started = []
    yield started
    for node in started:
        kill_group(node.proc)


pytest_timeout_set_timer = timeout_hook("servers")
