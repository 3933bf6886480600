"""Temporal's HTTP API (`--http-port`) through the Python SDK's workers: the same calls and
checks run against dura and, when the temporal CLI is at hand (scripts/test.sh installs it),
against the real `temporal server start-dev`; then the JSON shapes of both are compared key by
key. Keys the real server fills and dura does not yet are named in KNOWN_GAPS with why."""

import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from dura_processes import kill_group, spawn
from harness import Server, free_port, within
from workflows_under_test import HelloWorkflow, SignalledWorkflow, say_hello

REAL_CLI = os.environ.get("TEMPORAL_CLI") or os.path.join(os.path.dirname(sys.executable), "temporal")

# Fields of the real server's answers that dura leaves out (each with what is under it), each
# an open gap of its own.
KNOWN_GAPS = {
    # Reset points, transition counts and the extended info (request ids, original start
    # time) are not kept by dura yet; the UI shows them as absent.
    "describe.workflowExecutionInfo.autoResetPoints",
    "describe.workflowExecutionInfo.stateTransitionCount",
    "describe.workflowExtendedInfo",
    "list.stateTransitionCount",
    # Worker versioning (issue 11 §5): the worker's build id stamp, and the BuildIds system
    # search attribute the real server sets from it.
    "describe.workflowExecutionInfo.mostRecentWorkerVersionStamp",
    "describe.workflowExecutionInfo.searchAttributes.indexedFields",
    "list.searchAttributes.indexedFields",
    # The list record's root and duration: not stored by dura's visibility records.
    "list.rootExecution",
    "list.executionDuration",
    # The real server's persistence task ids.
    "started.taskId",
}
# Fields dura states that the real dev server's SQLite visibility leaves out.
KNOWN_EXTRAS = {"list.firstRunId"}


def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def keys(prefix: str, value) -> set[str]:
    """Every dotted key path of a JSON value, lists looked into through their first item; map
    keys that are ids are not paths."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(f"{prefix}.{k}")
            if k not in ("requestIdInfos", "indexedFields", "fields"):
                out |= keys(f"{prefix}.{k}", v)
    elif isinstance(value, list) and value:
        out |= keys(prefix, value[0])
    return out


async def scenario(client: Client, base: str) -> set[str]:
    """Signals, terminates and reads workflows over HTTP while an SDK worker runs them; what
    the SDK sees checks each effect. Returns the key paths of the answers."""
    queue = f"http-{uuid.uuid4()}"
    ns = "/api/v1/namespaces/default"
    async with Worker(client, task_queue=queue, workflows=[SignalledWorkflow, HelloWorkflow], activities=[say_hello]):
        # A workflow id that must be percent-encoded in the path, signalled over HTTP.
        wid = f"http wf {uuid.uuid4()}"
        path = f"{ns}/workflows/{urllib.parse.quote(wid, safe='')}"
        handle = await client.start_workflow(SignalledWorkflow.run, id=wid, task_queue=queue)
        status, _ = call(base, "POST", f"{path}/signal/poke", {"input": ["over http"]})
        assert status == 200, status
        assert await within(60, handle.result(), "the signalled workflow") == "poked with over http"

        status, described = call(base, "GET", path)
        assert status == 200, described
        assert described["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED", described
        status, history = call(base, "GET", f"{path}/history")
        events = history["history"]["events"]
        signalled = [e for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"]
        assert signalled[0]["workflowExecutionSignaledEventAttributes"]["input"] == ["over http"], signalled
        status, plain = call(base, "GET", f"{path}/history?noPayloadShorthand")
        payload = plain["history"]["events"][-1]["workflowExecutionCompletedEventAttributes"]["result"]["payloads"][0]
        assert payload["metadata"]["encoding"] == "anNvbi9wbGFpbg==", payload  # base64 of json/plain

        # An activity's events in the history, its result readable.
        hello = await client.execute_workflow(HelloWorkflow.run, "HTTP", id=f"hello-{uuid.uuid4()}", task_queue=queue)
        assert hello == "Hello, HTTP!"

        # Started over HTTP (shorthand input), terminated over HTTP, seen through the SDK.
        victim = f"victim-{uuid.uuid4()}"
        start = {"workflowType": {"name": "SignalledWorkflow"}, "taskQueue": {"name": queue}, "requestId": str(uuid.uuid4())}
        status, started = call(base, "POST", f"{ns}/workflows/{victim}", start)
        assert status == 200 and started["started"] is True, started
        status, _ = call(base, "POST", f"{ns}/workflows/{victim}/terminate", {"reason": "from http"})
        assert status == 200
        described_victim = await client.get_workflow_handle(victim).describe()
        assert described_victim.status == WorkflowExecutionStatus.TERMINATED, described_victim.status

    # Listing (the real server's visibility catches up a moment later).
    for _ in range(100):
        status, listed = call(base, "GET", f"{ns}/workflows?query=" + urllib.parse.quote(f'WorkflowId="{wid}"'))
        if listed.get("executions"):
            break
        await asyncio.sleep(0.1)
    assert listed["executions"][0]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED", listed
    status, counted = call(base, "GET", f"{ns}/workflow-count?query=" + urllib.parse.quote("GROUP BY ExecutionStatus"))
    assert status == 200 and int(counted["count"]) >= 3, counted

    status, missing = call(base, "GET", f"{ns}/workflows/no-such-workflow")
    assert status == 404 and missing["code"] == 5, missing
    assert missing["details"][0]["@type"] == "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure", missing
    status, refused = call(base, "POST", f"{ns}/workflows/x", {"noSuchField": 1})
    assert status == 400 and refused["code"] == 3, refused
    status, unknown = call(base, "GET", "/api/v1/no/such/route")
    assert (status, unknown) == (404, {"code": 5, "message": "Not Found"}), unknown
    status, spec = call(base, "GET", "/swagger.json")
    assert status == 200 and spec["swagger"] == "2.0"

    return (keys("describe", described) | keys("list", listed["executions"][0])
            | keys("started", events[0]) | keys("missing", missing))


class RealServer:
    def __init__(self, tmp_path):
        self.port, self.http = free_port(), free_port()
        self.proc = spawn([REAL_CLI, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
                           "--http-port", str(self.http), "--log-level", "error"], str(tmp_path / "temporal.log"))

    async def client(self) -> Client:
        for _ in range(300):
            try:
                return await Client.connect(f"127.0.0.1:{self.port}")
            except RuntimeError:
                await asyncio.sleep(0.1)
        raise AssertionError("the real dev server did not answer")


async def test_the_http_api_answers_as_the_real_servers_does(tmp_path):
    http = free_port()
    dura = Server(str(tmp_path / "db"), extra_args=("--http-port", str(http)))
    try:
        client = await dura.start()
        dura_keys = await scenario(client, f"http://127.0.0.1:{http}")
    finally:
        dura.stop()
    if not os.access(REAL_CLI, os.X_OK):
        pytest.skip(f"no temporal CLI at {REAL_CLI} to compare with (dura passed)")
    real = RealServer(tmp_path)
    try:
        real_keys = await scenario(await real.client(), f"http://127.0.0.1:{real.http}")
    finally:
        kill_group(real.proc)
    missing = {k for k in real_keys - dura_keys if not any(k == g or k.startswith(g + ".") for g in KNOWN_GAPS)}
    extra = dura_keys - real_keys - KNOWN_EXTRAS
    assert not missing, f"the real server answers keys dura does not: {sorted(missing)}"
    assert not extra, f"dura answers keys the real server does not: {sorted(extra)}"
