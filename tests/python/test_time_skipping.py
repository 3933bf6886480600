"""`dura server start-test` as the Python SDK's time-skipping test server: the SDK launches
$DURA_BIN itself through `test_server_existing_path`, exactly as it launches Temporal's Java
test server (`<executable> <port>`), and stops it with SIGKILL.

The Testing section of Temporal's Python guide, and timers far longer than the test: each must
finish in seconds of wall time while workflow time moves by hours or days."""

import os
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import TimeoutError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from harness import DURA_BIN, within
from time_skipping_workflows import (
    ActivityThenTimerWorkflow,
    GreetingWorkflow,
    HeartbeatTimeoutWorkflow,
    ParentOfSleeper,
    RetryBackoffWorkflow,
    SignalOrTimeoutWorkflow,
    SleepingWorkflow,
    flaky_once,
    stops_heartbeating,
)

# What "in seconds" means here: far below any of the skipped spans, with room for a debug
# build on a loaded machine.
SKIPPED_WITHIN = 5
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture(scope="module")
async def env():
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=DURA_BIN)
    try:
        yield environment
    finally:
        await environment.shutdown()


def queue() -> str:
    return f"ts-{uuid.uuid4()}"


async def run_skipping(env: WorkflowEnvironment, workflow, *args, activities=(), what: str):
    """The workflow's result, which must come within SKIPPED_WITHIN seconds of wall time."""
    task_queue = queue()
    async with Worker(env.client, task_queue=task_queue, workflows=[workflow], activities=list(activities)):
        started = time.monotonic()
        result = await within(
            SKIPPED_WITHIN,
            env.client.execute_workflow(workflow.run, *args, id=f"ts-{uuid.uuid4()}", task_queue=task_queue),
            what,
        )
        return result, time.monotonic() - started


async def test_the_server_is_the_time_skipping_kind(env: WorkflowEnvironment):
    assert env.supports_time_skipping
    # The test server starts at the wall clock's time.
    now = await env.get_current_time()
    assert abs(now.timestamp() - time.time()) < 60, now


async def test_a_one_hour_sleep_finishes_at_once(env: WorkflowEnvironment):
    slept, _ = await run_skipping(env, SleepingWorkflow, HOUR, what="a one-hour sleep")
    assert slept >= HOUR, f"workflow time moved {slept} s"


async def test_a_thirty_day_timer_finishes_at_once(env: WorkflowEnvironment):
    before = await env.get_current_time()
    slept, _ = await run_skipping(env, SleepingWorkflow, 30 * DAY, what="a thirty-day timer")
    assert slept >= 30 * DAY, f"workflow time moved {slept} s"
    moved = (await env.get_current_time() - before).total_seconds()
    assert moved >= 30 * DAY, f"the server's clock moved {moved} s"


async def test_a_ten_minute_retry_backoff_is_skipped(env: WorkflowEnvironment):
    (attempt, took), _ = await run_skipping(
        env, RetryBackoffWorkflow, activities=[flaky_once], what="an activity retried after ten minutes"
    )
    assert attempt == 2, attempt
    assert took >= 600, f"workflow time moved {took} s"


async def test_a_heartbeat_timeout_is_noticed_and_its_retry_backoff_skipped(env: WorkflowEnvironment):
    # Attempt 1 stops heartbeating: its 2 s heartbeat timeout passes at wall-clock pace (the
    # activity is running, which holds time), then the one-hour backoff is skipped.
    (attempt, took), _ = await run_skipping(
        env, HeartbeatTimeoutWorkflow, activities=[stops_heartbeating], what="a heartbeat timeout and retry"
    )
    assert attempt == 2, attempt
    assert took >= HOUR, f"workflow time moved {took} s"


async def test_a_child_that_sleeps_a_day_is_waited_for_at_once(env: WorkflowEnvironment):
    task_queue = queue()
    async with Worker(env.client, task_queue=task_queue, workflows=[ParentOfSleeper, SleepingWorkflow]):
        took = await within(
            SKIPPED_WITHIN,
            env.client.execute_workflow(ParentOfSleeper.run, id=f"ts-{uuid.uuid4()}", task_queue=task_queue),
            "a parent of a day-long child",
        )
    assert took >= DAY, f"the parent's time moved {took} s"


