"""Temporal's limits (`limit.*`, `frontend.searchAttributes*Limit`, `frontend.namespaceRPS`)
hit from the Python SDK, side by side: the same scenario on dura and on the real dev server
(`temporal server start-dev`), both given the same dynamic config. Every scenario's outcome —
the gRPC status and message a call gets, or the events that end the workflow — must be the
same on both, and is also pinned here as the literal the real server gave when this was
written (so the test still says something on a machine without the real CLI)."""

import asyncio
import contextlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowType
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest, StartWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError
from temporalio.worker import Worker

from dura_processes import kill_group, spawn
from harness import Server, free_port, within
from limits_workflows import (
    BIG,
    ActivityOutcome,
    BigActivityInput,
    ManyActivities,
    ManyChildren,
    TimerLoop,
    UntilContinueAsNewSuggested,
    Waiter,
    big_heartbeat,
    big_result,
    echo,
    linger,
)

TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
# CI installs the real CLI (scripts/test.sh): there, a comparison that silently lost its
# reference would prove nothing.
assert TEMPORAL or not os.environ.get("CI"), "the real temporal CLI is missing"

LIMITS = {
    "limit.blobSize.error": 2000,
    # The real server refuses only what is over its warning limit too (512 KiB by default).
    "limit.blobSize.warn": 1000,
    "limit.memoSize.error": 1000,
    "limit.memoSize.warn": 500,
    "limit.historyCount.error": 60,
    "limit.historyCount.suggestContinueAsNew": 12,
    "limit.historySize.error": 20000,
    "limit.numPendingActivities.error": 2,
    "limit.numPendingChildExecutions.error": 2,
    "frontend.searchAttributesNumberOfKeysLimit": 2,
    "frontend.searchAttributesSizeOfValueLimit": 20,
}
SEARCH_ATTRIBUTES = {"LimitKW1": "Keyword", "LimitKW2": "Keyword", "LimitKW3": "Keyword"}


def dev_flags(dynamic: dict, search_attributes: dict) -> list[str]:
    flags = []
    for key, value in dynamic.items():
        flags += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    for key, kind in search_attributes.items():
        flags += ["--search-attribute", f"{key}={kind}"]
    return flags


class RealServer:
    """The real `temporal server start-dev`, in memory, on fresh ports."""

    def __init__(self, log_path: str, flags: list[str]):
        self.port = free_port()
        self.proc = spawn(
            [TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error", *flags],
            log_path,
        )

    async def connect(self) -> Client:
        last = None
        for _ in range(120):
            try:
                client = await Client.connect(f"127.0.0.1:{self.port}")
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                return client
            except Exception as e:  # not up yet
                last = e
                await asyncio.sleep(0.5)
        raise RuntimeError(f"the real dev server did not answer: {last}")

    def stop(self) -> None:
        kill_group(self.proc)


@contextlib.asynccontextmanager
async def side_by_side(tmp: Path, dynamic: dict, search_attributes: dict):
    """{"dura": client, "temporal": client}, both servers given the same flags; "temporal"
    only when the real CLI is installed."""
    flags = dev_flags(dynamic, search_attributes)
    dura = Server(str(tmp / "db"), extra_args=tuple(flags))
    real = RealServer(str(tmp / "temporal.log"), flags) if TEMPORAL else None
    try:
        clients = {"dura": await dura.start()}
        if real:
            clients["temporal"] = await real.connect()
        yield clients
    finally:
        dura.stop()
        if real:
            real.stop()


@pytest.fixture(scope="module")
async def servers(tmp_path_factory):
    async with side_by_side(tmp_path_factory.mktemp("limits"), LIMITS, SEARCH_ATTRIBUTES) as clients:
        yield clients


async def on_both(servers, scenario, expected):
    """Runs `scenario(client)` on every server; each outcome must be `expected`."""
    outcomes = {name: await within(120, scenario(client), f"{scenario.__name__} on {name}")
                for name, client in servers.items()}
    for name, outcome in outcomes.items():
        assert outcome == expected, f"{scenario.__name__} on {name}: {outcome!r}\nexpected {expected!r}\nall: {outcomes!r}"


def refusal(e: RPCError) -> tuple:
    return (e.status.name, e.message)


async def refused(call) -> tuple:
    try:
        await call
    except RPCError as e:
        return refusal(e)
    return ("OK",)


def ids() -> tuple[str, str]:
    return f"limits-{uuid.uuid4()}", f"limits-q-{uuid.uuid4()}"


async def closing_events(handle, count: int = 2) -> list:
    """The last `count` events: type, and the cause/message/reason they carry."""
    events = (await handle.fetch_history()).events
    shown = []
    for e in events[-count:]:
        kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        if e.HasField("workflow_task_failed_event_attributes"):
            a = e.workflow_task_failed_event_attributes
            shown.append((kind, WorkflowTaskFailedCause.Name(a.cause), a.failure.message))
        elif e.HasField("workflow_execution_terminated_event_attributes"):
            a = e.workflow_execution_terminated_event_attributes
            shown.append((kind, a.reason, a.identity))
        else:
            shown.append((kind,))
    return shown


async def first_task_failure(handle) -> tuple:
    """The first WorkflowTaskFailed's cause and message, once there is one."""
    for _ in range(200):
        for e in (await handle.fetch_history()).events:
            if e.HasField("workflow_task_failed_event_attributes"):
                a = e.workflow_task_failed_event_attributes
                return (WorkflowTaskFailedCause.Name(a.cause), a.failure.message)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id}: no workflow task failed")


