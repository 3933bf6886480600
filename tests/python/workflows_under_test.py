"""Workflows whose histories are compared with the real dev server's (see test_history_shapes.py)."""

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError

_attempts: dict[str, int] = {}


@activity.defn
async def say_hello(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
async def flaky(key: str) -> str:
    """Fails twice, then succeeds: three attempts, one scheduled/started/completed."""
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] < 3:
        raise RuntimeError(f"attempt {_attempts[key]} fails")
    return f"ok after {_attempts[key]}"


@workflow.defn
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(say_hello, name, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class RetryWorkflow:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            flaky,
            key,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0),
        )


@workflow.defn
class FailOnceWorkflow:
    """Fails its first attempt; started with a retry policy, the second run succeeds."""

    @workflow.run
    async def run(self) -> str:
        if workflow.info().attempt == 1:
            raise ApplicationError("first attempt fails")
        return f"attempt {workflow.info().attempt}"


@workflow.defn
class ContinueTwiceWorkflow:
    """Continues as new twice, then returns how many runs it took."""

    @workflow.run
    async def run(self, runs: int) -> str:
        if runs < 3:
            workflow.continue_as_new(runs + 1)
        return f"{runs} runs"


@workflow.defn
class KidWorkflow:
    @workflow.run
    async def run(self, x: str) -> str:
        if x == "fail":
            raise ApplicationError("kid failed", type="KidBoom", non_retryable=True)
        return x.upper()


async def _run_kids(kid_queue: str | None) -> list:
    wid = workflow.info().workflow_id
    out = [await workflow.execute_child_workflow(KidWorkflow.run, "a", id=f"{wid}-a", task_queue=kid_queue)]
    try:
        await workflow.execute_child_workflow(KidWorkflow.run, "fail", id=f"{wid}-b", task_queue=kid_queue)
    except ChildWorkflowError as e:
        out.append(str(e.cause))
    return out


@workflow.defn
class ParentWorkflow:
    """Runs a child that completes, then one that fails, one after the other."""

    @workflow.run
    async def run(self) -> list:
        return await _run_kids(None)


@workflow.defn
class ParentOnQueueWorkflow:
    """ParentWorkflow with its children on the given task queue: a queue no worker polls yet
    holds the parent between its first child's start and that child's outcome."""

    @workflow.run
    async def run(self, kid_queue: str) -> list:
        return await _run_kids(kid_queue)


@workflow.defn
class WaitingKidWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class CancellingParentWorkflow:
    """Starts a child, then cancels it: a RequestCancelExternalWorkflowExecution command."""

    @workflow.run
    async def run(self) -> str:
        child = await workflow.start_child_workflow(
            WaitingKidWorkflow.run, id=f"{workflow.info().workflow_id}-kid"
        )
        child.cancel()
        try:
            await child
        except ChildWorkflowError:
            return "child cancelled"
        return "child finished"


@workflow.defn
class SignalledWorkflow:
    """Waits for one `poke` signal and returns its argument."""

    def __init__(self) -> None:
        self.poked: str | None = None

    @workflow.signal
    def poke(self, value: str) -> None:
        self.poked = value

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.poked is not None)
        return f"poked with {self.poked}"


@workflow.defn
class SignallingWorkflow:
    """Signals another workflow: a SignalExternalWorkflowExecution command. A target that does
    not exist fails the signal; the workflow returns what the SDK raised."""

    @workflow.run
    async def run(self, target_id: str) -> str:
        try:
            await workflow.get_external_workflow_handle(target_id).signal(SignalledWorkflow.poke, "hi")
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return "signalled"


@workflow.defn
class CancellingOtherWorkflow:
    """Asks another (not a child) workflow to cancel: RequestCancelExternalWorkflowExecution."""

    @workflow.run
    async def run(self, target_id: str) -> str:
        try:
            await workflow.get_external_workflow_handle(target_id).cancel()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return "cancel requested"
