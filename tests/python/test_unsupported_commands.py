"""A command Dura cannot carry out yet never leaves a workflow silently waiting: its workflow
task fails with the cause the real server gives a command whose feature is disabled
(FEATURE_DISABLED), and the message names the command, where the SDK, the CLI and the UI show
it. (The real server carries these commands out; Dura's gap is issue 11.)"""

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.worker import Worker

from workflows_under_test import CancellingParentWorkflow, WaitingKidWorkflow


async def test_a_parent_cancelling_its_child_sees_its_task_fail_visibly(server):
    client = await server.start()
    queue = f"cancel-kid-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[CancellingParentWorkflow, WaitingKidWorkflow]):
        handle = await client.start_workflow(
            CancellingParentWorkflow.run, id=f"cancel-kid-{uuid.uuid4()}", task_queue=queue
        )

        async def task_failed():
            while True:
                async for event in handle.fetch_history_events():
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                        return event.workflow_task_failed_event_attributes
                await asyncio.sleep(0.2)

        failed = await asyncio.wait_for(task_failed(), 30)
    assert failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FEATURE_DISABLED
    assert "RequestCancelExternalWorkflowExecution" in failed.failure.message, failed.failure.message
    # The child it started runs on; nothing of the refused completion happened.
    kid = client.get_workflow_handle(f"{handle.id}-kid")
    assert (await kid.describe()).status.name == "RUNNING"
