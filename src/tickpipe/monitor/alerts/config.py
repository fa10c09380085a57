"""`[alerts]` (the rules and where notifications go) and `[monitor]`, checked at start-up.

Rules come with sensible defaults (lag, a silent source, a long disconnect); price rules name
their symbols, since no threshold suits every market. Secrets (webhook URLs, the bot token,
the SMTP password) are read from the environment only, never from the file. Durations arrive
decoded (`tickpipe.durations`), in the unit their field's name gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from tickpipe.durations import Micros, MicrosOrZero, Seconds, allowing
from tickpipe.settings import Fail

# kind -> what `threshold` means
RULE_KINDS = {
    "lag": "seconds of processing lag (event time to stored)",
    "silence": "seconds without a trade from a source",
    "disconnected": "seconds a source has been disconnected",
    "price_above": "a price; fires while the last price is above it",
    "price_below": "a price; fires while the last price is below it",
    "price_move": "percent; fires when the price moved more than this within `window`",
    "venue_deviation": "percent; fires while a venue's price is this far from the composite",
    "venue_stale": "seconds; fires while a venue of a composite has not traded for this long",
}
SEVERITIES = ("info", "warning", "critical")
NOTIFIERS = ("log", "webhook", "slack", "discord", "telegram", "email")
# notifier -> the environment variable holding its secret
SECRET_ENV = {
    "webhook": "TICKPIPE_ALERT_WEBHOOK_URL",
    "slack": "TICKPIPE_ALERT_SLACK_URL",
    "discord": "TICKPIPE_ALERT_DISCORD_URL",
    "telegram": "TICKPIPE_ALERT_TELEGRAM_TOKEN",
}
SMTP_PASSWORD_ENV = "TICKPIPE_ALERT_SMTP_PASSWORD"
ALERT_SECRETS = (*SECRET_ENV.values(), SMTP_PASSWORD_ENV)  # each also as NAME_FILE


RULE_DURATION = allowing("not a duration (5m)")
EVERY = allowing("not a duration above 0 (e.g. 1s, 1h)")


class AlertRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One `[[alerts.rules]]` table."""

    name: str
    kind: str
    threshold: float
    # how long before pending fires; 0 (or 0s): at once
    for_us: Annotated[MicrosOrZero, RULE_DURATION] = msgspec.field(
        name="for", default=MicrosOrZero(0)
    )
    severity: str = "warning"
    window_us: Annotated[Micros, RULE_DURATION] = msgspec.field(  # price_move only
        name="window", default=Micros(300_000_000)
    )
    symbols: list[str] = msgspec.field(default_factory=list)  # `SYMBOL` or `exchange:SYMBOL`
    sources: list[str] = msgspec.field(default_factory=list)  # silence/disconnected; []: all


def default_rules() -> list[AlertRule]:
    return [
        AlertRule(
            name="processing-lag",
            kind="lag",
            threshold=60,
            for_us=MicrosOrZero(60_000_000),
            severity="warning",
        ),
        AlertRule(name="source-silent", kind="silence", threshold=180, severity="critical"),
        AlertRule(name="source-disconnected", kind="disconnected", threshold=30),
    ]


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[alerts]`."""

    enabled: bool = True
    evaluate_every_s: Annotated[Seconds, EVERY] = msgspec.field(
        name="evaluate_every", default=Seconds(1.0)
    )
    # a still-firing alert is sent again this often
    renotify_every_us: Annotated[Micros, EVERY] = msgspec.field(
        name="renotify_every", default=Micros(3_600_000_000)
    )
    history: int = 1000  # alert transitions kept in memory for /api/alerts
    notifiers: list[str] = msgspec.field(default_factory=lambda: ["log"])
    rules: list[AlertRule] = msgspec.field(default_factory=default_rules)
    telegram_api: str = "https://api.telegram.org"
    telegram_chat_id: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str = ""
    email_from: str = ""
    email_to: list[str] = msgspec.field(default_factory=list)


class MonitorConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[monitor]`: KPIs kept in the store, and where else /metrics is served."""

    kpi_every_us: Annotated[Micros, allowing("a duration above 0 (e.g. 5s)")] = msgspec.field(
        name="kpi_every", default=Micros(5_000_000)
    )
    process: str = "embedded"  # the name KPIs are kept under (one per process)
    # /metrics on a port of its own, for processes without the API (0: only the API's)
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"


def check_monitor(monitor: MonitorConfig, fail: Fail) -> None:
    """Semantic checks; `fail(key, value, why)` raises the one-line ConfigError."""
    if not monitor.process.strip():
        fail("monitor.process", monitor.process, "give the process a name")
    if not 0 <= monitor.metrics_port <= 65535:
        fail("monitor.metrics_port", monitor.metrics_port, "between 0 (off) and 65535")


def check_alerts(alerts: AlertsConfig, fail: Fail, env: Mapping[str, str]) -> None:
    """Semantic checks; `fail(key, value, why)` raises the one-line ConfigError."""
    if alerts.history < 1:
        fail("alerts.history", alerts.history, "must be at least 1")
    names: set[str] = set()
    for i, rule in enumerate(alerts.rules):
        key = f"alerts.rules[{i}]"
        if not rule.name.strip():
            fail(f"{key}.name", rule.name, "give the rule a name")
        if rule.name in names:
            fail(f"{key}.name", rule.name, "another rule has this name")
        names.add(rule.name)
        if rule.kind not in RULE_KINDS:
            fail(f"{key}.kind", rule.kind, f"one of {', '.join(RULE_KINDS)}")
        if rule.severity not in SEVERITIES:
            fail(f"{key}.severity", rule.severity, f"one of {', '.join(SEVERITIES)}")
        if rule.threshold < 0 or (rule.kind.startswith(("price", "venue")) and rule.threshold == 0):
            fail(f"{key}.threshold", rule.threshold, RULE_KINDS[rule.kind] + ", above 0")
        if rule.kind in ("price_above", "price_below") and not rule.symbols:
            fail(f"{key}.symbols", rule.symbols, "name the symbols a price threshold is for")
    for i, name in enumerate(alerts.notifiers):
        if name not in NOTIFIERS:
            fail(f"alerts.notifiers[{i}]", name, f"one of {', '.join(NOTIFIERS)}")
        var = SECRET_ENV.get(name)
        if var and not env.get(var, "").strip():
            fail(f"alerts.notifiers[{i}]", name, f"needs the environment variable {var}")
        if (
            var
            and var.endswith("_URL")
            and not env[var].strip().startswith(("http://", "https://"))
        ):
            # The value is a secret: say what is wrong with it, never what it is.
            fail(f"alerts.notifiers[{i}]", name, f"{var} must be an http:// or https:// URL")
    if "telegram" in alerts.notifiers and not alerts.telegram_chat_id:
        fail("alerts.telegram_chat_id", "", "the telegram notifier needs a chat id")
    if not alerts.telegram_api.startswith(("http://", "https://")):
        fail("alerts.telegram_api", alerts.telegram_api, "must start with http:// or https://")
    if "email" in alerts.notifiers:
        if not alerts.smtp_host:
            fail("alerts.smtp_host", "", "the email notifier needs an SMTP server")
        if not alerts.email_from or not alerts.email_to:
            fail("alerts.email_to", alerts.email_to, "the email notifier needs email_from and "
                 "email_to")  # fmt: skip
    if not 0 < alerts.smtp_port <= 65535:
        fail("alerts.smtp_port", alerts.smtp_port, "must be between 1 and 65535")
