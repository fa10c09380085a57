"""deploy/kubernetes/: a kustomize base (ingest, process replicas, serve, the config as a
ConfigMap, Kafka and PostgreSQL as external services) and overlays (simulated: the in-cluster
3-node Kafka of kafka/; production: N processors, Avro, pinned image).

Offline, no cluster: every resource file and every rendered overlay validates against the
Kubernetes API schema (kubernetes-validate, strict: no unknown fields); every kustomization's
references resolve; each overlay renders with kustomize (scripts/setup/kustomize.sh builds it
from the Go module proxy), and what it renders is consistent: the commands and flags exist, the
mounted tickpipe.toml loads with tickpipe's own config loader, the brokers and the database each
pod reaches are Services (or Kafka pods) of the same rendering, secrets come from one Secret.
The Kafka StatefulSet keeps the shape of deploy/docker-compose.yml's cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_compose import COMPOSE, assert_tickpipe_command
from tickpipe.config import load_config

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
VERSION = "1.31.0"  # the oldest Kubernetes release still maintained when this was written
NODE_SETTINGS = {"KAFKA_NODE_ID", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_QUORUM_VOTERS"}
SECRET_KEYS = {"postgres-password", "serve-token"}  # of the Secret `tickpipe` users create
CONFIG = "/etc/tickpipe/tickpipe.toml"


def kustomizations() -> list[Path]:
    return sorted(KUBERNETES.rglob("kustomization.yaml"))


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource_files() -> list[Path]:
    """Every file a kustomization lists as a resource (patches are only checked rendered)."""
    files = []
    for k in kustomizations():
        for entry in load(k)[0].get("resources", []):
            path = (k.parent / entry).resolve()
            if path.is_file():
                files.append(path)
    return sorted(set(files))


def resource_docs() -> list[dict]:
    docs = [doc for path in resource_files() for doc in load(path)]
    assert docs, f"no manifests in {KUBERNETES}"
    return docs


def named(kind: str, name: str, docs: list[dict] | None = None) -> dict:
    found = [d for d in docs or resource_docs()
             if d["kind"] == kind and d["metadata"]["name"] == name]  # fmt: skip
    assert len(found) == 1, f"{kind} {name}"
    return found[0]


@pytest.mark.parametrize(
    "doc", resource_docs(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_each_resource_file_validates_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_a_manifest_with_a_wrong_field_is_refused():
    """The validation can fail: a misspelt field of a real manifest is caught."""
    doc = named("StatefulSet", "kafka")
    doc["spec"]["replica"] = doc["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSION, strict=True)


@pytest.mark.parametrize("kustomization", kustomizations(), ids=lambda p: str(p.parent.name))
def test_every_reference_of_a_kustomization_resolves(kustomization):
    spec = load(kustomization)[0]
    assert spec["kind"] == "Kustomization"
    here = kustomization.parent
    for entry in spec.get("resources", []):
        path = here / entry
        assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{here}: {entry}"
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        for entry in generator.get("files", []):
            assert (here / entry.split("=")[-1]).is_file(), f"{here}: {entry}"
    for patch in spec.get("patches", []):
        assert "path" in patch or "patch" in patch, patch
        if "path" in patch:
            assert (here / patch["path"]).is_file(), f"{here}: {patch['path']}"


def test_every_file_under_deploy_kubernetes_is_used():
    """No manifest lies around unreferenced (it would be validated but never applied)."""
    used = set(kustomizations())
    for k in kustomizations():
        spec = load(k)[0]
        used |= {(k.parent / e).resolve() for e in spec.get("resources", [])}
        used |= {(k.parent / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p}
        for generator in spec.get("configMapGenerator", []):
            used |= {(k.parent / f.split("=")[-1]).resolve() for f in generator.get("files", [])}
    files = {p.resolve() for p in KUBERNETES.rglob("*") if p.is_file()}
    assert files <= used, sorted(str(p.relative_to(KUBERNETES)) for p in files - used)


def kustomize() -> list[str]:
    """kustomize v5: the one scripts/setup/kustomize.sh builds, else one on PATH."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tickpipe"
    built = sorted(cache.glob("kustomize-5*/kustomize"))
    if built:
        return [str(built[-1]), "build"]
    found = shutil.which("kustomize")
    if found:
        return [found, "build"]
    kubectl = shutil.which("kubectl")  # kubectl >= 1.27 embeds kustomize v5
    if kubectl:
        version = subprocess.run([kubectl, "version", "--client"], capture_output=True,
                                 text=True, timeout=60).stdout  # fmt: skip
        if re.search(r"Kustomize Version: v5\.", version):
            return [kubectl, "kustomize"]
    from servers.require import server_missing

    server_missing("kustomize is not built (scripts/setup/kustomize.sh builds it)")
    raise AssertionError  # not reached


_rendered: dict[str, list[dict]] = {}


