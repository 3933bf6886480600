"""Many concurrent workflows against one dura server, and a SIGKILL in the middle of a run.

Each test gets its own `dura server start-dev` ($DURA_BIN) on a free port and database."""

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from workflows_under_test import HelloWorkflow, KidWorkflow, ParentWorkflow, say_hello

async def test_200_concurrent_workflows_all_complete(server):
    client = await server.start()
    queue = f"load-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello],
                      max_concurrent_activities=200):
        handles = await asyncio.gather(*[
            client.start_workflow(HelloWorkflow.run, f"n{i}", id=f"load-{i}-{uuid.uuid4()}", task_queue=queue)
            for i in range(200)
        ])
        results = await asyncio.wait_for(asyncio.gather(*[h.result() for h in handles]), timeout=240)
    assert results == [f"Hello, n{i}!" for i in range(200)]


async def test_every_workflow_completes_after_sigkill_mid_run(server):
    client = await server.start()
    queue = f"crash-{uuid.uuid4()}"
    ids = [f"crash-{i}-{uuid.uuid4()}" for i in range(60)]
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        handles = [await client.start_workflow(HelloWorkflow.run, wid, id=wid, task_queue=queue) for wid in ids]
        # Some are done, some are mid-flight when the server dies.
        await handles[0].result()
        server.kill9()
    client = await server.start()
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        results = await asyncio.wait_for(
            asyncio.gather(*[client.get_workflow_handle(wid).result() for wid in ids]), timeout=240
        )
    assert results == [f"Hello, {wid}!" for wid in ids]
    # Exactly one completion per activity: the history of each run has one of each.
    for wid in ids[:10]:
        history = await client.get_workflow_handle(wid).fetch_history()
        types = [e.event_type for e in history.events]
        assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1


async def test_parents_and_children_complete_after_sigkill_mid_run(server):
    """Child starts and child outcomes cross shards through the outbox: none may be lost or
    doubled when the server dies with some of them in flight."""
    client = await server.start()
    queue = f"crash-children-{uuid.uuid4()}"
    ids = [f"parent-{i}-{uuid.uuid4()}" for i in range(30)]
    async with Worker(client, task_queue=queue, workflows=[ParentWorkflow, KidWorkflow]):
        handles = [await client.start_workflow(ParentWorkflow.run, id=wid, task_queue=queue) for wid in ids]
        await handles[0].result()
        server.kill9()
    client = await server.start()
    async with Worker(client, task_queue=queue, workflows=[ParentWorkflow, KidWorkflow]):
        results = await asyncio.wait_for(
            asyncio.gather(*[client.get_workflow_handle(wid).result() for wid in ids]), timeout=240
        )
    assert results == [["A", "KidBoom: kid failed"]] * len(ids)
    for wid in ids:
        types = [e.event_type for e in (await client.get_workflow_handle(wid).fetch_history()).events]
        assert types.count(EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) == 2
        assert types.count(EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED) == 2
        assert types.count(EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED) == 1
        assert types.count(EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED) == 1
