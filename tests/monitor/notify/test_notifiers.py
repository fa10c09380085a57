"""Notifications reach real local receivers in each service's documented shape; sending never
blocks the caller, retries a refused send, and never logs an endpoint's secret."""

from __future__ import annotations

import asyncio
import email
import logging
import time

import pytest

from tests.monitor.receivers import HttpReceiver, SmtpReceiver
from tickpipe.monitor.alerts.config import AlertsConfig
from tickpipe.monitor.alerts.engine import FIRING, RESOLVED, Alert
from tickpipe.monitor.notify.base import Dispatcher
from tickpipe.monitor.notify.build import build_notifiers
from tickpipe.monitor.notify.discord import DiscordNotifier
from tickpipe.monitor.notify.email import EmailNotifier
from tickpipe.monitor.notify.log import LogNotifier
from tickpipe.monitor.notify.slack import SlackNotifier
from tickpipe.monitor.notify.telegram import TelegramNotifier
from tickpipe.monitor.notify.webhook import WebhookNotifier

TOKEN = "123456:secret-bot-token"


def an_alert(state: str = FIRING, message: str = "no trades from binance for 200s") -> Alert:
    return Alert(
        rule="source-silent", severity="critical", state=state,
        labels={"exchange": "", "symbol": "", "source": "binance"}, value=200.0,
        message=message, since=1_800_000_000_000_000, updated=1_800_000_000_500_000,
    )  # fmt: skip


async def dispatch(notifiers, alerts, drain: float = 10.0) -> Dispatcher:
    dispatcher = Dispatcher(notifiers)
    await dispatcher.start()
    dispatcher.notify(alerts)
    await dispatcher.close(drain)
    return dispatcher


def test_webhook_slack_discord_and_telegram_each_get_their_documented_json():
    async def main():
        async with HttpReceiver() as rx:
            notifiers = [
                WebhookNotifier(rx.url + "/hook"),
                SlackNotifier(rx.url + "/services/T0/B0/xyz"),
                DiscordNotifier(rx.url + "/api/webhooks/1/abc"),
                TelegramNotifier(rx.url, TOKEN, "-100200"),
            ]
            sent = await dispatch(notifiers, [an_alert(), an_alert(RESOLVED, "resolved: ok")])
            return rx.received, sent.outcomes

    received, outcomes = asyncio.run(main())
    by_path: dict[str, list] = {}
    for path, body in received:
        by_path.setdefault(path, []).append(body)
    assert set(by_path) == {"/hook", "/services/T0/B0/xyz", "/api/webhooks/1/abc",
                            f"/bot{TOKEN}/sendMessage"}  # fmt: skip
    hook = by_path["/hook"]
    assert [h["alert"]["state"] for h in hook] == [FIRING, RESOLVED]  # in order
    assert hook[0]["alert"] == {
        "rule": "source-silent", "severity": "critical", "state": FIRING,
        "labels": {"exchange": "", "symbol": "", "source": "binance"}, "value": 200.0,
        "message": "no trades from binance for 200s", "since": 1_800_000_000_000_000,
        "updated": 1_800_000_000_500_000,
    }  # fmt: skip
    slack = by_path["/services/T0/B0/xyz"][0]
    assert "source-silent" in slack["text"] and "FIRING" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    assert slack["blocks"][0]["text"]["type"] == "mrkdwn"
    discord = by_path["/api/webhooks/1/abc"][0]
    assert "source-silent" in discord["content"] and len(discord["content"]) <= 2000
    assert discord["embeds"][0]["title"].startswith("source-silent")
    assert isinstance(discord["embeds"][0]["color"], int)
    telegram = by_path[f"/bot{TOKEN}/sendMessage"]
    assert telegram[0]["chat_id"] == "-100200"
    assert "binance" in telegram[0]["text"] and "RESOLVED" in telegram[1]["text"]
    assert outcomes[("slack", "sent")] == 2 and not outcomes[("slack", "failed")]


def test_discord_content_is_cut_to_its_2000_character_limit():
    async def main():
        async with HttpReceiver() as rx:
            await dispatch([DiscordNotifier(rx.url + "/d")], [an_alert(message="x" * 5000)])
            return rx.received

    ((_path, body),) = asyncio.run(main())
    assert len(body["content"]) == 2000


