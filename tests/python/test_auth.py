"""`--auth-jwks`: Temporal's default JWT claim mapper and authorizer. Tokens for each role
(`<namespace>:<read|write|worker|admin>`, `system:admin`) against each family of RPCs through
the Python SDK (`api_key`, sent as `authorization: Bearer`) and the real `temporal` CLI
(`--api-key`), and `dura cluster` (`--api-key`); a refusal is PERMISSION_DENIED "Request unauthorized.", as the real server
answers, and changes nothing."""

import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from harness import DURA_BIN, within
from jwts import Keys
from nodes import ALONE, Node, ports
from workflows_under_test import HelloWorkflow, say_hello

TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"


@pytest.fixture
async def secured(tmp_path, nodes):
    keys = Keys()
    node = Node(tmp_path, 1, "127.0.0.1", ports(), [*ALONE, "--auth-jwks", str(keys.write_jwks(tmp_path / "jwks.json"))])
    nodes.append(node)
    await node.wait_ready()

    async def client(*permissions: str, **token_options) -> Client:
        token = keys.token(list(permissions), **token_options) if permissions or token_options else None
        # An API key turns TLS on by default (as for Temporal Cloud); this port is plaintext.
        return await Client.connect(node.address, api_key=token, tls=False)

    return node, keys, client


async def denied(call) -> None:
    with pytest.raises(RPCError) as refused:
        await within(30, call, "a refused call")
    assert refused.value.status == RPCStatusCode.PERMISSION_DENIED, refused.value
    assert refused.value.message == "Request unauthorized."


async def test_each_role_reaches_its_family_of_calls(secured):
    node, keys, client = secured
    writer, worker, reader = (await client("default:write"), await client("default:worker"),
                              await client("default:read"))
    queue, workflow_id = f"auth-{uuid.uuid4()}", f"auth-{uuid.uuid4()}"

    # A reader and a worker cannot start; nothing was started.
    await denied(reader.start_workflow(HelloWorkflow.run, "x", id=workflow_id, task_queue=queue))
    await denied(worker.start_workflow(HelloWorkflow.run, "x", id=workflow_id, task_queue=queue))
    with pytest.raises(RPCError) as missing:
        await writer.get_workflow_handle(workflow_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND

    # The worker role polls and completes; the writer starts; the reader reads.
    async with Worker(worker, task_queue=queue, workflows=[HelloWorkflow], activities=[say_hello]):
        handle = await writer.start_workflow(HelloWorkflow.run, "auth", id=workflow_id, task_queue=queue)
        assert await within(60, handle.result(), "the workflow") == "Hello, auth!"
    assert (await reader.get_workflow_handle(workflow_id).describe()).id == workflow_id
    assert [w.id async for w in reader.list_workflows(f"WorkflowId = '{workflow_id}'")] == [workflow_id]
    # A reader cannot poll, nor signal or terminate.
    await denied(reader.get_workflow_handle(workflow_id).terminate("no"))

    # Namespace admin changes its namespace's search attributes; registering a namespace is
    # an admin's of that namespace (or of the system).
    add = AddSearchAttributesRequest(namespace="default",
                                     search_attributes={"AuthKeyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD})
    await denied(writer.operator_service.add_search_attributes(add))
    admin = await client("default:admin")
    await admin.operator_service.add_search_attributes(add)
    register = RegisterNamespaceRequest(namespace="auth-other",
                                        workflow_execution_retention_period=timedelta(days=1))
    await denied(admin.workflow_service.register_namespace(register))
    system = await client("system:admin")
    await system.workflow_service.register_namespace(register)
    # Roles in one namespace say nothing of another.
    await denied(admin.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="auth-other")))
    await system.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="auth-other"))


async def test_missing_forged_and_expired_tokens_are_refused_and_es256_is_accepted(secured):
    node, keys, client = secured
    describe = DescribeNamespaceRequest(namespace="default")
    # Connecting asks GetSystemInfo, which is open to all, as on the real server.
    anonymous = await client()
    await denied(anonymous.workflow_service.describe_namespace(describe))
    await denied((await client("default:read", expires_in=-60)).workflow_service.describe_namespace(describe))
    forged = Keys().token(["system:admin"])
    await denied((await Client.connect(node.address, api_key=forged, tls=False)).workflow_service.describe_namespace(describe))
    await denied((await client("default:read", kid="unknown")).workflow_service.describe_namespace(describe))
    es256 = await client("default:read", alg="ES256")
    await es256.workflow_service.describe_namespace(describe)


def test_dura_cluster_status_needs_a_system_admin(secured):
    node, keys, _ = secured
    base = [DURA_BIN, "cluster", "status", "--address", node.address]
    refused = subprocess.run([*base, "--api-key", keys.token(["default:admin"])], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "Request unauthorized" in refused.stderr, refused.stderr
    status = subprocess.run([*base, "--api-key", keys.token(["system:admin"])], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "reachable" in status.stdout


def test_the_temporal_cli_sends_its_api_key(secured):
    node, keys, _ = secured
    base = [TEMPORAL, "workflow", "list", "--address", node.address]
    # `--tls=false`: an API key turns TLS on by default.
    listed = subprocess.run([*base, "--tls=false", "--api-key", keys.token(["default:read"])],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "Request unauthorized" in refused.stderr, refused.stderr
