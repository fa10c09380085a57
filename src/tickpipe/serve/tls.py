"""HTTPS for the API: the `serve.tls_cert`/`serve.tls_key` checks and the HSTS header.

The files are checked when the config loads, so a missing file, an encrypted key or a key that
belongs to another certificate is a one-line config error naming the key and the path (never
the key's contents) rather than a traceback from inside uvicorn once the pipeline has started.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tickpipe.settings import Fail

MIN_VERSION = ssl.TLSVersion.TLSv1_2  # 1.0 and 1.1 are broken and every browser has 1.2
# A year, as browsers' preload lists ask; no includeSubDomains: other services may live there.
HSTS_MAX_AGE_S = 365 * 24 * 3600
HSTS = (b"strict-transport-security", f"max-age={HSTS_MAX_AGE_S}".encode())
CERT_KEY, KEY_KEY = "serve.tls_cert", "serve.tls_key"
# OpenSSL's reasons for a key of another certificate: of its type, or of another type
MISMATCH = ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")


def _pem(key: str, path: str, fail: Fail) -> str:
    """The text of a PEM file, or the one-line error saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except IsADirectoryError:
        fail(key, path, "is a directory; give the PEM file")
    except OSError as exc:
        fail(key, path, f"cannot be read ({exc.strerror or exc})")


def check_tls(cert: str, key: str, fail: Fail) -> None:
    """Both files or neither, readable, a certificate and an unencrypted key that matches it."""
    if bool(cert) != bool(key):
        missing, given, value = (KEY_KEY, CERT_KEY, cert) if cert else (CERT_KEY, KEY_KEY, key)
        fail(given, value, f"needs {missing} too (--tls-cert and --tls-key: both, or neither)")
    if not cert:
        return
    if "-----BEGIN CERTIFICATE-----" not in _pem(CERT_KEY, cert, fail):
        fail(CERT_KEY, cert, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    key_pem = _pem(KEY_KEY, key, fail)
    if "PRIVATE KEY-----" not in key_pem:
        fail(KEY_KEY, key, "holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in key_pem or "Proc-Type: 4,ENCRYPTED" in key_pem:
        fail(KEY_KEY, key, "is encrypted; give the key unencrypted, readable only by tickpipe")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The password callback keeps OpenSSL from prompting on the terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason in MISMATCH:
            fail(KEY_KEY, key, f"does not match the certificate in {cert}")
        why = exc.reason or "not PEM that OpenSSL reads"  # its full text names its C source
        fail(CERT_KEY, cert, f"cannot be loaded with the key in {key} ({why})")


class StrictTransport:
    """Adds `Strict-Transport-Security` to every HTTP answer: wrapped around the app only when
    it is served over HTTPS (the port then speaks nothing else), so plain HTTP never has it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), HSTS]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