# ----------------------------------------------------------------------------- at the edge

async def starts_and_signals(client: Client) -> dict:
    workflow_id, queue = ids()
    kw = [SearchAttributeKey.for_keyword(f"LimitKW{i}") for i in (1, 2, 3)]
    outcomes = {
        "start input": await refused(client.start_workflow("Anything", BIG, id=workflow_id, task_queue=queue)),
        "start memo": await refused(
            client.start_workflow("Anything", id=workflow_id, task_queue=queue, memo={"m": "y" * 1000})),
        "too many search attributes": await refused(client.start_workflow(
            "Anything", id=workflow_id, task_queue=queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(k, "v") for k in kw]))),
        "search attribute too big": await refused(client.start_workflow(
            "Anything", id=workflow_id, task_queue=queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(kw[0], "z" * 21)]))),
    }
    handle = await client.start_workflow("Anything", "small", id=workflow_id, task_queue=queue)
    outcomes["signal input"] = await refused(handle.signal("s", BIG))
    outcomes["signal-with-start input"] = await refused(client.start_workflow(
        "Anything", id=workflow_id, task_queue=queue, start_signal="s", start_signal_args=[BIG]))
    await handle.terminate()
    return outcomes


async def test_starts_and_signals_over_a_limit_are_refused_and_change_nothing(servers):
    blob = ("INVALID_ARGUMENT", "Blob data size exceeds limit.")
    await on_both(servers, starts_and_signals, {
        "start input": blob,
        "start memo": ("INVALID_ARGUMENT", "Memo size exceeds limit."),
        "too many search attributes": ("INVALID_ARGUMENT", "number of search attributes 3 exceeds limit 2"),
        "search attribute too big": (
            "INVALID_ARGUMENT", "search attribute LimitKW1 value size 23 exceeds size limit 20"),
        "signal input": blob,
        "signal-with-start input": blob,
    })


# ----------------------------------------------------------------------------- commands

