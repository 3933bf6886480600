import pytest

from dura_processes import timeout_hook
from harness import Server


@pytest.fixture
def server(tmp_path):
    """A dura server on a fresh database and port; the test starts (and may kill) it."""
    server = Server(str(tmp_path / "db"))
    try:
        yield server
    finally:
        server.stop()


pytest_timeout_set_timer = timeout_hook("servers")
