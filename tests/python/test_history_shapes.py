"""Event-type sequences of real workflows, compared with expectations recorded from the real
Temporal dev server (`python record_expected.py ADDRESS` re-records them)."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from temporalio.api.enums.v1 import ContinueAsNewInitiator, EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from google.protobuf.json_format import MessageToDict

from harness import Server, within

from workflows_under_test import (
    CancellingOtherWorkflow,
    CancellingParentWorkflow,
    ContinueTwiceWorkflow,
    FailOnceWorkflow,
    HelloWorkflow,
    KidWorkflow,
    ParentWorkflow,
    RetryWorkflow,
    SignalledWorkflow,
    SignallingWorkflow,
    WaitingKidWorkflow,
    flaky,
    say_hello,
)

EXPECTED = Path(__file__).parent / "expected"
# Each of these workflows finishes in well under a second; 60 s means something hangs.
RESULT_TIMEOUT = 60


@pytest.fixture(scope="module")
async def client(tmp_path_factory):
    server = Server(str(tmp_path_factory.mktemp("shapes") / "db"))
    try:
        yield await server.start()
    finally:
        server.stop()


async def result_of(handle):
    return await within(RESULT_TIMEOUT, handle.result(), f"workflow {handle.id}")


def event_types(history) -> list[str]:
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


async def run_and_fetch(client: Client, workflow, arg: str) -> list[str]:
    queue = f"shapes-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow, RetryWorkflow], activities=[say_hello, flaky]):
        handle = await client.start_workflow(workflow.run, arg, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        await result_of(handle)
    return event_types(await handle.fetch_history())


async def run_workflow_retry(client: Client) -> list[str]:
    """Both runs of a workflow retried once by its retry policy, separated by a '--' line."""
    queue = f"shapes-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[FailOnceWorkflow]):
        handle = await client.start_workflow(
            FailOnceWorkflow.run,
            id=f"shapes-{uuid.uuid4()}",
            task_queue=queue,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3),
        )
        assert await result_of(handle) == "attempt 2"
    first_run = handle.first_execution_run_id
    first = await client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
    second = await client.get_workflow_handle(handle.id).fetch_history()
    started = second.events[0].workflow_execution_started_event_attributes
    assert started.attempt == 2, started
    assert started.continued_execution_run_id == first_run, started
    assert started.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_RETRY, started
    return event_types(first) + ["--"] + event_types(second)


async def run_continue_as_new(client: Client) -> list[str]:
    """Every run of a workflow that continues as new twice, separated by '--' lines."""
    queue = f"shapes-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ContinueTwiceWorkflow]):
        handle = await client.start_workflow(ContinueTwiceWorkflow.run, 1, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        assert await result_of(handle) == "3 runs"
    shapes, run_id = [], handle.first_execution_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        shapes += (["--"] if shapes else []) + event_types(history)
        last = history.events[-1]
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        if run_id:
            started = (await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()).events[0]
            attrs = started.workflow_execution_started_event_attributes
            assert attrs.initiator == ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW, attrs
            assert attrs.attempt == 1, attrs
            assert attrs.first_execution_run_id == handle.first_execution_run_id, attrs
    return shapes


def event_shape(event) -> str:
    """An event's type and which attributes it carries (values vary from run to run)."""
    attrs = MessageToDict(event)
    attrs = next((v for k, v in attrs.items() if k.endswith("EventAttributes")), {})
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") + " " + ",".join(sorted(attrs))


