"""Email over SMTP (smtplib on a worker thread, so the loop never waits on the server)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import aiohttp

from tickpipe.monitor.alerts.engine import Alert
from tickpipe.monitor.notify.base import TIMEOUT_S, alert_json, alert_text, labels_text


def email_message(alert: Alert, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"tickpipe {alert_text(alert)}"[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    body = [alert.message, ""]
    body += [f"{k}: {v}" for k, v in alert_json(alert).items() if k not in ("labels", "message")]
    if labels_text(alert):
        body.append(f"labels: {labels_text(alert)}")
    msg.set_content("\n".join(body) + "\n")
    return msg


class EmailNotifier:
    name = "email"

    def __init__(
        self, host: str, port: int, sender: str, to: list[str], starttls: bool = True,
        user: str = "", password: str = "",
    ) -> None:  # fmt: skip
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.starttls, self.user, self._password = starttls, user, password

    async def send(self, alert: Alert, session: aiohttp.ClientSession) -> None:
        await asyncio.to_thread(self._send, email_message(alert, self.sender, self.to))

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self._password)
            smtp.send_message(msg)
