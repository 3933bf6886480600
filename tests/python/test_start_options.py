"""Start options a user sets from the SDK come back the way the real dev server returns them."""

import uuid

from temporalio.worker import Worker

from harness import within
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
        assert await within(60, handle.result(), handle.id) == "Hello, x!"
    description = await handle.describe()
    summary, details = await description.static_summary(), await description.static_details()
    assert (summary, details) == ("my summary", "some **details**"), (summary, details)
    # The real server keeps them on the start event only.
    events = (await handle.fetch_history()).events
    with_metadata = [i for i, e in enumerate(events) if e.HasField("user_metadata")]
    assert with_metadata == [0], f"events carrying user_metadata: {with_metadata}"
    metadata = events[0].user_metadata
    decode = client.data_converter.payload_converter.from_payload
    on_start = (decode(metadata.summary, str), decode(metadata.details, str))
    assert on_start == ("my summary", "some **details**"), metadata
