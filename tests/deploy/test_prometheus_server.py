"""The shipped alert rules (deploy/prometheus/alerts.yml) fire and resolve in a real Prometheus
(Debian's `prometheus` package, scripts/setup/prometheus.sh) scraping a running `tickpipe
ingest` and `tickpipe process`:

- a source that stops sending (the local Binance server goes silent, the ingest process stays
  up) fires TickpipeSourceSilent; when trades come again it resolves;
- a processor stalled on its store (the PostgreSQL backends serving it are SIGSTOPped) while
  trades keep coming fires TickpipeKafkaConsumerLagHigh; when the store answers again the
  processor catches up and it resolves. The processor holds up to 250,000 unwritten trades
  before it stops consuming, so the test publishes 400,000 (1,000 a message); once the alert
  fires, 100 more messages must show in the lag gauge as 100 more: a gauge frozen while the
  processor waits (as it was) would keep its last value.

The rules are the shipped ones with only their durations and thresholds scaled down (3 minutes
of silence -> 3 s, 100,000 messages behind for 2 minutes -> 20 for 2 s), and Prometheus scrapes
and evaluates every second, so the test takes seconds, not minutes. The scaling is checked to
have changed exactly what it means to: a reworded rule fails the test instead of going untested.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fakes.binance_server import FakeBinanceThread
from servers.process import stop_process

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
# (alert, text in its expr or `for`, what the test's copy has instead)
SCALED = [
    ("TickpipeSourceSilent", "> 180", "> 3"),
    ("TickpipeKafkaConsumerLagHigh", "> 100000", "> 20"),
    ("TickpipeKafkaConsumerLagHigh", "2m", "2s"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaled_rules() -> dict:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for alert, shipped, scaled in SCALED:
        rule = by_name[alert]
        key = "for" if shipped.endswith(("m", "s")) and not shipped.startswith(">") else "expr"
        assert shipped in str(rule[key]), f"{alert}: the shipped rule no longer has {shipped!r}"
        rule[key] = str(rule[key]).replace(shipped, scaled)
    return rules


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Prometheus:
    """`prometheus` on 127.0.0.1 with the scaled rules, scraping `targets` (job -> address)."""

    def __init__(self, tmp: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            from servers.require import server_missing

            server_missing("prometheus is not installed (scripts/setup/prometheus.sh)")
        (tmp / "alerts.yml").write_text(yaml.safe_dump(scaled_rules()))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [address]}]}
                for job, address in targets.items()
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (tmp / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [str(binary), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip

    def alerts(self) -> dict[str, list[dict]]:
        """Alert name -> its alerts (pending or firing)."""
        out: dict[str, list[dict]] = {}
        for alert in get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]:
            out.setdefault(alert["labels"]["alertname"], []).append(alert)
        return out

    def firing(self, name: str) -> list[dict]:
        return [a for a in self.alerts().get(name, []) if a["state"] == "firing"]

    def wait(self, what: str, check, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            try:
                if check():
                    return
                last = self.alerts()
            except OSError as exc:  # not listening yet
                last = exc
            time.sleep(0.5)
        pytest.fail(f"{what}: not within {timeout:.0f} s; alerts: {last}")

    def targets_up(self) -> bool:
        active = get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start(tmp: Path, name: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", *args], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )  # fmt: skip


def backends(dsn: str) -> list[int]:
    """PIDs of the PostgreSQL backends serving the database of `dsn` (not this connection)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def publish_burst(bootstrap: str, topic: str, n: int, per_message: int = 1000) -> None:
    """`n` simulated trades of now, published at once (binary: 20,000 fit a broker's 1 MB)."""
    from tickpipe.sources.simulated import MarketSimulator
    from tickpipe.transport.kafka import TradePublisher
    from tickpipe.transport.settings import KafkaConfig

    sim = MarketSimulator(1, 100_000.0, seed=n, exchange="sim", source="sim")  # new ids
    publisher = TradePublisher(
        KafkaConfig(
            bootstrap=bootstrap, trades_topic=topic, encoding="binary", message_trades=per_message
        )
    )
    publisher.publish(sim.trades(n, time.time_ns() // 1000 - 2_000_000, 2_000_000))
    assert publisher.flush(60) == 0


@pytest.fixture
def feed() -> Iterator[FakeBinanceThread]:
    """The local Binance server trading BTCUSDT and ETHUSDT every 20 ms unless `silent`."""

    async def trade_forever(server) -> None:
        import asyncio

        while True:
            server.publish("BTCUSDT")
            server.publish("ETHUSDT")
            await asyncio.sleep(0.02)

    with FakeBinanceThread(symbols=("BTCUSDT", "ETHUSDT")) as fake:
        task = fake.start(trade_forever(fake.server))
        try:
            yield fake
        finally:
            task.cancel()


def test_the_shipped_alerts_fire_and_resolve_for_a_silent_source_and_a_stalled_processor(
    kafka, postgres_dsn, feed, tmp_path
):
    topic = kafka.create_topic(f"alerts-{uuid.uuid4().hex[:8]}", 2)
    ports = {"ingest": free_port(), "process": free_port()}
    common = {"TICKPIPE_MONITOR_METRICS_HOST": "127.0.0.1", "TICKPIPE_KAFKA_CANDLES_TOPIC": "",
              "TICKPIPE_MONITOR_KPI_EVERY": "1s"}  # fmt: skip
    ingest = start(
        tmp_path, "ingest", "ingest", "--kafka", kafka.bootstrap, "--topic", topic,
        "--exchange", "binance", "--endpoint", f"binance={feed.url}",
        "--rest-endpoint", f"binance={feed.rest_url}", "--symbol", "BTC-USDT",
        "--symbol", "ETH-USDT", "--data-dir", str(tmp_path / "ingest"),
        env={**common, "TICKPIPE_MONITOR_METRICS_PORT": str(ports["ingest"])},
    )  # fmt: skip
    process = start(
        tmp_path, "process", "process", "--kafka", kafka.bootstrap, "--topic", topic,
        "--store", postgres_dsn, "--group", f"g-{topic}", "--data-dir", str(tmp_path / "p"),
        "--interval", "1s",
        env={**common, "TICKPIPE_MONITOR_METRICS_PORT": str(ports["process"])},
    )  # fmt: skip
    prometheus = Prometheus(tmp_path, {
        "tickpipe-ingest": f"127.0.0.1:{ports['ingest']}",
        "tickpipe-process": f"127.0.0.1:{ports['process']}",
    })  # fmt: skip
    stopped: list[int] = []
    try:
        prometheus.wait("both targets scraped", prometheus.targets_up)
        prometheus.wait(
            "trades flowing, no alert",
            lambda: not prometheus.alerts()
            and get_json(f"{prometheus.url}/api/v1/query?query=tickpipe_kafka_consumer_lag")[
                "data"]["result"],
        )  # fmt: skip

        # A source that goes quiet: the no-data alert fires, names it, and resolves.
        feed.call(lambda s: setattr(s, "silent", True))
        prometheus.wait("TickpipeSourceSilent firing",
                        lambda: prometheus.firing("TickpipeSourceSilent"))  # fmt: skip
        # Both processes report the source's newest trade (ingest received it, process read it).
        silent = prometheus.firing("TickpipeSourceSilent")
        assert {a["labels"]["source"] for a in silent} == {"binance"}
        assert "tickpipe-ingest" in {a["labels"]["job"] for a in silent}
        feed.call(lambda s: setattr(s, "silent", False))
        prometheus.wait("TickpipeSourceSilent resolved",
                        lambda: "TickpipeSourceSilent" not in prometheus.alerts())  # fmt: skip

        # A processor stalled on its store while ingest goes on: the lag alert fires, resolves.
        stopped = backends(postgres_dsn)
        assert stopped, "the processor holds no connection to its database"
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        publish_burst(kafka.bootstrap, topic, 400_000)  # more than the writer holds
        prometheus.wait("TickpipeKafkaConsumerLagHigh firing",
                        lambda: prometheus.firing("TickpipeKafkaConsumerLagHigh"))  # fmt: skip
        [lag] = prometheus.firing("TickpipeKafkaConsumerLagHigh")
        assert lag["labels"]["topic"] == topic and float(lag["value"]) > 20
        # While it waits, the gauge follows the topic: 100 more messages show as 100 more.
        behind = f"{prometheus.url}/api/v1/query?query=" + urllib.parse.quote(
            f'sum(tickpipe_kafka_consumer_lag{{topic="{topic}"}})'
        )

        def lag_now() -> float:
            return float(get_json(behind)["data"]["result"][0]["value"][1])

        before = lag_now()
        publish_burst(kafka.bootstrap, topic, 100_000)
        prometheus.wait("the lag gauge grew by the 100 new messages",
                        lambda: lag_now() >= before + 100)  # fmt: skip
        assert process.poll() is None and ingest.poll() is None
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        prometheus.wait(
            "TickpipeKafkaConsumerLagHigh resolved",
            lambda: "TickpipeKafkaConsumerLagHigh" not in prometheus.alerts(),
        )
        assert not prometheus.firing("TickpipeDown"), "a target stopped answering"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        prometheus.stop()
        stop_process(process)
        stop_process(ingest)
