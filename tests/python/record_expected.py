"""Records expected/*.txt from a server that is known to be right: the real dev server."""

import asyncio
import sys
import uuid

from temporalio.client import Client

from test_history_shapes import (
    EXPECTED,
    run_and_fetch,
    run_children,
    run_continue_as_new,
    run_external_cancel,
    run_external_signal,
    run_workflow_retry,
)
from workflows_under_test import HelloWorkflow, RetryWorkflow


async def main(address: str) -> None:
    client = await Client.connect(address)
    for name, workflow, arg in [("hello_world", HelloWorkflow, "Temporal"), ("activity_retry", RetryWorkflow, str(uuid.uuid4()))]:
        (EXPECTED / f"{name}.txt").write_text("\n".join(await run_and_fetch(client, workflow, arg)) + "\n")
    (EXPECTED / "workflow_retry.txt").write_text("\n".join(await run_workflow_retry(client)) + "\n")
    (EXPECTED / "continue_as_new.txt").write_text("\n".join(await run_continue_as_new(client)) + "\n")
    (EXPECTED / "child_workflows.txt").write_text("\n".join(await run_children(client)) + "\n")
    (EXPECTED / "external_signal.txt").write_text("\n".join(await run_external_signal(client)) + "\n")
    (EXPECTED / "external_cancel.txt").write_text("\n".join(await run_external_cancel(client)) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
