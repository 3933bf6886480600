"""Concurrent workflows against one dura server, and a SIGKILL in the middle of a run.

Each test gets its own `dura server start-dev` ($DURA_BIN) on a free port and database. These
are correctness tests, not load tests (load is `dura bench`'s job): every workflow must end
with its own result and exactly one of each event a crash could lose or double. The crash
tests prove, before the kill, that it interrupts work: some workflows have completed, some
are held mid-run where the test put them, and more were started just before it."""

import asyncio
import uuid
from collections import Counter

from temporalio import activity
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from dura_processes import wait_until
from harness import within
from workflows_under_test import HelloWorkflow, KidWorkflow, ParentOnQueueWorkflow, say_hello

# Bound for a batch of workflows to finish. After a crash the server first has to time out
# the activities that died with the old worker (HelloWorkflow's start_to_close is 10 s).
RESULTS_TIMEOUT = 120

RUNNING, COMPLETED = WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED


async def event_counts(client: Client, wid: str) -> Counter:
    history = await within(30, client.get_workflow_handle(wid).fetch_history(), f"history of {wid}")
    return Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events)


async def count_problems(client: Client, wids: list[str], expected: dict[str, int]) -> list[str]:
    """For every workflow in wids, each event type in `expected` whose count differs."""
    problems = []
    for wid in wids:
        counts = await event_counts(client, wid)
        wrong = {name: counts[name] for name, n in expected.items() if counts[name] != n}
        if wrong:
            problems.append(f"{wid}: {wrong} (want {expected}); history {dict(counts)}")
    return problems


async def statuses(client: Client, wids: list[str]) -> dict:
    return {wid: (await within(30, client.get_workflow_handle(wid).describe(), f"describe {wid}")) for wid in wids}


ONE_ACTIVITY_ONCE = {"ACTIVITY_TASK_SCHEDULED": 1, "ACTIVITY_TASK_STARTED": 1, "ACTIVITY_TASK_COMPLETED": 1,
                     "WORKFLOW_EXECUTION_COMPLETED": 1}


async def test_concurrent_workflows_each_complete_once_with_their_own_result(server):
    client = await server.start()
    queue = f"concurrent-{uuid.uuid4()}"
    ids = [f"concurrent-{i}-{uuid.uuid4()}" for i in range(30)]
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        handles = await asyncio.gather(*[
            client.start_workflow(HelloWorkflow.run, wid, id=wid, task_queue=queue) for wid in ids])
        results = await within(RESULTS_TIMEOUT, asyncio.gather(*[h.result() for h in handles]),
                               f"{len(ids)} concurrent workflows")
    assert results == [f"Hello, {wid}!" for wid in ids], results
    problems = await count_problems(client, ids, ONE_ACTIVITY_ONCE)
    assert not problems, "\n".join(problems)


class Held:
    """The worker's `say_hello` (same activity name), which for the workflow ids in `ids`
    waits until release(): the server then knows those activities as started and running."""

    def __init__(self, ids):
        self.ids, self.running, self.released = set(ids), set(), asyncio.Event()

        @activity.defn(name="say_hello")
        async def held_say_hello(name: str) -> str:
            wid = activity.info().workflow_id
            if wid in self.ids and not self.released.is_set():
                self.running.add(wid)
                try:
                    await self.released.wait()
                finally:
                    self.running.discard(wid)
            return f"Hello, {name}!"

        self.activity = held_say_hello


