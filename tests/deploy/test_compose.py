"""deploy/docker-compose.yml: Debian's docker-compose validates it (no Docker engine runs
here), and what it resolves to holds together: the services the issue names, KRaft Kafka,
mounts that exist, Prometheus targets that expose metrics, secrets only from the environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.servers.require import server_missing
from tickpipe.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SECRETS = {"POSTGRES_PASSWORD": "pg-test", "GRAFANA_ADMIN_PASSWORD": "gf-test",
           "TICKPIPE_SERVE_TOKEN": "tok-test"}  # fmt: skip


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    if tool is None:
        server_missing("docker-compose not installed (scripts/setup/docker-compose.sh)")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [tool, "-f", str(COMPOSE), *args], capture_output=True, text=True, timeout=120,
        check=False, cwd=DEPLOY, env={**clean, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose("config", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_validates_the_file():
    result = compose("config", "-q", env=SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_each_secret_must_come_from_the_environment(secret):
    result = compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != secret})
    assert result.returncode != 0 and secret in result.stderr


def test_no_secret_is_written_in_the_file():
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|TOKEN)\s*:", line):
            assert "${" in line, line
    assert not re.search(r"postgresql://[^@\s]*:[^@\s]*@", text)  # no password in a store URL


def test_the_stack_has_every_service_of_the_distributed_mode(resolved):
    services = resolved["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "postgres", "ingest", "process-1", "process-2",
            "serve", "prometheus", "grafana"} <= set(services)  # fmt: skip
    assert not any("zookeeper" in name for name in services)
    for node in ("kafka-1", "kafka-2", "kafka-3"):
        kafka = services[node]["environment"]
        assert "controller" in kafka["KAFKA_PROCESS_ROLES"]
        assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert "timescaledb" in services["postgres"]["image"]
    names = [services[p]["command"][services[p]["command"].index("--name") + 1]
             for p in ("process-1", "process-2")]  # fmt: skip
    assert len(set(names)) == 2  # two replicas of one consumer group


def assert_tickpipe_command(name: str, command: str, args: list[str]) -> None:
    """`tickpipe COMMAND ARGS` of service `name` uses a command and flags tickpipe has."""
    assert command in ("ingest", "process", "serve"), name
    flags = {opt for p in cli.commands[command].params for opt in p.opts}
    for arg in args:
        if arg.startswith("--"):
            assert arg in flags, f"{name}: tickpipe {command} has no {arg}"


def test_every_command_and_flag_is_one_tickpipe_has(resolved):
    checked = set()
    for name, service in resolved["services"].items():
        if service.get("image") != "tickpipe:latest":
            continue
        command, *args = service["command"]
        assert_tickpipe_command(name, command, args)
        checked.add(command)
    assert checked == {"ingest", "process", "serve"}


def mounts(service: dict) -> dict[str, str]:
    """target -> source, from the short (`src:target:mode`) or the long form."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            out[target] = source
    return out


def test_mounted_files_exist_and_grafana_reads_dashboards_where_they_are_mounted(resolved):
    for name, service in resolved["services"].items():
        for source in mounts(service).values():
            if source.startswith("/"):
                assert Path(source).exists(), f"{name}: {source}"
    grafana = mounts(resolved["services"]["grafana"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tickpipe.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert Path(grafana[path]) == DEPLOY / "grafana" / "dashboards"
    assert Path(grafana["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    prometheus = mounts(resolved["services"]["prometheus"])
    assert Path(prometheus["/etc/prometheus/alerts.yml"]) == DEPLOY / "prometheus" / "alerts.yml"


def test_prometheus_scrapes_each_tickpipe_process_on_its_metrics_port(resolved):
    services = resolved["services"]
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert targets
    for target in targets:
        host, port = target.split(":")
        env = services[host]["environment"]
        assert env["TICKPIPE_MONITOR_METRICS_PORT"] == port
        assert env["TICKPIPE_MONITOR_METRICS_HOST"] == "0.0.0.0"
    assert {t.split(":")[0] for t in targets} == {"ingest", "process-1", "process-2"}


def test_published_ports_bind_loopback_only(resolved):
    published = [(name, port) for name, service in resolved["services"].items()
                 for port in service.get("ports", [])]  # fmt: skip
    assert published, "no service publishes a port: nothing to check"
    for name, port in published:
        host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
        assert host_ip == "127.0.0.1", name


def test_the_image_builds_from_files_that_exist_and_runs_tickpipe(resolved):
    build = resolved["services"]["process-1"]["build"]
    context = Path(build["context"])
    dockerfile = context / build["dockerfile"]
    assert dockerfile == DEPLOY / "Dockerfile"
    text = dockerfile.read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (context / source).exists(), source
    assert 'ENTRYPOINT ["tickpipe"]' in text
    assert re.search(r"^USER (?!root)", text, re.M)  # not as root


def test_avro_is_one_variable_away_with_the_registry_in_the_stack(resolved):
    """TICKPIPE_KAFKA_ENCODING=avro switches the stack to Avro: every tickpipe service names the
    stack's schema registry, which keeps its schemas in the stack's Kafka, and the image has the
    avro extra."""
    services = resolved["services"]
    registry = services["schema-registry"]
    brokers = registry["environment"]["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"]
    assert {b.split("//")[1] for b in brokers.split(",")} == {f"kafka-{i}:9092" for i in (1, 2, 3)}
    listener = registry["environment"]["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    for name in ("ingest", "process-1", "process-2", "serve"):
        env = services[name]["environment"]
        assert env["TICKPIPE_KAFKA_SCHEMA_REGISTRY"] == f"http://schema-registry:{listener}"
        assert env["TICKPIPE_KAFKA_ENCODING"] == "json"  # the default
    switched = compose("config", env={**SECRETS, "TICKPIPE_KAFKA_ENCODING": "avro"})
    assert switched.returncode == 0, switched.stderr
    ingest = yaml.safe_load(switched.stdout)["services"]["ingest"]["environment"]
    assert ingest["TICKPIPE_KAFKA_ENCODING"] == "avro"
    assert '".[avro]"' in (DEPLOY / "Dockerfile").read_text()
