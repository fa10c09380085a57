"""Why a server turned a store's client away for good, in tickpipe's words: a login it refuses,
a certificate the client does not trust, a TLS handshake that fails. Such a failure is one
line at once, never retried for `store_retry_for`: no retry makes a wrong password right or a
certificate trusted. The server's own text is left out of the line.

The drivers pass TLS failures on as text (an OSError's, or their own error's), so the words of
Python's ssl module are read out of it.
"""

from __future__ import annotations

import re

from tickpipe.credentials import FILE_SUFFIX, STORE_PASSWORD_ENV

_CERT_REFUSED = re.compile(r"certificate verify failed: ([^(]+?) *(?:\(_ssl|$)")
# A connection cut in mid-handshake (UNEXPECTED_EOF_WHILE_READING) is a server going away, as
# in a restart, and is retried; the other handshake failures are a mismatch that stays.
_TLS_FAILED = re.compile(r"\[SSL: (?![A-Z_]*EOF)([A-Z_]+)\]")


def login_refused(user: str | None, url_form: str) -> str:
    """The line for a login the server refuses (`url_form`: the store's URL with a user)."""
    if not user:
        return (
            f"the server requires a login: name a user in the URL ({url_form}) and set "
            f"{STORE_PASSWORD_ENV}"
        )
    return (
        f"authentication failed for user {user}: wrong user or password (the password comes "
        f"from {STORE_PASSWORD_ENV} or {STORE_PASSWORD_ENV}{FILE_SUFFIX})"
    )


def tls_refused(text: str, ca_option: str, ca: str | None) -> str | None:
    """The line for a certificate `ca` (the file of the URL's `ca_option`) does not trust or a
    failed TLS handshake, read from a driver's error `text`; None when it is neither."""
    verify = _CERT_REFUSED.search(text)
    if verify:
        trusted = f"{ca_option}={ca}" if ca else "the system's CAs"
        return f"the server's TLS certificate is not trusted by {trusted} ({verify[1]})"
    handshake = _TLS_FAILED.search(text)
    if handshake:
        return f"TLS handshake failed ({handshake[1].lower().replace('_', ' ')})"
    return None


def tls_required(how: str) -> str:
    """The line for a client without TLS the server cut off at once (`how`: the URL options
    that turn TLS on)."""
    return f"the server closed the connection at once: it may require TLS (add {how} to the URL)"
