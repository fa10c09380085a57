"""Why PostgreSQL refused a connection, in plain words, when trying again cannot help.

libpq tells a client why it could not connect in text only (no SQLSTATE reaches a client that
has no session yet), so the causes are read off its messages: a wrong or missing password, a
server certificate the client does not trust or that names another host, a server without TLS
when `sslmode` requires it, a pg_hba.conf with no line for this connection. Each is a setting
to fix, not a server that went away: the store fails at once with the line instead of retrying
for `store_retry_for`. None of them carries the password.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Settings = Mapping[str, str]  # the connection's `sslmode` and `sslrootcert`, when given
_Cause = Callable[[re.Match[str], Settings], str]


def _rootcert(settings: Settings) -> str:
    return settings.get("sslrootcert") or "~/.postgresql/root.crt, libpq's default"


def _sslmode(settings: Settings) -> str:
    return settings.get("sslmode") or "prefer"


def _no_entry(match: re.Match[str], settings: Settings) -> str:
    host, user, database, encryption = match.groups()
    if encryption == "no encryption":
        return (
            f"the server takes no connection without TLS from {host} for user {user} "
            f"(pg_hba.conf), and sslmode={_sslmode(settings)} did not ask for TLS; "
            "use sslmode=verify-full"
        )
    return f"the server's pg_hba.conf lets in no connection from {host} for {user} to {database}"


_CAUSES: list[tuple[re.Pattern[str], _Cause]] = [
    (
        re.compile(r'password authentication failed for user "([^"]*)"'),
        lambda m, _: f"password authentication failed for user {m[1]}",
    ),
    (
        re.compile(r"fe_sendauth: no password supplied"),
        lambda m, _: (
            "the server asks for a password and none was given "
            "(set TICKPIPE_STORE_PASSWORD or TICKPIPE_STORE_PASSWORD_FILE)"
        ),
    ),
    (
        re.compile(r"certificate verify failed"),
        lambda m, s: f"the server's certificate is not trusted (sslrootcert {_rootcert(s)})",
    ),
    (
        re.compile(r'server certificate for "[^"]*".* does not match host name "([^"]*)"'),
        lambda m, s: (
            f"the server's certificate does not carry the name {m[1]} "
            f"(sslmode={_sslmode(s)} checks it)"
        ),
    ),
    (
        re.compile(r"server does not support SSL, but SSL was required"),
        lambda m, s: f"the server does not offer TLS but sslmode={_sslmode(s)} requires it",
    ),
    (
        re.compile(r'root certificate file "([^"]*)" does not exist'),
        lambda m, s: (
            f"sslrootcert file {m[1]} does not exist (sslmode={_sslmode(s)} needs the "
            "certificate of the authority that signed the server's)"
        ),
    ),
    (
        re.compile(
            r'no pg_hba.conf entry for host "([^"]*)", user "([^"]*)", database "([^"]*)", '
            r"(no encryption|[^\n]*)"
        ),
        _no_entry,
    ),
]


def refusal(message: str, settings: Settings) -> str | None:
    """The plain cause of a refused connection, from libpq's `message`, or None when the
    failure may pass (the server is down or restarting, the network is out)."""
    for pattern, cause in _CAUSES:
        match = pattern.search(message)
        if match:
            return cause(match, settings)
    return None