async def activity_input_over_the_limit(client: Client) -> list:
    workflow_id, queue = ids()
    # The SDK would refuse to send it (it knows the namespace's limit): let the server judge.
    async with Worker(client, task_queue=queue, workflows=[BigActivityInput], activities=[echo],
                      disable_payload_error_limit=True):
        handle = await client.start_workflow(BigActivityInput.run, id=workflow_id, task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    return await closing_events(handle)


async def test_a_command_payload_over_the_limit_terminates_the_run(servers):
    message = "BadScheduleActivityAttributes: ScheduleActivityTaskCommandAttributes.Input exceeds size limit."
    await on_both(servers, activity_input_over_the_limit, [
        ("WORKFLOW_TASK_FAILED", "WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES", message),
        ("WORKFLOW_EXECUTION_TERMINATED", message, "history-service"),
    ])


async def activity_input_the_sdk_refuses(client: Client) -> tuple:
    """The SDK reads the namespace's advertised limit and fails its own workflow task."""
    workflow_id, queue = ids()
    async with Worker(client, task_queue=queue, workflows=[BigActivityInput], activities=[echo]):
        handle = await client.start_workflow(BigActivityInput.run, id=workflow_id, task_queue=queue)
        failure = await first_task_failure(handle)
    await handle.terminate()
    return failure


async def test_the_sdk_knows_the_limit_from_the_namespace(servers):
    await on_both(servers, activity_input_the_sdk_refuses, (
        "WORKFLOW_TASK_FAILED_CAUSE_PAYLOADS_TOO_LARGE",
        "[TMPRL1103] Attempted to upload payloads with size that exceeded the error limit.",
    ))


async def pending_over_the_limit(client: Client) -> dict:
    outcomes = {}
    for what, workflow, activities in [("activities", ManyActivities, [linger]), ("children", ManyChildren, [])]:
        workflow_id, queue = ids()
        async with Worker(client, task_queue=queue, workflows=[workflow, Waiter], activities=activities):
            handle = await client.start_workflow(workflow.run, 3, id=workflow_id, task_queue=queue)
            outcomes[what] = await first_task_failure(handle)
        await handle.terminate()
    return outcomes


async def test_a_task_leaving_too_much_pending_fails(servers):
    await on_both(servers, pending_over_the_limit, {
        "activities": (
            "WORKFLOW_TASK_FAILED_CAUSE_PENDING_ACTIVITIES_LIMIT_EXCEEDED",
            "PendingActivitiesLimitExceeded: the number of pending activities, 2, has reached the "
            "per-workflow limit of 2",
        ),
        "children": (
            "WORKFLOW_TASK_FAILED_CAUSE_PENDING_CHILD_WORKFLOWS_LIMIT_EXCEEDED",
            "PendingChildWorkflowsLimitExceeded: the number of pending child workflow executions, 2, "
            "has reached the per-workflow limit of 2",
        ),
    })


# ----------------------------------------------------------------------------- activities

async def activity_payloads_over_the_limit(client: Client) -> dict:
    outcomes = {}
    for name, activity in [("result", big_result), ("heartbeat", big_heartbeat)]:
        workflow_id, queue = ids()
        async with Worker(client, task_queue=queue, workflows=[ActivityOutcome], activities=[activity],
                          disable_payload_error_limit=True):
            outcomes[name] = await client.execute_workflow(
                ActivityOutcome.run, activity.__name__, id=workflow_id, task_queue=queue)
    return outcomes


async def test_an_activity_payload_over_the_limit_fails_the_activity(servers):
    await on_both(servers, activity_payloads_over_the_limit, {
        "result": ["ServerError", "Complete result exceeds size limit.", True],
        "heartbeat": ["ServerError", "Heartbeat details exceed size limit.", True],
    })


# ----------------------------------------------------------------------------- history

async def history_too_long(client: Client) -> dict:
    workflow_id, queue = ids()
    async with Worker(client, task_queue=queue, workflows=[TimerLoop, UntilContinueAsNewSuggested]):
        suggested_at = await client.execute_workflow(
            UntilContinueAsNewSuggested.run, id=f"{workflow_id}-can", task_queue=queue)
        handle = await client.start_workflow(TimerLoop.run, id=workflow_id, task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    events = (await handle.fetch_history()).events
    return {
        "suggested at": suggested_at,
        "length": len(events),
        "closing": await closing_events(handle, 1),
    }


async def test_a_history_too_long_terminates_the_run(servers):
    await on_both(servers, history_too_long, {
        "suggested at": 13,
        "length": 61,
        "closing": [("WORKFLOW_EXECUTION_TERMINATED", "Workflow history count exceeds limit.", "history-service")],
    })


async def history_too_big(client: Client) -> dict:
    """Signals of 1500 bytes until the history is over 20000 bytes."""
    workflow_id, queue = ids()
    handle = await client.start_workflow("NobodyRunsThis", id=workflow_id, task_queue=queue)
    for accepted in range(100):
        try:
            await handle.signal("s", "s" * 1500)
        except RPCError as e:
            return {"accepted": accepted, "refusal": refusal(e), "closing": await closing_events(handle, 1)}
    return {"accepted": 100}


async def test_a_history_too_big_terminates_the_run_and_refuses_the_request(servers):
    await on_both(servers, history_too_big, {
        "accepted": 13,
        "refusal": ("INVALID_ARGUMENT", "Workflow history size exceeds limit."),
        "closing": [("WORKFLOW_EXECUTION_TERMINATED", "Workflow history size exceeds limit.", "history-service")],
    })


# ----------------------------------------------------------------------------- rate

@pytest.fixture(scope="module")
async def rate_limited(tmp_path_factory):
    async with side_by_side(tmp_path_factory.mktemp("rate"), {"frontend.namespaceRPS": 5}, {}) as clients:
        yield clients


async def start_flood(client: Client) -> dict:
    # Let the bucket fill after connecting (the SDK's own calls count too).
    await asyncio.sleep(3)
    queue = f"rate-{uuid.uuid4()}"

    def start() -> StartWorkflowExecutionRequest:
        return StartWorkflowExecutionRequest(
            namespace="default", workflow_id=f"rate-{uuid.uuid4()}", request_id=str(uuid.uuid4()),
            workflow_type=WorkflowType(name="Anything"), task_queue=TaskQueue(name=queue))

    # Raw calls: the SDK's own calls would retry RESOURCE_EXHAUSTED.
    results = await asyncio.gather(
        *[client.workflow_service.start_workflow_execution(start(), retry=False) for _ in range(30)],
        return_exceptions=True,
    )
    refusals = sorted({(refusal(r), detail_types(r)) for r in results if isinstance(r, RPCError)})
    return {"started": sum(not isinstance(r, BaseException) for r in results), "refusals": refusals}


def detail_types(e: RPCError) -> tuple:
    details = e.grpc_status.details if e.grpc_status else []
    return tuple(d.type_url.rsplit("/", 1)[-1] for d in details)


async def test_a_namespace_over_its_rate_is_refused(rate_limited):
    await on_both(rate_limited, start_flood, {
        # A burst of namespaceRPS × namespaceBurstRatio (2).
        "started": 10,
        "refusals": [(("RESOURCE_EXHAUSTED", "namespace rate limit exceeded"),
                      ("temporal.api.errordetails.v1.ResourceExhaustedFailure",))],
    })
