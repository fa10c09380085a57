"""HTTPS for the API: real clients that verify the certificate against the test CA, the HSTS
header, the TLS-only port, live updates over wss://, and the one-line errors of bad files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from servers.certs import TlsFiles, make_tls

from tickpipe.config import ConfigError, load_config
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.exposure import WS_POLICY
from tickpipe.serve.live import Hub
from tickpipe.serve.settings import ServeConfig
from tickpipe.stores.duckdb import DuckDBStore

from .conftest import ApiThread, Served
from .test_live import demo_pipeline, watch_live


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def trusting(ca: Path) -> ssl.SSLContext:
    """A client context that trusts `ca` only and checks the host name, as browsers do."""
    return ssl.create_default_context(cafile=str(ca))


def tls_serve(tls: TlsFiles) -> ServeConfig:
    return ServeConfig(tls_cert=str(tls.cert), tls_key=str(tls.key))


@pytest.fixture(scope="module")
def https(stored_path: tuple[Path, int], tls: TlsFiles) -> Iterator[str]:
    """The API over the filled store, served over HTTPS with the test CA's certificate."""
    store = DuckDBStore(stored_path[0], read_only=True)
    serve = tls_serve(tls)
    api = ApiThread(create_app(ApiContext(store, hub=Hub()), serve=serve), serve)
    try:
        yield api.url
    finally:
        api.stop()
        store.close()


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def max_age_s(answer: httpx.Response) -> int:
    """The max-age of the answer's Strict-Transport-Security header."""
    directives = dict(
        part.strip().partition("=")[::2]
        for part in answer.headers["strict-transport-security"].split(";")
    )
    return int(directives["max-age"])


def test_the_url_says_https_and_a_client_trusting_the_ca_gets_200_with_hsts(
    https: str, tls: TlsFiles
) -> None:
    assert https.startswith("https://127.0.0.1:")
    with httpx.Client(verify=trusting(tls.ca)) as client:
        health = client.get(https + "/api/health")
        page = client.get(https + "/")
        missing = client.get(https + "/api/nope")
        foreign = client.get(https + "/api/health", headers={"Host": "evil.example"})
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (missing.status_code, foreign.status_code) == (404, 400)
    # On every answer over HTTPS, errors and refusals too; at least a day to mean anything.
    for answer in (health, page, missing, foreign):
        assert max_age_s(answer) >= 86_400
        assert "includesubdomains" not in answer.headers["strict-transport-security"].lower()


def test_the_certificate_names_localhost_too(https: str, tls: TlsFiles) -> None:
    by_name = https.replace("127.0.0.1", "localhost")
    answer = httpx.get(by_name + "/api/health", verify=trusting(tls.ca))
    assert answer.status_code == 200 and max_age_s(answer) > 0


