"""The distributed mode against a SASL_SSL broker (SCRAM-SHA-512 over TLS), configured as a user
would: the TOML file names the user, the mechanism and the CA; the password comes from the file
TICKPIPE_KAFKA_SASL_PASSWORD_FILE names. ingest -> process (DuckDB) -> verify, serve --kafka's
live feed; the faults a user meets (a wrong password, an untrusted certificate, a plaintext
client) each end the command with one line naming the cause; the password shows nowhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve.test_kafka_feed import subscribe, tickpipe, wait_for
from servers.kafka import SecuredKafkaBroker
from servers.process import stop_process
from test_distributed import CONFIG, total_published, trades_and_candles_topics

pytestmark = [pytest.mark.slow, pytest.mark.secured]


def write_config(
    tmp: Path, broker: SecuredKafkaBroker, topic: str, name: str = "tickpipe",
    **properties: str,
) -> Path:  # fmt: skip
    """A secured config without the password (it goes in the environment), with `properties`
    replacing the secured defaults (the fault tests)."""
    settings = {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": broker.user, "ssl.ca.location": str(broker.tls.ca), **properties,
    }  # fmt: skip
    lines = "".join(f'"{k}" = "{v}"\n' for k, v in settings.items())
    path = tmp / f"{name}.toml"
    path.write_text(
        f'{CONFIG}\n[kafka]\nbootstrap = "{broker.bootstrap}"\ntrades_topic = "{topic}"\n'
        f'candles_topic = "{topic}.candles"\ndead_letter_topic = ""\n\n'
        f"[kafka.properties]\n{lines}"
    )
    return path


@pytest.fixture
def password_file(secured_kafka, tmp_path, monkeypatch) -> Path:
    """The broker's password in a file (mode 0600), named by TICKPIPE_KAFKA_SASL_PASSWORD_FILE
    in the environment the tickpipe commands inherit."""
    path = tmp_path / "kafka-password"
    path.write_text(secured_kafka.password + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD_FILE", str(path))
    return path


@pytest.fixture
def topic(secured_kafka) -> str:
    return trades_and_candles_topics(secured_kafka, "sec", 2)


def http_text(url: str) -> str:
    """The body of a GET, whatever its status (serve over a stored file has no /metrics)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


def spellings(secret: str) -> list[str]:
    """The password as it could leak: raw, and URL-encoded (as a path and as a form)."""
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)]


