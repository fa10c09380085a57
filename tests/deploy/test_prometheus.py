"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests, the
server config is valid, and every metric the rules read is one tickpipe exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.examples import example_status
from tests.servers.require import server_missing
from tickpipe.monitor.metrics import PipelineMetrics
from tickpipe.runtime.status import InstrumentStatus, SourceStatus
from tickpipe.sources.simulated import MarketSimulator

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        server_missing("promtool not installed (scripts/setup/prometheus.sh installs it)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=DEPLOY.parents[1])  # fmt: skip


def test_the_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rule_unit_tests_pass():
    tests = sorted(str(p) for p in (DEPLOY / "tests").glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_prometheus_config_is_valid():
    result = promtool("check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_unit_test_fails(tmp_path: Path):
    """The unit tests can fail: a silence threshold of 10 minutes misses the expected alert."""
    (tmp_path / "tests").mkdir()
    rules = (DEPLOY / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(rules.replace("> 180", "> 600"))
    shutil.copy(DEPLOY / "tests" / "alerts_test.yml", tmp_path / "tests" / "alerts_test.yml")
    result = promtool("test", "rules", str(tmp_path / "tests" / "alerts_test.yml"))
    assert result.returncode != 0
    assert "TickpipeSourceSilent" in result.stdout + result.stderr


def test_every_metric_the_rules_read_is_exposed_by_tickpipe():
    metrics = PipelineMetrics()
    row = InstrumentStatus(exchange="x", symbol="A-B", last_price=1.0, last_trade_us=1,
                           lag_ms=0.0, trades_per_s=0.0, trades=1, candle=None)  # fmt: skip
    metrics.watch(lambda: example_status(sources={"s": SourceStatus(True, 0, 0, 0)},
                                         instruments=(row,)))  # fmt: skip
    metrics.kafka_consumer_lag.labels("t", "0").set(0)
    metrics.observe_received(MarketSimulator(2, 100.0).span(0, 10_000_000), 10.0)
    exposed = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        exposed.update(s.name for s in family.samples)
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"\b(tickpipe_[a-z_]+)", e)}
    assert used and used <= exposed, used - exposed


@pytest.mark.parametrize("name", ["TickpipeProcessingLagHigh", "TickpipeSourceSilent",
                                  "TickpipeSourceDisconnected", "TickpipePriceMove",
                                  "TickpipePriceAbove", "TickpipePriceBelow"])  # fmt: skip
def test_each_condition_of_the_issue_has_a_rule_with_a_severity(name):
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    found = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    assert len(found) == 1 and found[0]["labels"]["severity"] in ("info", "warning", "critical")