async def test_a_run_timeout_ends_a_long_sleep_on_virtual_time(env: WorkflowEnvironment):
    task_queue = queue()
    async with Worker(env.client, task_queue=task_queue, workflows=[SleepingWorkflow]):
        handle = await env.client.start_workflow(
            SleepingWorkflow.run,
            2.0 * DAY,
            id=f"ts-{uuid.uuid4()}",
            task_queue=task_queue,
            run_timeout=timedelta(days=1),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await within(SKIPPED_WITHIN, handle.result(), "a run timing out after a day")
    assert isinstance(failed.value.cause, TimeoutError), failed.value.cause
    events = [e async for e in handle.fetch_history_events()]
    started, timed_out = events[0].event_time.ToDatetime(), events[-1].event_time.ToDatetime()
    assert events[-1].HasField("workflow_execution_timed_out_event_attributes"), events[-1]
    assert (timed_out - started).total_seconds() >= DAY, (started, timed_out)


async def test_the_guides_signal_or_timeout_workflow(env: WorkflowEnvironment):
    # Without a signal, the day-long wait times out at once.
    result, _ = await run_skipping(env, SignalOrTimeoutWorkflow, what="a day-long wait")
    assert result == "timed out", result
    # With one, the workflow ends signalled; env.sleep moves time while the workflow waits.
    task_queue = queue()
    async with Worker(env.client, task_queue=task_queue, workflows=[SignalOrTimeoutWorkflow]):
        handle = await env.client.start_workflow(
            SignalOrTimeoutWorkflow.run, id=f"ts-{uuid.uuid4()}", task_queue=task_queue
        )
        await env.sleep(timedelta(hours=12))
        await handle.signal(SignalOrTimeoutWorkflow.wake)
        assert await within(SKIPPED_WITHIN, handle.result(), "a signalled wait") == "signalled"


async def test_env_sleep_moves_the_clock(env: WorkflowEnvironment):
    before = await env.get_current_time()
    started = time.monotonic()
    await within(SKIPPED_WITHIN, env.sleep(timedelta(days=2)), "env.sleep of two days")
    moved = (await env.get_current_time() - before).total_seconds()
    assert moved >= 2 * DAY, f"the server's clock moved {moved} s"
    assert time.monotonic() - started < SKIPPED_WITHIN


async def test_an_activity_that_sleeps_on_the_test_clock_lets_time_advance(env: WorkflowEnvironment):
    # A running activity holds time still; its own env.sleep unlocks it for the span.
    @activity.defn(name="sleeps_on_the_test_clock")
    async def sleeps_on_the_test_clock() -> float:
        before = await env.get_current_time()
        await env.sleep(timedelta(hours=3))
        return (await env.get_current_time() - before).total_seconds()

    (slept, took), _ = await run_skipping(
        env, ActivityThenTimerWorkflow, activities=[sleeps_on_the_test_clock], what="an activity's env.sleep"
    )
    assert slept >= 3 * HOUR, f"the activity saw the clock move {slept} s"
    assert took >= 3 * HOUR, f"workflow time moved {took} s"


async def test_a_schedule_fires_on_virtual_time(env: WorkflowEnvironment):
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleIntervalSpec,
        ScheduleSpec,
    )

    task_queue = queue()
    schedule_id = f"ts-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=task_queue, workflows=[SleepingWorkflow]):
        handle = await env.client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    SleepingWorkflow.run, 0.0, id=f"{schedule_id}-wf", task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            ),
        )
        try:
            await within(SKIPPED_WITHIN, env.sleep(timedelta(hours=3, minutes=30)), "three and a half hours")
            actions = (await handle.describe()).info.num_actions
            assert actions >= 3, f"{actions} scheduled actions in 3.5 virtual hours"
        finally:
            await handle.delete()


async def test_a_mocked_activity(env: WorkflowEnvironment):
    @activity.defn(name="fetch_greeting")
    async def fetch_greeting_mock(name: str) -> str:
        return f"Mocked {name}"

    result, _ = await run_skipping(
        env, GreetingWorkflow, "you", activities=[fetch_greeting_mock], what="a workflow with a mock"
    )
    assert result == "Mocked you", result


async def test_auto_time_skipping_can_be_turned_off(env: WorkflowEnvironment):
    # While the SDK does not unlock time, a sleep takes its real time: here 2 s, not skipped.
    task_queue = queue()
    async with Worker(env.client, task_queue=task_queue, workflows=[SleepingWorkflow]):
        with env.auto_time_skipping_disabled():
            started = time.monotonic()
            slept = await within(
                30,
                env.client.execute_workflow(
                    SleepingWorkflow.run, 2.0, id=f"ts-{uuid.uuid4()}", task_queue=task_queue
                ),
                "a two-second sleep",
            )
            assert time.monotonic() - started >= 1.9, "time skipped although it was locked"
    assert slept >= 2, slept


async def test_an_unbalanced_unlock_is_refused():
    from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
    from temporalio.service import RPCError, RPCStatusCode

    # A fresh server, as the Java one: locked once at start, and once more while no timer is
    # pending; a third unlock has no lock to balance.
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=DURA_BIN)
    service = environment.client.test_service
    try:
        await service.unlock_time_skipping(UnlockTimeSkippingRequest())
        await service.unlock_time_skipping(UnlockTimeSkippingRequest())
        with pytest.raises(RPCError) as refused:
            await service.unlock_time_skipping(UnlockTimeSkippingRequest())
        assert refused.value.status == RPCStatusCode.FAILED_PRECONDITION, refused.value
        await service.lock_time_skipping(LockTimeSkippingRequest())
        await service.unlock_time_skipping(UnlockTimeSkippingRequest())
    finally:
        await environment.shutdown()


async def test_the_sdk_cache_name_runs_the_test_server(tmp_path):
    # An SDK that finds its cached Java server name runs it as `<name> <port>`.
    link = tmp_path / "temporal-test-server-sdk-python-0.0.0"
    os.symlink(os.path.abspath(DURA_BIN), link)
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(link))
    try:
        slept, _ = await run_skipping(environment, SleepingWorkflow, DAY, what="a day-long sleep")
        assert slept >= DAY
    finally:
        await environment.shutdown()
