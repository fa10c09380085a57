"""Telegram Bot API `sendMessage`: POST {api}/bot{token}/sendMessage with chat_id and text.

The base URL is configurable (`alerts.telegram_api`) so tests talk to 127.0.0.1.
"""

from __future__ import annotations

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import JsonPostNotifier, alert_text

TEXT_MAX = 4096


def telegram_payload(alert: Alert, chat_id: str) -> dict:
    return {"chat_id": chat_id, "text": alert_text(alert)[:TEXT_MAX],
            "disable_web_page_preview": True}  # fmt: skip


class TelegramNotifier(JsonPostNotifier):
    name = "telegram"

    def __init__(self, api: str, token: str, chat_id: str) -> None:
        super().__init__(f"{api.rstrip('/')}/bot{token}/sendMessage")
        self.chat_id = chat_id

    def payload(self, alert: Alert) -> dict:
        return telegram_payload(alert, self.chat_id)