def assert_nowhere(secret: str, texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for spelling in spellings(secret):
            assert spelling not in text, f"the password shows in {where}"


def test_ingest_process_verify_and_serve_through_sasl_ssl_with_the_password_nowhere(
    secured_kafka, password_file, topic, tmp_path
):
    config = write_config(tmp_path, secured_kafka, topic)
    group = f"g-{topic}"
    data = tmp_path / "process"
    processor = tickpipe("process", "--config", str(config), "--group", group,
                         "--data-dir", str(data), log=tmp_path / "process.log")  # fmt: skip
    procs = [processor]
    try:
        ingest = subprocess.run(
            [sys.executable, "-m", "tickpipe", "ingest", "--config", str(config), "--simulated",
             "--symbols", "3", "--rate", "1000", "--duration", "3",
             "--data-dir", str(tmp_path / "ingest")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stderr
        published = total_published(ingest.stdout)
        assert published > 0
        wait_for(
            lambda: secured_kafka.committed_to_end(group, topic), 90, "the processor", tmp_path
        )
        stop_process(processor)
        assert processor.returncode == 0, (tmp_path / "process.log").read_text()

        with duckdb.connect(str(data / "tickpipe.duckdb"), read_only=True) as con:
            count, distinct = con.execute(
                "SELECT count(*), count(DISTINCT (exchange, symbol, trade_id)) FROM trades"
            ).fetchone()
            exchange, symbol = con.execute("SELECT exchange, symbol FROM candles").fetchone()
        assert count == distinct == published, "each published trade stored exactly once"
        verify = subprocess.run(
            [sys.executable, "-m", "tickpipe", "verify", "--config", str(config),
             "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # serve --kafka over the stored file; a second processor (its own group and file)
        # publishes candle updates of fresh trades to the candles topic it feeds from.
        serve_log = tmp_path / "serve.log"
        serve = ["serve", "--data-dir", str(data), "--port", "0",
                 "--kafka", secured_kafka.bootstrap]  # fmt: skip
        procs.append(tickpipe(*serve, "--config", str(config), log=serve_log))
        url = wait_for(lambda: re.search(r"API at (http://\S+)", serve_log.read_text()), 60,
                       "serve", tmp_path).group(1)  # fmt: skip
        procs.append(tickpipe("process", "--config", str(config), "--group", f"{group}-b",
                              "--data-dir", str(tmp_path / "process-b"),
                              log=tmp_path / "process-b.log"))  # fmt: skip
        procs.append(tickpipe("ingest", "--config", str(config), "--simulated", "--symbols",
                              "3", "--rate", "200", "--duration", "120",
                              "--data-dir", str(tmp_path / "ingest-b"),
                              log=tmp_path / "ingest-b.log"))  # fmt: skip

        def live_candles() -> list[dict]:
            received = asyncio.run(subscribe(url, exchange, symbol, seconds=2.0))
            return [m for m in received if m["type"] == "candle"]

        candles = wait_for(live_candles, 90, "live candles from the candles topic", tmp_path)
        assert {(m["exchange"], m["symbol"]) for m in candles} == {(exchange, symbol)}
        query = urllib.parse.urlencode({"exchange": exchange, "symbol": symbol, "interval": "1s"})
        assert json.loads(http_text(f"{url.rstrip('/')}/api/candles?{query}"))["candles"]
        metrics = http_text(f"{url.rstrip('/')}/metrics")
    finally:
        for p in procs:
            stop_process(p)
    texts = {
        "ingest output": ingest.stdout + ingest.stderr,
        "verify output": verify.stdout + verify.stderr,
        "serve's /metrics": metrics,
    }
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != password_file and path.suffix not in (".duckdb", ".wal"):
            texts[str(path)] = path.read_text(errors="replace")
    assert_nowhere(secured_kafka.password, texts)


def one_line_failure(args: list[str], config: Path, tmp: Path) -> str:
    """Run a tickpipe command that must fail: its one stderr line (no traceback)."""
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe", *args, "--config", str(config),
         "--data-dir", str(tmp / "data")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


COMMANDS = {
    "ingest": ["ingest", "--simulated", "--duration", "5"],
    "process": ["process", "--duration", "5"],
    "serve": ["serve", "--port", "0"],  # --kafka is added: the bootstrap of the broker
}


def command(name: str, broker: SecuredKafkaBroker) -> list[str]:
    return [*COMMANDS[name], *(["--kafka", broker.bootstrap] if name == "serve" else [])]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_wrong_password_is_one_line_naming_the_failed_login(
    secured_kafka, name, topic, tmp_path, monkeypatch
):
    wrong = f"Wrong@pass/{uuid.uuid4().hex[:6]}"
    path = tmp_path / "wrong-password"
    path.write_text(wrong)
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD_FILE", str(path))
    config = write_config(tmp_path, secured_kafka, topic)
    line = one_line_failure(command(name, secured_kafka), config, tmp_path)
    assert "authentication failed" in line and repr(secured_kafka.user) in line, line
    assert secured_kafka.bootstrap in line
    assert_nowhere(wrong, {"the error line": line})
    assert_nowhere(secured_kafka.password, {"the error line": line})


@pytest.mark.parametrize(
    ("name", "fault", "expected"),
    [
        ("ingest", "untrusted", ("not trusted", "ssl.ca.location")),
        ("serve", "untrusted", ("not trusted", "ssl.ca.location")),
        ("process", "plaintext", ("security.protocol = PLAINTEXT", "closed the connection")),
    ],
)
def test_an_untrusted_certificate_or_a_plaintext_client_is_one_line_naming_it(
    secured_kafka, password_file, topic, tmp_path, name, fault, expected
):
    if fault == "untrusted":
        properties = {"ssl.ca.location": str(secured_kafka.tls.other_ca)}
    else:
        properties = {"security.protocol": "PLAINTEXT"}
    config = write_config(tmp_path, secured_kafka, topic, **properties)
    line = one_line_failure(command(name, secured_kafka), config, tmp_path)
    assert all(word in line for word in expected), line
    assert_nowhere(secured_kafka.password, {"the error line": line})