def test_a_client_trusting_only_another_ca_refuses_the_certificate(
    https: str, tls: TlsFiles
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(https + "/api/health", verify=trusting(tls.other_ca))


def test_plain_http_to_the_https_port_gets_no_data(https: str) -> None:
    host, port = address(https)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET /api/health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(4096):
                reply += chunk
    assert b"HTTP/1." not in reply and b"status" not in reply


def test_tls_older_than_1_2_is_refused(https: str, tls: TlsFiles) -> None:
    """A client that offers TLS 1.0/1.1 only (with every cipher allowed) gets no session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are, on purpose
        old = trusting(tls.ca)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    host, port = address(https)
    with socket.create_connection((host, port), timeout=5) as sock, pytest.raises(ssl.SSLError):
        old.wrap_socket(sock, server_hostname=host).close()
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        trusting(tls.ca).wrap_socket(sock, server_hostname=host) as session,
    ):
        assert session.version() in ("TLSv1.2", "TLSv1.3")


def test_plain_http_answers_carry_no_hsts(served: Served) -> None:
    answer = httpx.get(served.url + "/api/health")
    assert served.url.startswith("http://")
    assert answer.status_code == 200 and "strict-transport-security" not in answer.headers


def test_a_websocket_from_a_foreign_https_origin_is_refused_over_wss(
    https: str, tls: TlsFiles
) -> None:
    url = https.replace("https://", "wss://") + "/api/live"

    async def attempt() -> websockets.ConnectionClosed:
        async with websockets.connect(
            url, ssl=trusting(tls.ca), origin="https://evil.example"
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return closed.value

    closed = asyncio.run(asyncio.wait_for(attempt(), 10))
    assert closed.rcvd is not None and closed.rcvd.code == WS_POLICY


def test_the_live_websocket_over_wss_from_the_servers_https_page_receives_updates(
    tmp_path: Path, tls: TlsFiles
) -> None:
    """The pipeline's run with the API on TLS, as `demo --tls-cert/--tls-key` runs it; the
    client sends the Origin the dashboard's own https:// page has."""
    pipeline = demo_pipeline(tmp_path, Hub(), symbols=3, rate=300)
    try:
        answer, received = watch_live(pipeline, tls_serve(tls), trusting(tls.ca))
    finally:
        pipeline.close()
    assert answer == {"type": "subscribed", "keys": [["simulated", "BTC-USDT", "1s"]]}
    candles = [m for m in received if m["type"] == "candle"]
    trades = [m for m in received if m["type"] == "trades"]
    assert candles and trades
    assert {(c["exchange"], c["symbol"]) for c in candles} == {("simulated", "BTC-USDT")}


def test_tls_does_not_replace_the_token_off_loopback(tls: TlsFiles) -> None:
    overrides = {"serve.host": "0.0.0.0", "serve.tls_cert": str(tls.cert),
                 "serve.tls_key": str(tls.key)}  # fmt: skip
    with pytest.raises(ConfigError, match=r"serve\.host = '0\.0\.0\.0'.*access token"):
        load_config(env={}, overrides=overrides)
    config = load_config(env={"TICKPIPE_SERVE_TOKEN": "t0ken"}, overrides=overrides)
    assert config.serve.tls_cert == str(tls.cert)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another certificate and key: its key matches none of `tls`."""
    return make_tls(tmp_path_factory.mktemp("other"))


BAD_FILES = ["cert only", "key only", "cert missing", "key missing", "key of another cert",
             "key as cert", "CA as key", "directory as cert", "garbled cert",
             "RSA key for an EC cert"]  # fmt: skip


@pytest.fixture(scope="module")
def bad_files(tls: TlsFiles, other: TlsFiles) -> dict[str, tuple[dict[str, str], str, str, str]]:
    """Each case of `BAD_FILES`: (overrides, the key and the path the error names, its why)."""
    cert, key, missing = str(tls.cert), str(tls.key), str(tls.cert.parent / "nope.pem")
    directory, garbled = str(tls.cert.parent), tls.cert.parent / "garbled.pem"
    rsa_key = tls.cert.parent / "rsa.key"
    rsa_key.write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    garbled.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return {
        "cert only": ({"serve.tls_cert": cert}, "serve.tls_cert", cert, "needs serve.tls_key"),
        "key only": ({"serve.tls_key": key}, "serve.tls_key", key, "needs serve.tls_cert"),
        "cert missing": ({"serve.tls_cert": missing, "serve.tls_key": key}, "serve.tls_cert",
                         missing, "cannot be read"),
        "key missing": ({"serve.tls_cert": cert, "serve.tls_key": missing}, "serve.tls_key",
                        missing, "cannot be read"),
        "key of another cert": ({"serve.tls_cert": cert, "serve.tls_key": str(other.key)},
                                "serve.tls_key", str(other.key), "does not match"),
        "key as cert": ({"serve.tls_cert": key, "serve.tls_key": key}, "serve.tls_cert", key,
                        "no PEM certificate"),
        "CA as key": ({"serve.tls_cert": cert, "serve.tls_key": str(tls.ca)}, "serve.tls_key",
                      str(tls.ca), "no PEM private key"),
        "directory as cert": ({"serve.tls_cert": directory, "serve.tls_key": key},
                              "serve.tls_cert", directory, "is a directory"),
        "garbled cert": ({"serve.tls_cert": str(garbled), "serve.tls_key": key}, "serve.tls_cert",
                         str(garbled), "cannot be loaded with the key"),
        "RSA key for an EC cert": ({"serve.tls_cert": cert, "serve.tls_key": str(rsa_key)},
                                   "serve.tls_key", str(rsa_key), "does not match"),
    }  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_certificate_files_are_one_line_config_errors_naming_key_and_path(
    case: str, bad_files: dict, tls: TlsFiles, other: TlsFiles
) -> None:
    overrides, key, path, why = bad_files[case]
    with pytest.raises(ConfigError) as error:
        load_config(env={}, overrides=overrides)
    message = str(error.value)
    assert message.startswith(f"config error: {key} = {path!r} (from the command line): ")
    assert why in message and "\n" not in message
    for pem in (tls.key, other.key):  # the keys' contents never show
        assert pem.read_text().splitlines()[1] not in message


def test_an_encrypted_key_is_refused_with_one_line(tmp_path: Path) -> None:
    locked = make_tls(tmp_path, key_password="pass phrase")
    overrides = {"serve.tls_cert": str(locked.cert), "serve.tls_key": str(locked.key)}
    with pytest.raises(ConfigError, match=r"serve\.tls_key = .*: is encrypted"):
        load_config(env={}, overrides=overrides)


def test_the_files_come_from_the_environment_too(tls: TlsFiles, other: TlsFiles) -> None:
    env = {"TICKPIPE_SERVE_TLS_CERT": str(tls.cert), "TICKPIPE_SERVE_TLS_KEY": str(other.key)}
    with pytest.raises(ConfigError, match=r"serve\.tls_key = .* \(from TICKPIPE_SERVE_TLS_KEY\)"):
        load_config(env=env)


def tickpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "tickpipe", *args]


def environment(**more: str) -> dict[str, str]:
    """This environment without the TICKPIPE_ settings a developer may have set, plus `more`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}, **more}


