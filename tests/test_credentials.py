"""Secrets come from a variable or its _FILE twin, and no text shows them in any spelling."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import pytest

from tickpipe.credentials import (
    SecretError,
    read_secret,
    redact,
    redact_logs,
    redact_secrets,
    with_password,
)

SECRET = "s3cr3t+/=key"  # characters that URL-quoting changes


def test_a_secret_is_read_from_its_variable_or_from_the_file_its_file_twin_names(
    tmp_path: Path,
) -> None:
    path = tmp_path / "token"
    path.write_text("from-a-file\n")  # as `echo` and Kubernetes secrets write it
    assert read_secret("T", {"T": "from-a-variable"}) == "from-a-variable"
    assert read_secret("T", {"T_FILE": str(path)}) == "from-a-file"
    assert read_secret("T", {"OTHER": "x"}) is None


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"T": "a", "T_FILE": "/x"}, "T and T_FILE are both set; keep one"),
        ({"T_FILE": "/nonexistent/token"}, "T_FILE = '/nonexistent/token': no such file"),
    ],
)
def test_a_secret_that_cannot_be_read_is_one_line_naming_the_variable(env: dict, says: str) -> None:
    with pytest.raises(SecretError) as caught:
        read_secret("T", env)
    assert str(caught.value) == says


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="the file is empty"):
        read_secret("T", {"T_FILE": str(tmp_path / "empty")})


def test_a_secret_once_read_is_taken_out_of_any_text_in_every_spelling() -> None:
    secret = "pa ss/w%rd+x"
    read_secret("T", {"T": secret})
    spellings = [secret, quote(secret, safe=""), quote_plus(secret), quote(secret).lower()]
    for spelling in spellings:
        text = f"cannot log in to postgresql://u:{spelling}@h/db (password {spelling!r})"
        assert "pa ss" not in redact(text) and "***" in redact(text), spelling
        assert spelling not in redact(text)


def test_redact_secrets_replaces_longer_secrets_before_the_ones_inside_them() -> None:
    text = "key=ab cd, short=ab, quoted=ab%20cd"
    assert redact_secrets(text, ["ab", "ab cd"]) == "key=***, short=***, quoted=***"
    assert redact_secrets(text, ["", "zz"]) == text


@pytest.mark.parametrize(
    "spelling",
    [
        "s3cr3t%2b%2f%3dkey",
        "%73%33cr3t%2B/=key",
        "s3cr3t+%2F%3dkey",
        "%73%33%63%72%33%74%2b%2f%3d%6b%65%79",
    ],
)
def test_every_url_encoded_spelling_of_a_secret_is_redacted(spelling: str) -> None:
    text = f'{{"url": "wss://feed.example/?token={spelling}&x=1"}}'
    assert redact_secrets(text, [SECRET]) == '{"url": "wss://feed.example/?token=***&x=1"}'


def test_a_password_put_into_a_url_comes_back_whole_from_it() -> None:
    url = with_password("postgresql://tick@127.0.0.1:5432/db?sslmode=verify-full", SECRET)
    parts = urlsplit(url)
    assert (parts.username, parts.password, parts.hostname, parts.port) == (
        "tick", quote(SECRET, safe=""), "127.0.0.1", 5432,
    )  # fmt: skip
    assert parts.query == "sslmode=verify-full" and parts.path == "/db"


def test_log_lines_and_their_tracebacks_never_show_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "hunter2-log"
    read_secret("T", {"T": secret})
    before = logging.getLogRecordFactory()
    redact_logs()
    try:
        log = logging.getLogger("tickpipe.test")
        with caplog.at_level(logging.INFO, logger="tickpipe.test"):
            log.warning("connecting with %s", quote(secret))
            try:
                raise RuntimeError(f"refused: password={secret}")
            except RuntimeError:
                log.exception("failed")
        text = caplog.text
    finally:
        logging.setLogRecordFactory(before)
    assert "connecting with ***" in text and "refused: password=***" in text
    assert secret not in text
