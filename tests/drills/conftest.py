from datetime import datetime, timezone

import pytest

from cluster import Cluster
from dura_processes import timeout_hook


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


pytest_timeout_set_timer = timeout_hook("nodes")