@pytest.mark.slow
def test_demo_serves_https_beyond_loopback_with_the_token_required(
    tmp_path: Path, tls: TlsFiles
) -> None:
    token = "tls-is-no-token"
    proc = subprocess.Popen(
        tickpipe("demo", "--quiet", "--duration", "4", "--host", "0.0.0.0", "--port", "0",
                 "--data-dir", str(tmp_path), "--tls-cert", str(tls.cert),
                 "--tls-key", str(tls.key)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(TICKPIPE_SERVE_TOKEN=token),
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        found = re.search(r"https://0\.0\.0\.0:(\d+)", line)
        assert found, f"no https URL in {line!r}"
        url = f"https://127.0.0.1:{found.group(1)}"
        with httpx.Client(verify=trusting(tls.ca), timeout=5) as client:
            without = client.get(url + "/api/health")
            wrong = client.get(url + "/api/health", headers={"Authorization": "Bearer nope"})
            with_token = client.get(url + "/api/kpis", headers={"Authorization": f"Bearer {token}"})
    finally:
        _out, err = proc.communicate(timeout=60)
    assert (without.status_code, wrong.status_code) == (401, 401)
    assert with_token.status_code == 200 and with_token.json()["pipeline"]["mode"] == "demo"
    assert all(max_age_s(answer) > 0 for answer in (without, wrong, with_token))
    assert proc.returncode == 0, err
    assert token not in line + err


@pytest.mark.slow
def test_the_cli_stops_a_key_of_another_certificate_with_one_line(
    tmp_path: Path, tls: TlsFiles, other: TlsFiles
) -> None:
    result = subprocess.run(
        tickpipe("demo", "--duration", "1", "--data-dir", str(tmp_path),
                 "--tls-cert", str(tls.cert), "--tls-key", str(other.key)),
        capture_output=True, text=True, timeout=60, check=False, env=environment(),
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"config error: serve.tls_key = {str(other.key)!r}")
    assert "does not match the certificate" in result.stderr


@pytest.mark.slow
def test_serve_answers_over_https_on_a_stored_file(tmp_path: Path, tls: TlsFiles) -> None:
    made = subprocess.run(
        tickpipe("demo", "--quiet", "--duration", "2", "--no-serve", "--data-dir", str(tmp_path)),
        capture_output=True, text=True, timeout=60, check=False, env=environment(),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    proc = subprocess.Popen(
        tickpipe("serve", "--port", "0", "--data-dir", str(tmp_path), "--tls-cert",
                 str(tls.cert), "--tls-key", str(tls.key)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"dashboard and API at (https://127\.0\.0\.1:\d+)", line)
        assert found, f"no https URL in {line!r}"
        answer = httpx.get(found.group(1) + "/api/exchanges", verify=trusting(tls.ca), timeout=5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert answer.status_code == 200 and max_age_s(answer) > 0
    assert [e["name"] for e in answer.json()["exchanges"]] == ["simulated"]
