"""`[alerts]` and `[monitor]` in the config: defaults, TOML rules, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickpipe.config import ConfigError, load_config

SECRETS = {"TICKPIPE_ALERT_SLACK_URL": "http://127.0.0.1:9/hook"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickpipe.toml"
    path.write_text(text)
    return path


def test_defaults_cover_lag_a_silent_source_and_a_long_disconnect():
    config = load_config(env={})
    rules = {r.name: r for r in config.alerts.rules}
    assert rules["processing-lag"].kind == "lag"
    assert (rules["processing-lag"].threshold, rules["processing-lag"].for_us) == (60, 60 * 10**6)
    assert rules["processing-lag"].severity == "warning"
    assert (rules["source-silent"].threshold, rules["source-silent"].severity) == (180, "critical")
    assert rules["source-disconnected"].kind == "disconnected"
    assert config.alerts.notifiers == ["log"]


def test_rules_from_a_toml_file_replace_the_defaults(tmp_path: Path):
    path = write(
        tmp_path,
        """
[alerts]
renotify_every = "30m"
notifiers = ["log", "slack"]

[[alerts.rules]]
name = "btc-jump"
kind = "price_move"
threshold = 2.5
window = "10m"
for = "30s"
severity = "critical"
symbols = ["binance:BTC-USDT"]
""",
    )
    config = load_config(path, env=SECRETS)
    (only,) = config.alerts.rules
    assert (only.name, only.kind, only.threshold, only.window_us, only.for_us) == (
        "btc-jump", "price_move", 2.5, 600 * 10**6, 30 * 10**6)  # fmt: skip
    assert config.alerts.notifiers == ["log", "slack"]


@pytest.mark.parametrize(
    ("toml", "env", "starts"),
    [
        ('[[alerts.rules]]\nname = "x"\nkind = "vibes"\nthreshold = 1',
         {}, "config error: alerts.rules[0].kind = 'vibes'"),
        ('[[alerts.rules]]\nname = "x"\nkind = "lag"\nthreshold = 1\nseverity = "loud"',
         {}, "config error: alerts.rules[0].severity = 'loud'"),
        ('[[alerts.rules]]\nname = "x"\nkind = "lag"\nthreshold = 1\nfor = "soon"',
         {}, "config error: alerts.rules[0].for = 'soon'"),
        ('[[alerts.rules]]\nname = "x"\nkind = "price_above"\nthreshold = 100',
         {}, "config error: alerts.rules[0].symbols = []"),
        ('[[alerts.rules]]\nname = "x"\nkind = "lag"\nthreshold = 1\n'
         '[[alerts.rules]]\nname = "x"\nkind = "lag"\nthreshold = 2',
         {}, "config error: alerts.rules[1].name = 'x'"),
        ('[alerts]\nnotifiers = ["pager"]', {}, "config error: alerts.notifiers[0] = 'pager'"),
        ('[alerts]\nnotifiers = ["slack"]', {},
         "config error: alerts.notifiers[0] = 'slack' (from "),
        ('[alerts]\nnotifiers = ["telegram"]', {"TICKPIPE_ALERT_TELEGRAM_TOKEN": "t"},
         "config error: alerts.telegram_chat_id"),
        ('[alerts]\nnotifiers = ["email"]', {}, "config error: alerts.smtp_host"),
        ('[alerts]\nrenotify_every = "never"', {}, "config error: alerts.renotify_every"),
        ('[monitor]\nkpi_every = "0s"', {}, "config error: monitor.kpi_every"),
    ],
)  # fmt: skip
def test_a_bad_alert_setting_stops_start_up_with_one_line_naming_it(tmp_path, toml, env, starts):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, toml), env=env)
    message = str(err.value)
    assert message.startswith(starts), message
    assert "\n" not in message


def test_a_missing_secret_names_the_environment_variable_and_never_a_value(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[alerts]\nnotifiers = ["discord"]'), env={})
    assert "TICKPIPE_ALERT_DISCORD_URL" in str(err.value)


def test_notifiers_can_be_chosen_from_the_environment():
    config = load_config(env={"TICKPIPE_ALERTS_NOTIFIERS": "log,slack", **SECRETS})
    assert config.alerts.notifiers == ["log", "slack"]


def test_a_webhook_secret_that_is_not_a_url_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as err:
        load_config(env={"TICKPIPE_ALERTS_NOTIFIERS": "webhook",
                         "TICKPIPE_ALERT_WEBHOOK_URL": "hunter2-not-a-url"})  # fmt: skip
    assert "TICKPIPE_ALERT_WEBHOOK_URL must be an http:// or https:// URL" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_the_cli_stops_with_one_line_and_status_2_when_a_notifier_lacks_its_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    env["TICKPIPE_ALERTS_NOTIFIERS"] = "log,slack"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--no-serve", "--duration", "1",
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, env=env,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("config error: alerts.notifiers[1] = 'slack'")
    assert "TICKPIPE_ALERT_SLACK_URL" in result.stderr and result.stderr.count("\n") == 1
