"""TLS on the client port (`--tls-cert/--tls-key`, mutual with `--tls-client-ca`) and mutual
TLS between nodes (`--peer-tls-*`), with certificates made by the test (certs.py): the Python
SDK, the real `temporal` CLI and `dura cluster status` connect; a client without a valid
certificate is refused at the handshake; a renewed certificate is served without a restart;
a node whose certificate the cluster's CA did not sign never joins."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, TLSConfig

from certs import CA, Issued
from harness import DURA_BIN, free_port, run_hello, within
from nodes import ALONE, Node, ports

TEMPORAL = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"


def tls(ca: CA, client: Issued | None = None, domain: str = "localhost") -> TLSConfig:
    return TLSConfig(
        server_root_ca_cert=ca.pem,
        client_cert=client.cert.read_bytes() if client else None,
        client_private_key=client.key.read_bytes() if client else None,
        domain=domain,
    )


async def refused(address: str, config: TLSConfig | bool) -> None:
    """A client with `config` cannot make its first call (connecting asks for the system info)."""
    with pytest.raises(RuntimeError, match="(?i)connect|tls|certificate|transport"):
        await within(30, Client.connect(address, tls=config), "a refused connection")


async def served(client: Client) -> None:
    await within(30, client.workflow_service.get_system_info(GetSystemInfoRequest()), "a call")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TEMPORAL, *args], capture_output=True, text=True, timeout=60)


async def tls_node(tmp_path: Path, nodes: list, server: Issued, *extra: str) -> Node:
    """A node alone whose client port serves `server`'s certificate, ready."""
    node = Node(tmp_path, 1, "127.0.0.1", ports(),
                [*ALONE, "--tls-cert", str(server.cert), "--tls-key", str(server.key), *extra])
    nodes.append(node)
    await node.wait_ready()
    return node


async def test_the_sdk_and_the_cli_reach_a_tls_client_port_and_verify_its_certificate(tmp_path, nodes):
    ca = CA(tmp_path)
    node = await tls_node(tmp_path, nodes, ca.issue("server"))
    client = await Client.connect(node.address, tls=tls(ca))
    assert await run_hello(client, "tls") == "Hello, tls!"

    await refused(node.address, False)  # plaintext
    await refused(node.address, tls(CA(tmp_path, "other")))  # a server it cannot verify
    await refused(node.address, tls(ca, domain="dura.example"))  # not the certificate's name

    listed = cli("workflow", "list", "--address", node.address, "--tls-ca-path", str(ca.path),
                 "--tls-server-name", "localhost")
    assert listed.returncode == 0, listed.stderr
    assert "HelloWorkflow" in listed.stdout
    assert cli("workflow", "list", "--address", node.address).returncode != 0


async def test_the_http_api_is_served_over_the_client_ports_tls(tmp_path, nodes):
    import http.client
    import ssl
    import urllib.request

    ca = CA(tmp_path)
    http_port = free_port()
    node = await tls_node(tmp_path, nodes, ca.issue("server"), "--http-port", str(http_port))
    client = await Client.connect(node.address, tls=tls(ca))
    assert await run_hello(client, "https") == "Hello, https!"
    verified = ssl.create_default_context(cafile=str(ca.path))
    url = f"https://localhost:{http_port}/api/v1/namespaces/default/workflows"
    with urllib.request.urlopen(url, context=verified, timeout=30) as response:
        listed = json.loads(response.read())
    assert listed["executions"][0]["type"]["name"] == "HelloWorkflow", listed
    with pytest.raises((OSError, http.client.HTTPException)):  # plaintext gets a TLS alert
        urllib.request.urlopen(f"http://localhost:{http_port}/api/v1/namespaces/default/workflows", timeout=30)


