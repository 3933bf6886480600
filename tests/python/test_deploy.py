"""deploy/: the Kubernetes manifests, the compose file and the Dockerfile are valid, and three
`dura server start` processes configured exactly as the StatefulSet configures its pods form a
cluster that serves the Python SDK's hello world.

No container engine or Kubernetes cluster runs here: the manifests are rendered by
`kubectl kustomize` and checked against Kubernetes' own schemas (kubernetes-validate, offline),
the compose file by `docker-compose config` (the compose schema), and the pods are played by
processes: each gets its pod's environment from the rendered StatefulSet, `HOSTNAME=dura-N`,
its own loopback address (127.0.0.N+1, the same ports) and, in a mount namespace of its own,
an /etc/hosts that gives the headless Service's names (`dura-N.dura-peers`) those addresses,
as cluster DNS would."""

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from temporalio.client import Client

from dura_processes import kill_group, spawn
from harness import DURA_BIN, run_hello, within

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.32"


def rendered() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


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


def pod_environment(ordinal: int) -> dict[str, str]:
    """The pod's DURA_* environment as the StatefulSet gives it, $(VAR) references expanded."""
    container = by_kind(rendered(), "StatefulSet", "dura")["spec"]["template"]["spec"]["containers"][0]
    env = {"POD_NAME": f"dura-{ordinal}"}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    return {k: v for k, v in env.items() if k.startswith("DURA_")}


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a private /etc/hosts per pod")
async def test_three_pods_configured_like_the_statefulset_form_a_cluster(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n"
        + "".join(f"127.0.0.{n + 1} dura-{n}.dura-peers\n" for n in range(3))
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
                **pod_environment(n),
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
        worker_client = await Client.connect("127.0.0.2:7233")
        client = await Client.connect("127.0.0.3:7233")
        result = await run_hello(client, "k8s", worker_client=worker_client)
        assert result == "Hello, k8s!"
    finally:
        for pod in pods:
            kill_group(pod)
