"""The notifiers `[alerts] notifiers` names, with their secrets read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from tickpipe.credentials import secret_env
from tickpipe.monitor.alerts.config import (
    ALERT_SECRETS,
    SECRET_ENV,
    SMTP_PASSWORD_ENV,
    AlertsConfig,
)
from tickpipe.monitor.notify.base import Notifier
from tickpipe.monitor.notify.discord import DiscordNotifier
from tickpipe.monitor.notify.email import EmailNotifier
from tickpipe.monitor.notify.log import LogNotifier
from tickpipe.monitor.notify.slack import SlackNotifier
from tickpipe.monitor.notify.telegram import TelegramNotifier
from tickpipe.monitor.notify.webhook import WebhookNotifier


def build_notifiers(config: AlertsConfig, env: Mapping[str, str] | None = None) -> list[Notifier]:
    env = secret_env(os.environ if env is None else env, ALERT_SECRETS)

    def secret(name: str) -> str:
        return env.get(SECRET_ENV[name], "").strip()

    out: list[Notifier] = []
    for name in dict.fromkeys(config.notifiers):
        if name == "log":
            out.append(LogNotifier())
        elif name == "webhook":
            out.append(WebhookNotifier(secret(name)))
        elif name == "slack":
            out.append(SlackNotifier(secret(name)))
        elif name == "discord":
            out.append(DiscordNotifier(secret(name)))
        elif name == "telegram":
            out.append(TelegramNotifier(config.telegram_api, secret(name), config.telegram_chat_id))
        elif name == "email":
            out.append(EmailNotifier(
                config.smtp_host, config.smtp_port, config.email_from, config.email_to,
                config.smtp_starttls, config.smtp_user, env.get(SMTP_PASSWORD_ENV, ""),
            ))  # fmt: skip
    return out