async def run_children(client: Client) -> list[str]:
    """The parent's child-workflow events with the attributes they carry, then the first
    child's history. Only child events are compared from the parent: when a child's outcome
    lands relative to the parent's own workflow tasks is a race on either server."""
    queue = f"shapes-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ParentWorkflow, KidWorkflow]):
        handle = await client.start_workflow(ParentWorkflow.run, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        assert await result_of(handle) == ["A", "KidBoom: kid failed"]
    parent = await handle.fetch_history()
    kid = await client.get_workflow_handle(f"{handle.id}-a").fetch_history()
    return (
        [event_shape(e) for e in parent.events if "CHILD" in EventType.Name(e.event_type)]
        + ["--"]
        + [event_shape(kid.events[0])]
        + event_types(kid)[1:]
    )


def external_shapes(history) -> list[str]:
    """The shapes of a history's events about other workflows (signals, cancellation, children)."""
    names = ("EXTERNAL", "SIGNALED", "CANCEL", "CHILD")
    return [event_shape(e) for e in history.events if any(n in EventType.Name(e.event_type) for n in names)]


async def run_external_signal(client: Client) -> list[str]:
    """A workflow signalling another, then one signalling a workflow that does not exist: each
    caller's result and events about the other workflow, and the target's signal event."""
    queue = f"shapes-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[SignalledWorkflow, SignallingWorkflow]):
        target = await client.start_workflow(SignalledWorkflow.run, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        caller = await client.start_workflow(SignallingWorkflow.run, target.id, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        results = [await result_of(caller), await result_of(target)]
        lost = await client.start_workflow(
            SignallingWorkflow.run, f"nobody-{uuid.uuid4()}", id=f"shapes-{uuid.uuid4()}", task_queue=queue
        )
        results.append(await result_of(lost))
    return (
        results
        + ["--"]
        + external_shapes(await caller.fetch_history())
        + ["--"]
        + external_shapes(await target.fetch_history())
        + ["--"]
        + external_shapes(await lost.fetch_history())
    )


async def run_external_cancel(client: Client) -> list[str]:
    """A parent cancelling its started child, and a workflow asking another to cancel: results,
    the callers' events about the other workflow, and the targets' cancellation events."""
    queue = f"shapes-{uuid.uuid4()}"
    workflows = [CancellingParentWorkflow, WaitingKidWorkflow, CancellingOtherWorkflow]
    async with Worker(client, task_queue=queue, workflows=workflows):
        parent = await client.start_workflow(CancellingParentWorkflow.run, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        results = [await result_of(parent)]
        target = await client.start_workflow(WaitingKidWorkflow.run, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        caller = await client.start_workflow(CancellingOtherWorkflow.run, target.id, id=f"shapes-{uuid.uuid4()}", task_queue=queue)
        results.append(await result_of(caller))
    kid = client.get_workflow_handle(f"{parent.id}-kid")
    return (
        results
        + ["--"]
        + external_shapes(await parent.fetch_history())
        + ["--"]
        + external_shapes(await kid.fetch_history())
        + ["--"]
        + external_shapes(await caller.fetch_history())
        + ["--"]
        + external_shapes(await target.fetch_history())
    )


def assert_matches(actual: list[str], recorded: str) -> None:
    expected = (EXPECTED / recorded).read_text().splitlines()  # one event (or '--') a line
    assert actual == expected, f"history differs from {recorded}:\nactual   {actual}\nexpected {expected}"


async def test_hello_world_history_matches_the_real_server(client: Client):
    actual = await run_and_fetch(client, HelloWorkflow, "Temporal")
    assert_matches(actual, "hello_world.txt")


async def test_retry_history_matches_the_real_server(client: Client):
    actual = await run_and_fetch(client, RetryWorkflow, str(uuid.uuid4()))
    assert_matches(actual, "activity_retry.txt")


async def test_workflow_retry_histories_match_the_real_server(client: Client):
    actual = await run_workflow_retry(client)
    assert_matches(actual, "workflow_retry.txt")


async def test_continue_as_new_histories_match_the_real_server(client: Client):
    actual = await run_continue_as_new(client)
    assert_matches(actual, "continue_as_new.txt")


async def test_child_workflow_histories_match_the_real_server(client: Client):
    actual = await run_children(client)
    assert_matches(actual, "child_workflows.txt")


async def test_external_signal_histories_match_the_real_server(client: Client):
    actual = await run_external_signal(client)
    assert_matches(actual, "external_signal.txt")


async def test_external_cancel_histories_match_the_real_server(client: Client):
    actual = await run_external_cancel(client)
    assert_matches(actual, "external_cancel.txt")