def rendered(overlay: str) -> list[dict]:
    if overlay not in _rendered:
        out = subprocess.run(
            [*kustomize(), str(KUBERNETES / "overlays" / overlay)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        _rendered[overlay] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _rendered[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_every_resource_validates(overlay):
    docs = rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def tickpipe_deployments(docs: list[dict]) -> dict[str, dict]:
    out = {}
    for d in docs:
        if d["kind"] == "Deployment" and "tickpipe" in containers(d)[0]["image"]:
            out[containers(d)[0]["args"][0]] = d
    return out


def effective(overlay: str, tmp_path: Path) -> dict[str, tuple[list[str], object]]:
    """Per command: its args and the config it runs with (file, then env, then flags)."""
    docs = rendered(overlay)
    out = {}
    for command, deployment in tickpipe_deployments(docs).items():
        container = containers(deployment)[0]
        args = container["args"]
        assert args[args.index("--config") + 1] == CONFIG
        [mount] = [m for m in container["volumeMounts"] if CONFIG.startswith(m["mountPath"])]
        [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
                    if v["name"] == mount["name"]]  # fmt: skip
        configmap = named("ConfigMap", volume["configMap"]["name"], docs)  # hash-suffixed
        path = tmp_path / f"{command}.toml"
        path.write_text(configmap["data"][Path(CONFIG).name])
        env = {e["name"]: re.sub(r"\$\(\w+\)", "pod-0", e["value"])
               for e in container.get("env", []) if "value" in e}  # fmt: skip
        env |= {e["name"]: "a-secret-from-the-secret" for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
        flag = {"--kafka": "kafka.bootstrap", "--host": "serve.host", "--port": "serve.port"}
        flags = {key: args[args.index(f) + 1] for f, key in flag.items() if f in args}
        out[command] = (args, load_config(path, env=env, overrides=flags))
    assert set(out) == {"ingest", "process", "serve"}
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlays_commands_exist_and_their_config_loads(overlay, tmp_path):
    for command, (args, _config) in effective(overlay, tmp_path).items():
        assert_tickpipe_command(f"{overlay}/{command}", command, args[1:])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_reaches_kafka_and_postgres_through_what_the_overlay_renders(overlay, tmp_path):
    docs = rendered(overlay)
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    kafka_pods = {f"kafka-{i}.kafka" for d in docs if d["kind"] == "StatefulSet"
                  for i in range(d["spec"]["replicas"])}  # fmt: skip
    configs = effective(overlay, tmp_path)
    bootstraps = {c.kafka.bootstrap for _, c in configs.values()}
    assert len(bootstraps) == 1, f"ingest, process and serve see different brokers: {bootstraps}"
    for address in next(iter(bootstraps)).split(","):
        host = address.rsplit(":", 1)[0]
        assert host in services or host in kafka_pods, f"{overlay}: no broker {host}"
    for command in ("process", "serve"):
        store = configs[command][1].store
        host = re.match(r"postgresql://[^@/]*@?([^:/]+)", store).group(1)
        assert host in services, f"{overlay}/{command}: no database Service {host}"
    if "kafka" in {d["metadata"]["name"] for d in docs if d["kind"] == "StatefulSet"}:
        assert next(iter(bootstraps)).split(",") == sorted(f"{p}:9092" for p in kafka_pods)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_the_tickpipe_secret(overlay):
    base = (KUBERNETES / "base" / "kustomization.yaml").read_text()
    for key in SECRET_KEYS:  # the documented `kubectl create secret` names every key
        assert f"--from-literal={key}=" in base
    for doc in tickpipe_deployments(rendered(overlay)).values():
        for e in containers(doc)[0].get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == "tickpipe" and ref["key"] in SECRET_KEYS, e
            else:
                assert not re.search(r"PASSWORD|TOKEN|SECRET", e["name"]), f"{e['name']} inline"
    assert not [d for d in rendered(overlay) if d["kind"] == "Secret"], "never commit a Secret"


def test_the_production_overlay_runs_n_processors_in_avro_within_the_partitions(tmp_path):
    configs = effective("production", tmp_path)
    process = tickpipe_deployments(rendered("production"))["process"]
    config = configs["process"][1]
    assert 2 < process["spec"]["replicas"] <= config.kafka.partitions
    assert config.kafka.encoding == "avro" and config.kafka.schema_registry
    host = re.match(r"https?://([^:/]+)", config.kafka.schema_registry).group(1)
    services = {d["metadata"]["name"] for d in rendered("production") if d["kind"] == "Service"}
    assert host in services
    assert {d["metadata"].get("namespace") for d in rendered("production")
            if d["kind"] != "Namespace"} == {"tickpipe"}  # fmt: skip
    budget = named("PodDisruptionBudget", "tickpipe-process", rendered("production"))
    assert budget["spec"]["selector"]["matchLabels"] == process["spec"]["selector"]["matchLabels"]


def test_the_simulated_overlay_publishes_the_simulated_market_to_two_processors():
    deployments = tickpipe_deployments(rendered("simulated"))
    assert "--simulated" in containers(deployments["ingest"])[0]["args"]
    assert deployments["process"]["spec"]["replicas"] == 2  # as process-1 and -2 in compose


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
