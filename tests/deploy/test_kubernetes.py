"""deploy/kubernetes/: every manifest validates offline against the Kubernetes API schema
(kubernetes-validate, strict: no unknown fields), and the Kafka cluster it describes has the
shape of deploy/docker-compose.yml: three combined broker+controller nodes, the same settings,
tickpipe's commands pointed at all three."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_compose import COMPOSE, assert_tickpipe_command

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSION = "1.31.0"  # the oldest Kubernetes release still maintained when this was written
NODE_SETTINGS = {"KAFKA_NODE_ID", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_QUORUM_VOTERS"}


def manifests() -> list[dict]:
    docs = [doc for path in sorted(KUBERNETES.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]  # fmt: skip
    assert docs, f"no manifests in {KUBERNETES}"
    return docs


def named(kind: str, name: str) -> dict:
    found = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_each_manifest_validates_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_a_manifest_with_a_wrong_field_is_refused():
    """The validation can fail: a misspelt field of a real manifest is caught."""
    doc = named("StatefulSet", "kafka")
    doc["spec"]["replica"] = doc["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def voters(value: str) -> list[tuple[int, str]]:
    """`1@host:9093,...` as (node id, host) pairs."""
    return [(int(v.split("@")[0]), v.split("@")[1].split(":")[0]) for v in value.split(",")]


def test_the_kafka_statefulset_has_the_compose_clusters_shape():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    nodes = sorted(name for name in compose if name.startswith("kafka-"))
    statefulset = named("StatefulSet", "kafka")
    pods = [f"kafka-{i}" for i in range(statefulset["spec"]["replicas"])]
    assert len(pods) == len(nodes) == 3
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # Every node of the compose file runs with the StatefulSet's settings (but its own id).
    for node in nodes:
        settings = {k: str(v) for k, v in compose[node]["environment"].items()}
        assert {k: v for k, v in settings.items() if k not in NODE_SETTINGS} == {
            k: v for k, v in env.items() if k not in NODE_SETTINGS | {"KAFKA_LOG_DIRS"}
        }, node
        assert voters(settings["KAFKA_CONTROLLER_QUORUM_VOTERS"]) == [
            (i + 1, name) for i, name in enumerate(nodes)
        ]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert voters(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]) == [
        (i + 1, f"{pod}.kafka") for i, pod in enumerate(pods)
    ]
    assert named("Service", "kafka")["spec"]["clusterIP"] == "None"  # kafka-N.kafka resolve
    budget = named("PodDisruptionBudget", "kafka")["spec"]
    assert budget["maxUnavailable"] == int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) - int(
        env["KAFKA_MIN_INSYNC_REPLICAS"]
    ), "a drain may take no more nodes than the replication survives"


def test_tickpipe_runs_as_in_compose_against_all_three_brokers():
    deployments = {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "Deployment"}
    statefulset = named("StatefulSet", "kafka")
    brokers = {f"kafka-{i}.kafka:9092" for i in range(statefulset["spec"]["replicas"])}
    commands = {}
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        command, *args = container["args"]
        assert_tickpipe_command(name, command, args)
        commands[command] = deployment
        if "--kafka" in args:
            assert set(args[args.index("--kafka") + 1].split(",")) == brokers, name
    assert set(commands) == {"ingest", "process", "serve"}
    assert commands["process"]["spec"]["replicas"] == 2  # as process-1 and process-2 in compose
