"""Secrets: where tokens and passwords come from, and how every text is kept clean of them.

A secret comes from an environment variable NAME or from the file that NAME_FILE names (the
convention of Docker and Kubernetes secrets, which arrive as files). Never from the TOML file,
which is shared and committed, nor from the command line, which every user of the machine can
read in the process list: `refuse_in_file` and the CLI turn those away with one line saying
where the secret goes instead.

Every secret read here is remembered for the life of the process, so that `redact` can take it
out of any text (log lines, one-line errors, dead letters) in every spelling: as itself,
percent-encoded in either case, and a space as `+`. Logging is process-wide, so this memory is
too; it only ever grows, by the few secrets a process reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

FILE_SUFFIX = "_FILE"
SERVE_TOKEN_ENV = "TICKPIPE_SERVE_TOKEN"
STORE_PASSWORD_ENV = "TICKPIPE_STORE_PASSWORD"
KAFKA_ENV_PREFIX = "TICKPIPE_KAFKA_"
# librdkafka properties that hold a secret: each comes from TICKPIPE_KAFKA_<NAME> (`kafka_env`).
KAFKA_SECRET_PROPERTIES = (
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
)
MASK = "***"


class SecretError(ValueError):
    """A secret that cannot be read (both NAME and NAME_FILE, a missing or empty file), or one
    in a place secrets do not belong; the message is one line and never holds the secret."""


def kafka_env(prop: str) -> str:
    """The variable of a secret librdkafka property: `sasl.password` is
    TICKPIPE_KAFKA_SASL_PASSWORD."""
    return KAFKA_ENV_PREFIX + prop.upper().replace(".", "_")


def secret_names(extra: Iterable[str] = ()) -> set[str]:
    """Every variable tickpipe reads a secret from (each also as NAME_FILE). `extra`: the
    ones other modules own (alert notifiers, exchange tokens, the lake's keys)."""
    names = {SERVE_TOKEN_ENV, STORE_PASSWORD_ENV, *(kafka_env(p) for p in KAFKA_SECRET_PROPERTIES)}
    return names | set(extra)


class _Remembered:
    """The secrets this process has read, and the pattern that finds any of them."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        if secret.strip() and secret not in self.secrets:
            self.secrets.add(secret)
            self.pattern = secret_pattern(self.secrets)

    def clear(self) -> None:
        self.secrets.clear()
        self.pattern = None


_REMEMBERED = _Remembered()


def forget_all() -> None:
    """Forget every secret read so far: for a host that runs several configurations one
    after another in one process (tickpipe's own tests do), so one's secrets do not blank
    out another's text."""
    _REMEMBERED.clear()


def read_secret(name: str, env: Mapping[str, str]) -> str | None:
    """The secret in variable `name`, or in the file `name`_FILE names (without its trailing
    newline); None when neither is set. Raises SecretError with one line otherwise."""
    value, path = env.get(name), env.get(name + FILE_SUFFIX)
    if value is not None and path is not None:
        raise SecretError(f"{name} and {name}{FILE_SUFFIX} are both set; keep one")
    if path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise SecretError(f"{name}{FILE_SUFFIX} = {path!r}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"{name}{FILE_SUFFIX} = {path!r}: cannot read it ({why})") from None
        if not value.strip():
            raise SecretError(f"{name}{FILE_SUFFIX} = {path!r}: the file is empty")
    if value is not None:
        _REMEMBERED.add(value.strip())  # whitespace around it is not part of it, nor all it is
    return value


def secret_env(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """`env` with each secret of `names` that is given as a file read into its plain name, so
    code that looks up NAME finds it either way."""
    out = dict(env)
    for name in names:
        value = read_secret(name, env)
        if value is not None:
            out[name] = value
            out.pop(name + FILE_SUFFIX, None)
    return out


def where_secret_goes(name: str) -> str:
    """The end of a refusal line: where the secret belongs instead."""
    return f"put it in the environment variable {name} or in a file named by {name}{FILE_SUFFIX}"


def url_password(url: str) -> str | None:
    """The password inside a URL (`scheme://user:password@host/...`), or None."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def with_password(url: str, password: str) -> str:
    """`url` (which names a user and no password) with `password` put in, percent-encoded."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def url_user(url: str) -> str | None:
    try:
        return urlsplit(url).username
    except ValueError:
        return None


def secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """Every way a secret can show up in a URL or a message: each character as itself or
    percent-encoded (either case, a space also as `+`), so no URL-encoded spelling escapes;
    longest secrets first so that no shorter one leaves part of a longer one behind."""
    forms = []
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        chars = []
        for char in secret:
            escapes = "".join(f"%{byte:02x}" for byte in char.encode())
            spelled = [re.escape(char), re.escape(escapes)] + ([r"\+"] if char == " " else [])
            chars.append(f"(?:{'|'.join(spelled)})")
        forms.append("".join(chars))
    return re.compile("|".join(forms), re.IGNORECASE) if forms else None


def redact_secrets(text: str, secrets: Iterable[str] | re.Pattern[str] | None) -> str:
    """`text` with every spelling of every secret (see `secret_pattern`) replaced by `***`."""
    pattern = secrets if isinstance(secrets, re.Pattern | None) else secret_pattern(secrets)
    return pattern.sub(MASK, text) if pattern is not None else text


def redact(text: str) -> str:
    """`text` without any secret this process has read, in any spelling."""
    return redact_secrets(text, _REMEMBERED.pattern)


class RedactedLogRecord(logging.LogRecord):
    """A log record whose message and traceback never show a secret, whoever logs it:
    installed for the whole process by `redact_logs`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.exc_info and self.exc_info[0] is not None:
            # formatted now, so every handler's formatter finds it done (and clean)
            self.exc_text = redact(_TRACEBACKS.formatException(self.exc_info))

    def getMessage(self) -> str:
        return redact(super().getMessage())


_TRACEBACKS = logging.Formatter()


def redact_logs() -> None:
    """Make every log record of this process go through `redact`."""
    logging.setLogRecordFactory(RedactedLogRecord)
