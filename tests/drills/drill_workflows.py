"""Workflows and activities the drills run (a module of their own: the SDK's workflow sandbox
re-imports workflows from their module)."""

import hashlib
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

STEPS = 3
# Generous: a 2-core machine runs three debug nodes and the workers; a task lost with a killed
# node is retried after start_to_close, so it is not so long that a drill waits minutes.
ACTIVITY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)),
)


def step_output(arg: str) -> str:
    return f"{arg}#{hashlib.sha256(arg.encode()).hexdigest()[:8]}"


def expected_result(name: str, signal_payload: str) -> str:
    return "|".join([step_output(f"{name}:{k}") for k in range(STEPS)] + [signal_payload])


@activity.defn
async def step(arg: str) -> str:
    return step_output(arg)


@workflow.defn
class DrillWorkflow:
    """Three activities, a 1 s timer, then waits for a `go` signal; the result joins the
    activities' outputs with the signal's payload, so a lost or swapped input shows."""

    def __init__(self) -> None:
        self.payload: str | None = None

    @workflow.signal
    def go(self, payload: str) -> None:
        self.payload = payload

    @workflow.run
    async def run(self, name: str) -> str:
        outputs = [await workflow.execute_activity(step, f"{name}:{k}", **ACTIVITY_OPTIONS) for k in range(STEPS)]
        await workflow.sleep(1)
        await workflow.wait_condition(lambda: self.payload is not None)
        return "|".join(outputs + [self.payload])


@workflow.defn
class SleepyWorkflow:
    """One activity, then a long timer: mid-flight across a whole-cluster crash."""

    @workflow.run
    async def run(self, name: str, seconds: float) -> str:
        out = await workflow.execute_activity(step, f"{name}:0", **ACTIVITY_OPTIONS)
        await workflow.sleep(seconds)
        return f"{out} slept {seconds}"
