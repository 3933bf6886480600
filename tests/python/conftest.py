import pytest

from harness import Server, free_port


@pytest.fixture
def server(tmp_path):
    """A dura server on a fresh database and port; the test starts (and may kill) it."""
    server = Server(str(tmp_path / "db"), free_port())
    try:
        yield server
    finally:
        server.stop()
