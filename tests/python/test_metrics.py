"""Temporal's metric names on `/metrics` after real SDK traffic: a workflow that runs an
activity and completes, and a schedule, are counted as Temporal's server counts them."""

import asyncio
import json
import re
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from harness import Server, free_port, run_hello


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def value(metrics: str, name: str, labels: str = "") -> float:
    """The sum of a metric's samples whose labels contain `labels` (0 when absent)."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and labels in (match.group(1) or ""):
            total += float(match.group(2))
    return total


async def scrape_until(port: int, name: str, labels: str, at_least: float, within: float) -> str:
    """The node's metrics once `name{labels}` reached `at_least`."""

    async def reached() -> str:
        while True:
            metrics = scrape(port)
            if value(metrics, name, labels) >= at_least:
                return metrics
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(reached(), within)


async def test_a_completed_workflow_shows_in_temporals_metrics(tmp_path):
    metrics_port = free_port()
    server = Server(str(tmp_path / "db"), extra_args=("--metrics-port", str(metrics_port)))
    try:
        client = await server.start()
        assert await run_hello(client, "m") == "Hello, m!"
        metrics = scrape(metrics_port)
        for name, labels in [
            ("workflow_success", 'namespace="default"'),
            # Labels come in name order.
            ("service_requests", 'namespace="default",operation="StartWorkflowExecution"'),
            # Token calls carry the token's namespace.
            ("service_requests", 'namespace="default",operation="RespondWorkflowTaskCompleted"'),
            ("service_requests", 'namespace="default",operation="RespondActivityTaskCompleted"'),
            # The SDK asks for it on connecting; it names no namespace.
            ("service_requests", 'namespace="_unknown_",operation="GetSystemInfo"'),
            ("service_requests", 'operation="StartWorkflowExecution"'),
            ("service_requests", 'operation="RespondWorkflowTaskCompleted"'),
            ("service_latency_count", 'operation="PollWorkflowTaskQueue"'),
            ("poll_success", 'task_type="workflow"'),
            ("poll_success", 'task_type="activity"'),
            ("task_schedule_to_start_latency_count", 'task_type="activity"'),
            ("dura_raft_commit_index", ""),
            ("dura_raft_leader_changes", ""),
            ("persistence_requests", 'operation="write"'),
            ("persistence_latency_count", 'operation="write"'),
            ("dura_raft_fsync_seconds_count", ""),
            ("dura_raft_write_batch_requests_count", ""),
            ("dura_raft_proposal_seconds_count", ""),
            ("dura_rocksdb", 'property="rocksdb.estimate-num-keys"'),
            ("process_resident_memory_bytes", ""),
            ("process_open_fds", ""),
        ]:
            assert value(metrics, name, labels) > 0, f"{name}{{{labels}}} is zero or missing"
        assert value(metrics, "workflow_failed") == 0
        # A refused call, so the errors panel has a series too.
        with pytest.raises(Exception):
            await client.get_workflow_handle("no-such-workflow").describe()
        metrics = scrape(metrics_port)
        assert value(metrics, "service_errors_entity_not_found",
                     'namespace="default",operation="DescribeWorkflowExecution"') == 1
        check_dashboard(metrics)
    finally:
        server.stop()


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dura.json"


def check_dashboard(metrics: str) -> None:
    """Every metric the Grafana dashboard's PromQL names is on the node's /metrics."""
    exposed = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][\w:]*)[{ ]", metrics, re.M)}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    wanted = set()
    for panel in panels:
        for target in panel["targets"]:
            # A metric name is followed by its label matchers or a range.
            wanted |= set(re.findall(r"([a-zA-Z_:][\w:]*)\s*[{\[]", target["expr"]))
    wanted -= {"by", "sum", "max", "rate", "increase", "histogram_quantile"}
    assert wanted, "no metric found in the dashboard"
    missing = sorted(wanted - exposed)
    assert not missing, f"the dashboard uses metrics no node exposes: {missing}"


async def test_under_bench_load_the_traffic_metrics_move(tmp_path):
    """`dura bench` (raw gRPC, its own worker) against a node: what the load exercises counts."""
    import subprocess

    from harness import DURA_BIN

    metrics_port = free_port()
    server = Server(str(tmp_path / "db"), extra_args=("--metrics-port", str(metrics_port)))
    try:
        await server.start()
        # Blocking is fine here: the server is another process and nothing else runs.
        subprocess.run(
            [DURA_BIN, "bench", "run", "--workload", "echo", "--address", server.address,
             "--concurrency", "20", "--duration", "3s", "--warmup", "1s"],
            check=True, capture_output=True, timeout=120,
        )
        metrics = scrape(metrics_port)
        for name, labels in [
            ("workflow_success", ""),
            ("service_latency_count", 'operation="RespondActivityTaskCompleted"'),
            ("poll_success", 'task_type="activity"'),
            ("task_schedule_to_start_latency_count", 'task_type="workflow"'),
            ("persistence_requests", ""),
            ("dura_raft_proposal_seconds_count", ""),
            ("dura_raft_fsync_seconds_count", ""),
            ("dura_raft_write_batch_requests_count", ""),
        ]:
            assert value(metrics, name, labels) > 0, f"{name}{{{labels}}} is zero under load"
    finally:
        server.stop()


async def test_a_schedule_is_counted_as_temporals_scheduler_counts_it(tmp_path):
    """A schedule firing every second whose workflow never finishes (no worker polls its
    queue): the first action starts it, the next ones are skipped by the overlap policy, and a
    trigger starts another."""
    metrics_port = free_port()
    server = Server(str(tmp_path / "db"), extra_args=("--metrics-port", str(metrics_port)))
    try:
        client = await server.start()
        schedule_id = f"metrics-{uuid.uuid4()}"
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow("Unpolled", id=f"{schedule_id}-wf", task_queue="nobody-polls"),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=1))]),
            ),
        )
        namespace = 'namespace="default"'
        skipped = namespace + ',schedule_overlap_policy="Skip"'

        metrics = await scrape_until(metrics_port, "schedule_overlap_skipped", skipped, 1, within=30)
        success = namespace + ',schedule_action="start_workflow"'
        assert value(metrics, "schedule_action_success", success) == 1
        assert value(metrics, "schedule_action_delay_count", namespace) == 1
        assert value(metrics, "schedule_action_errors", success) == 0
        await handle.pause()
        for running in (await handle.describe()).info.running_actions:
            await client.get_workflow_handle(running.workflow_id).terminate()
        await handle.trigger()

        # A trigger counts as an action but not as a scheduled one's delay.
        metrics = await scrape_until(metrics_port, "schedule_action_success", success, 2, within=10)
        assert value(metrics, "schedule_action_success", success) == 2
        assert value(metrics, "schedule_action_delay_count", namespace) == 1
        await handle.delete()
    finally:
        server.stop()
