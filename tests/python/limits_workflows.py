"""Workflows that run into Temporal's limits (see test_limits.py)."""

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

# Over the tests' limit.blobSize.error (2000 bytes) once encoded.
BIG = "x" * 3000
ONCE = RetryPolicy(maximum_attempts=1)


@activity.defn
async def echo(arg: str) -> str:
    return arg


@activity.defn
async def big_result() -> str:
    return BIG


@activity.defn
async def big_heartbeat() -> str:
    activity.heartbeat(BIG)
    # The server fails the activity at this heartbeat and says so; the SDK cancels it.
    await asyncio.sleep(30)
    return "never"


@activity.defn
async def linger() -> str:
    await asyncio.sleep(30)
    return "late"


@workflow.defn
class BigActivityInput:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(echo, BIG, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class ActivityOutcome:
    """What an activity's failure looks like to the workflow: its cause's message and type."""

    @workflow.run
    async def run(self, name: str) -> list:
        try:
            await workflow.execute_activity(
                name, start_to_close_timeout=timedelta(seconds=20), retry_policy=ONCE
            )
        except ActivityError as e:
            cause = e.cause
            return [type(cause).__name__, str(cause), getattr(cause, "non_retryable", None)]
        return ["completed"]


@workflow.defn
class ManyActivities:
    @workflow.run
    async def run(self, n: int) -> None:
        await asyncio.gather(
            *[workflow.execute_activity(linger, start_to_close_timeout=timedelta(seconds=60)) for _ in range(n)]
        )


@workflow.defn
class Waiter:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class ManyChildren:
    @workflow.run
    async def run(self, n: int) -> None:
        children = [
            await workflow.start_child_workflow(Waiter.run, id=f"{workflow.info().workflow_id}-child-{i}")
            for i in range(n)
        ]
        await asyncio.gather(*children)


@workflow.defn
class TimerLoop:
    """Sleeps and sleeps until its history is too long."""

    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.sleep(0.01)


@workflow.defn
class UntilContinueAsNewSuggested:
    """The history length at which the server first suggests continue-as-new."""

    @workflow.run
    async def run(self) -> int:
        while not workflow.info().is_continue_as_new_suggested():
            await workflow.sleep(0.01)
        return workflow.info().get_current_history_length()