async def test_mutual_tls_refuses_a_client_without_a_certificate_its_ca_signed(tmp_path, nodes):
    ca = CA(tmp_path)
    server, client_cert = ca.issue("server"), ca.issue("client")
    node = await tls_node(tmp_path, nodes, server, "--tls-client-ca", str(ca.path))
    client = await Client.connect(node.address, tls=tls(ca, client_cert))
    assert await run_hello(client, "mtls") == "Hello, mtls!"

    await refused(node.address, tls(ca))  # no certificate
    await refused(node.address, tls(ca, CA(tmp_path, "foreign").issue("foreign")))

    with_cert = ["--address", node.address, "--tls-ca-path", str(ca.path),
                 "--tls-cert-path", str(client_cert.cert), "--tls-key-path", str(client_cert.key)]
    listed = cli("workflow", "list", *with_cert)
    assert listed.returncode == 0, listed.stderr
    assert cli("workflow", "list", "--address", node.address, "--tls-ca-path", str(ca.path)).returncode != 0

    status = subprocess.run([DURA_BIN, "cluster", "status", *with_cert], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "reachable" in status.stdout
    without = subprocess.run([DURA_BIN, "cluster", "status", "--address", node.address,
                              "--tls-ca-path", str(ca.path)], capture_output=True, text=True, timeout=60)
    assert without.returncode != 0


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path, nodes):
    old_ca, new_ca = CA(tmp_path, "old"), CA(tmp_path, "new")
    server = old_ca.issue("server")
    node = await tls_node(tmp_path, nodes, server)
    kept = await Client.connect(node.address, tls=tls(old_ca))
    await refused(node.address, tls(new_ca))

    # Renewed in place, here by another CA so that the switch shows.
    renewed = new_ca.issue("renewed")
    os.replace(renewed.key, server.key)
    os.replace(renewed.cert, server.cert)

    async def new_connections_verify():
        while True:
            try:
                await served(await Client.connect(node.address, tls=tls(new_ca)))
                return
            except RuntimeError:
                await asyncio.sleep(0.5)

    await within(30, new_connections_verify(), "a connection verified by the renewing CA")
    # Same process; the connection made before the renewal still works.
    assert node.proc.poll() is None
    await served(kept)


async def test_nodes_talk_over_mutual_tls_and_a_node_the_cluster_ca_did_not_sign_never_joins(tmp_path, nodes):
    cluster_ca, foreign_ca = CA(tmp_path, "cluster"), CA(tmp_path, "foreign")
    ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    port_set = ports()
    members = ",".join(f"{n + 1}={ip}:{port_set[1]}" for n, ip in enumerate(ips))

    def node(n: int, ca: CA) -> Node:
        cert = ca.issue(f"node-{n}", hosts=(ips[n - 1],))
        return Node(tmp_path, n, ips[n - 1], port_set,
                    ["--initial-cluster", members, "--replication", "3",
                     "--peer-tls-cert", str(cert.cert), "--peer-tls-key", str(cert.key),
                     # Node 3 trusts its own CA, as a node of another cluster would.
                     "--peer-tls-ca", str(ca.path)])

    nodes.extend([node(1, cluster_ca), node(2, cluster_ca), node(3, foreign_ca)])
    # Two of three form every group's quorum.
    await asyncio.gather(nodes[0].wait_ready(), nodes[1].wait_ready())
    worker_client = await Client.connect(nodes[0].address)
    client = await Client.connect(nodes[1].address)
    assert await run_hello(client, "peers", worker_client=worker_client) == "Hello, peers!"

    status = subprocess.run([DURA_BIN, "cluster", "status", "--address", nodes[0].address, "--output", "json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    reachable = {n["id"]: n["reachable"] for n in json.loads(status.stdout)["nodes"]}
    assert reachable == {1: True, 2: True, 3: False}, reachable
    assert not nodes[2].ready()
    assert nodes[2].proc.poll() is None
    refusals = nodes[0].log.read_text() + nodes[1].log.read_text()
    assert "TLS handshake refused" in refusals
    # Its own start never got past waiting for its groups' leaders.
    assert "Dura node ready" not in nodes[2].log.read_text()