def test_an_email_arrives_at_the_smtp_server_with_the_alert_in_subject_and_body():
    with SmtpReceiver() as smtp:
        to = ["ops@example.org", "oncall@example.org"]
        notifier = EmailNotifier("127.0.0.1", smtp.port, "tickpipe@example.org", to, False)
        sent = asyncio.run(dispatch([notifier], [an_alert()]))
        deadline = time.monotonic() + 5
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sent.outcomes[("email", "sent")] == 1
    (envelope,) = smtp.messages
    assert envelope.mail_from == "tickpipe@example.org"
    assert sorted(envelope.rcpt_tos) == ["oncall@example.org", "ops@example.org"]
    msg = email.message_from_bytes(envelope.content)
    assert "source-silent" in msg["Subject"] and "FIRING" in msg["Subject"]
    assert "no trades from binance for 200s" in msg.get_payload()


def test_a_refused_send_is_retried_until_it_goes_through():
    async def main():
        async with HttpReceiver(fail={"/hook": 2}) as rx:
            sent = await dispatch([WebhookNotifier(rx.url + "/hook")], [an_alert()])
            return rx, sent

    rx, sent = asyncio.run(main())
    assert rx.attempts["/hook"] == 3 and len(rx.received) == 1
    assert sent.outcomes[("webhook", "sent")] == 1


def test_a_failing_endpoint_is_counted_and_logged_without_its_secret_url(caplog):
    async def main():
        async with HttpReceiver(fail={f"/bot{TOKEN}/sendMessage": 99}) as rx:
            return await dispatch([TelegramNotifier(rx.url, TOKEN, "1")], [an_alert()])

    with caplog.at_level(logging.WARNING, logger="tickpipe.alerts"):
        sent = asyncio.run(main())
    assert sent.outcomes[("telegram", "failed")] == 1
    assert "telegram" in caplog.text and "HTTP 500" in caplog.text
    assert TOKEN not in caplog.text and "secret" not in caplog.text


def test_an_unreachable_endpoint_is_logged_without_its_url(caplog):
    url = "http://127.0.0.1:9/services/very-secret-path"  # port 9: nothing listens
    with caplog.at_level(logging.WARNING, logger="tickpipe.alerts"):
        sent = asyncio.run(dispatch([SlackNotifier(url)], [an_alert()]))
    assert sent.outcomes[("slack", "failed")] == 1
    assert "very-secret-path" not in caplog.text and "slack" in caplog.text


def test_notifying_never_waits_on_a_hung_endpoint_and_a_full_queue_drops_the_oldest():
    async def main():
        async with HttpReceiver(hang=2.0) as rx:
            dispatcher = Dispatcher([WebhookNotifier(rx.url + "/hook")], queue_size=10)
            await dispatcher.start()
            started = time.perf_counter()
            for i in range(50):
                dispatcher.notify([an_alert(message=str(i))])
            took = time.perf_counter() - started
            await dispatcher.close(drain_s=0.2)
            return took, dispatcher.outcomes

    took, outcomes = asyncio.run(main())
    assert took < 0.5
    # notify() never yields, so the queue's ten newest waited and the rest were dropped.
    assert outcomes[("webhook", "dropped")] == 50 - 10


def test_the_log_notifier_writes_one_line_per_alert(caplog):
    with caplog.at_level(logging.INFO, logger="tickpipe.alerts"):
        asyncio.run(dispatch([LogNotifier()], [an_alert(), an_alert(RESOLVED, "resolved: ok")]))
    lines = [r for r in caplog.records if r.name == "tickpipe.alerts"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]
    assert "[FIRING] critical source-silent (source=binance)" in lines[0].getMessage()


def test_build_reads_each_secret_from_its_environment_variable():
    config = AlertsConfig(notifiers=["log", "webhook", "telegram"], telegram_chat_id="7",
                          telegram_api="http://127.0.0.1:1")  # fmt: skip
    env = {"TICKPIPE_ALERT_WEBHOOK_URL": "http://127.0.0.1:1/h",
           "TICKPIPE_ALERT_TELEGRAM_TOKEN": "tok"}  # fmt: skip
    built = build_notifiers(config, env)
    assert [n.name for n in built] == ["log", "webhook", "telegram"]


@pytest.mark.parametrize("name", ["webhook", "slack", "discord"])
def test_each_http_notifier_posts_to_the_url_from_the_environment(name):
    async def main():
        async with HttpReceiver() as rx:
            env = {f"TICKPIPE_ALERT_{name.upper()}_URL": rx.url + f"/{name}"}
            await dispatch(build_notifiers(AlertsConfig(notifiers=[name]), env), [an_alert()])
            return rx.received

    assert [path for path, _ in asyncio.run(main())] == [f"/{name}"]
