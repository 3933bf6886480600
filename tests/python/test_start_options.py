"""Start options a user sets from the SDK come back the way the real dev server returns them."""

import uuid

from temporalio.worker import Worker

from workflows_under_test import HelloWorkflow, say_hello


async def test_static_summary_and_details_round_trip(server):
    client = await server.start()
    queue = f"meta-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        handle = await client.start_workflow(
            HelloWorkflow.run,
            "x",
            id=f"meta-{uuid.uuid4()}",
            task_queue=queue,
            static_summary="my summary",
            static_details="some **details**",
        )
        await handle.result()
    description = await handle.describe()
    assert await description.static_summary() == "my summary"
    assert await description.static_details() == "some **details**"
    # The real server keeps them on the start event only.
    started = (await handle.fetch_history()).events[0]
    assert started.HasField("user_metadata")