async def test_every_workflow_completes_after_sigkill_mid_run(server):
    client = await server.start()
    queue = f"crash-{uuid.uuid4()}"
    ids = [f"crash-{i}-{uuid.uuid4()}" for i in range(60)]
    # Done before the kill; activity running in the worker at the kill; started just before it.
    quick, held, racing = ids[:20], ids[20:30], ids[30:]
    hold = Held(held)

    def start(wid):
        return client.start_workflow(HelloWorkflow.run, wid, id=wid, task_queue=queue)

    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[hold.activity]):
        handles = await asyncio.gather(*[start(wid) for wid in quick + held])
        await within(RESULTS_TIMEOUT, asyncio.gather(*[h.result() for h in handles[:len(quick)]]),
                     "the workflows meant to finish before the kill")
        await wait_until("every held activity running in the worker", lambda: hold.running == set(held))
        before = await statuses(client, quick + held)
        not_done = {w: d.status for w, d in before.items() if w in quick and d.status != COMPLETED}
        assert not not_done, f"not completed before the kill: {not_done}"
        for wid in held:
            d = before[wid]
            pending = [p.state for p in d.raw_description.pending_activities]
            assert d.status == RUNNING and pending == [PendingActivityState.PENDING_ACTIVITY_STATE_STARTED], (
                f"{wid} should be running with its activity started: {d.status}, pending {pending}")
        await asyncio.gather(*[start(wid) for wid in racing])
        server.kill9()
    hold.released.set()

    client = await server.start()
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        results = await within(
            RESULTS_TIMEOUT, asyncio.gather(*[client.get_workflow_handle(wid).result() for wid in ids]),
            "every workflow after the restart")
    assert results == [f"Hello, {wid}!" for wid in ids], results
    # Exactly one of each on every workflow, whatever it was doing at the kill.
    problems = await count_problems(client, ids, ONE_ACTIVITY_ONCE)
    assert not problems, "\n".join(problems)
    # The held activities' first attempts died with the old worker: the server retried each once.
    for wid in held:
        history = await within(30, client.get_workflow_handle(wid).fetch_history(), f"history of {wid}")
        attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        assert attempts == [2], f"{wid}: ActivityTaskStarted attempts {attempts}, want [2]"


async def test_parents_and_children_complete_after_sigkill_mid_run(server):
    """Child starts and child outcomes cross shards through the outbox: none may be lost or
    doubled when the server dies with some of them in flight."""
    client = await server.start()
    queue, kids_queue = f"crash-children-{uuid.uuid4()}", f"crash-kids-{uuid.uuid4()}"
    ids = [f"parent-{i}-{uuid.uuid4()}" for i in range(30)]
    # Done before the kill; first child started but held on a queue no worker polls yet;
    # started just before the kill.
    quick, held, racing = ids[:12], ids[12:18], ids[18:]

    def start(wid, kid_queue):
        return client.start_workflow(ParentOnQueueWorkflow.run, kid_queue, id=wid, task_queue=queue)

    async def kid_started(wid):
        return (await event_counts(client, wid))["CHILD_WORKFLOW_EXECUTION_STARTED"] == 1

    async with Worker(client, task_queue=queue, workflows=[ParentOnQueueWorkflow, KidWorkflow]):
        handles = await asyncio.gather(*[start(w, queue) for w in quick], *[start(w, kids_queue) for w in held])
        await within(RESULTS_TIMEOUT, asyncio.gather(*[h.result() for h in handles[:len(quick)]]),
                     "the parents meant to finish before the kill")
        for wid in held:
            await wait_until(f"{wid}'s first child started", lambda: kid_started(wid))
        before = await statuses(client, quick + held + [f"{w}-a" for w in held])
        wrong = {w: d.status for w, d in before.items()
                 if d.status != (COMPLETED if w in quick else RUNNING)}
        assert not wrong, f"before the kill the quick parents must be completed, the held ones and their kids running: {wrong}"
        await asyncio.gather(*[start(w, queue) for w in racing])
        server.kill9()

    client = await server.start()
    async with Worker(client, task_queue=queue, workflows=[ParentOnQueueWorkflow, KidWorkflow]), \
            Worker(client, task_queue=kids_queue, workflows=[KidWorkflow]):
        results = await within(
            RESULTS_TIMEOUT, asyncio.gather(*[client.get_workflow_handle(wid).result() for wid in ids]),
            "every parent after the restart")
    assert results == [["A", "KidBoom: kid failed"]] * len(ids), results
    problems = await count_problems(client, ids, {
        "START_CHILD_WORKFLOW_EXECUTION_INITIATED": 2, "CHILD_WORKFLOW_EXECUTION_STARTED": 2,
        "CHILD_WORKFLOW_EXECUTION_COMPLETED": 1, "CHILD_WORKFLOW_EXECUTION_FAILED": 1,
        "WORKFLOW_EXECUTION_COMPLETED": 1})
    problems += await count_problems(client, [f"{w}-a" for w in ids], {
        "WORKFLOW_EXECUTION_STARTED": 1, "WORKFLOW_EXECUTION_COMPLETED": 1})
    problems += await count_problems(client, [f"{w}-b" for w in ids], {
        "WORKFLOW_EXECUTION_STARTED": 1, "WORKFLOW_EXECUTION_FAILED": 1})
    assert not problems, "\n".join(problems)
