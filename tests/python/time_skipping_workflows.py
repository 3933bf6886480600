"""Workflows and activities of test_time_skipping.py (a module of their own: the workflow
sandbox re-imports the module a workflow is defined in)."""

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError


@workflow.defn
class SleepingWorkflow:
    """Sleeps, then tells how much workflow time passed."""

    @workflow.run
    async def run(self, seconds: float) -> float:
        start = workflow.now()
        await asyncio.sleep(seconds)
        return (workflow.now() - start).total_seconds()


@workflow.defn
class SignalOrTimeoutWorkflow:
    """The guide's example: waits a day for a signal, then gives up."""

    def __init__(self) -> None:
        self.signalled = False

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: self.signalled, timeout=timedelta(days=1))
            return "signalled"
        except asyncio.TimeoutError:
            return "timed out"

    @workflow.signal
    def wake(self) -> None:
        self.signalled = True


@activity.defn
async def flaky_once() -> int:
    if activity.info().attempt == 1:
        raise ApplicationError("first attempt fails")
    return activity.info().attempt


@workflow.defn
class RetryBackoffWorkflow:
    """An activity whose one retry waits out a ten-minute backoff."""

    @workflow.run
    async def run(self) -> list:
        start = workflow.now()
        attempt = await workflow.execute_activity(
            flaky_once,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(minutes=10), maximum_attempts=2),
        )
        return [attempt, (workflow.now() - start).total_seconds()]


@activity.defn
async def stops_heartbeating() -> int:
    """Attempt 1 heartbeats once and then hangs, as a stuck worker would."""
    if activity.info().attempt == 1:
        activity.heartbeat("alive")
        await asyncio.sleep(3600)
    return activity.info().attempt


@workflow.defn
class HeartbeatTimeoutWorkflow:
    @workflow.run
    async def run(self) -> list:
        start = workflow.now()
        attempt = await workflow.execute_activity(
            stops_heartbeating,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=2),
        )
        return [attempt, (workflow.now() - start).total_seconds()]


@workflow.defn
class ActivityThenTimerWorkflow:
    """Runs an activity (which sleeps on the test server's clock), then reports workflow time."""

    @workflow.run
    async def run(self) -> list:
        start = workflow.now()
        slept = await workflow.execute_activity(
            "sleeps_on_the_test_clock", start_to_close_timeout=timedelta(days=1)
        )
        return [slept, (workflow.now() - start).total_seconds()]


@activity.defn(name="fetch_greeting")
async def fetch_greeting(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            fetch_greeting, name, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class ParentOfSleeper:
    """Waits for a child that sleeps a day."""

    @workflow.run
    async def run(self) -> float:
        start = workflow.now()
        await workflow.execute_child_workflow(SleepingWorkflow.run, DAY_SECONDS, id=f"{workflow.info().workflow_id}-child")
        return (workflow.now() - start).total_seconds()


DAY_SECONDS = 24 * 3600.0
