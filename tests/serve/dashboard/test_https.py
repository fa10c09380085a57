"""The dashboard in real Chromium over HTTPS: `tickpipe demo --tls-cert --tls-key` with a
certificate from the test CA. Chromium refuses it until told to trust the server's key
(`--ignore-certificate-errors-spki-list`, the key's pin; nothing else is let through), then the
page loads with HSTS and gets live candles over wss://."""

from __future__ import annotations

import base64
import hashlib
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from servers.certs import TlsFiles, make_tls
from servers.chromium import CHROMIUM, CHROMIUM_FLAGS

from .conftest import Console, chart_candles, page_stats, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow


def spki_pin(cert: Path) -> str:
    """base64(SHA-256(the certificate's public key)): what Chromium's pin list takes."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def https_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TlsFiles]]:
    """A running demo over HTTPS on 127.0.0.1 and its certificate files, once it has trades."""
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    data_dir = tmp_path_factory.mktemp("https-demo")
    log = data_dir / "demo.stderr"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--port", "0", "--data-dir",
             str(data_dir), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        found = re.search(
            r"dashboard and API at (https://127\.0\.0\.1:\d+)", proc.stdout.readline()
        )
        assert found, log.read_text()
        url = found.group(1)
        with httpx.Client(verify=ssl.create_default_context(cafile=tls.ca), timeout=5) as client:
            wait_for(
                "the demo's first trades",
                lambda: client.get(url + "/api/exchanges").json()["exchanges"],
            )
        yield url, tls
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def relaunch(browser: Browser, *flags: str) -> Browser:
    """Another Chromium like `browser` (the tests' flags), with `flags` added."""
    return browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_FLAGS, *flags], headless=True,
        timeout=60_000,
    )  # fmt: skip


@pytest.fixture(scope="module")
def chromium(chromium: Browser, https_demo: tuple[str, TlsFiles]) -> Iterator[Browser]:
    """The session's Chromium relaunched to trust the demo's key only (its pin), for `page`."""
    pin = spki_pin(https_demo[1].cert)
    trusting = relaunch(chromium, f"--ignore-certificate-errors-spki-list={pin}")
    try:
        yield trusting
    finally:
        trusting.close()


def test_chromium_refuses_the_test_cas_certificate_without_the_pin(
    chromium: Browser, https_demo: tuple[str, TlsFiles]
) -> None:
    from playwright.sync_api import Error

    plain = relaunch(chromium)
    try:
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            plain.new_page().goto(https_demo[0] + "/")
    finally:
        plain.close()


def test_the_dashboard_over_https_has_hsts_and_live_candles_over_wss(
    page, https_demo: tuple[str, TlsFiles], console: Console
) -> None:
    url = https_demo[0]
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    answer = page.goto(url + "/?symbol=BTC-USDT&tf=1s&lookback=10m")
    assert answer is not None and answer.ok
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    wait_for("candles on the chart", lambda: chart_candles(page))
    wait_for("live candles over the WebSocket", lambda: page_stats(page)["liveCandles"] > 0)
    assert page.inner_text("#live-status").strip().lower() == "live"
    assert page.evaluate("() => location.protocol") == "https:"
    assert sockets and all(s.startswith(url.replace("https://", "wss://")) for s in sockets)
    assert console.unexpected() == []
