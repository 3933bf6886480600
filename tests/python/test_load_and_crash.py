"""Many concurrent workflows against one dura server, and a SIGKILL in the middle of a run.

Each test gets its own `dura server start-dev` ($DURA_BIN) on a free port and database."""

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from workflows_under_test import HelloWorkflow, say_hello

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
