"""Which driver errors are refusals (one line, never retried) and which a server going away."""

from __future__ import annotations

import ssl

from tickpipe.stores.refusals import login_refused, tls_refused


def ssl_text(error: ssl.SSLError) -> str:
    """The text a driver hands on: its own words around the ssl module's."""
    return f"Tried connecting to [('10.0.0.5', 9042)]. Last error: {error}"


def test_a_certificate_the_ca_does_not_trust_names_the_ca_file_and_why() -> None:
    error = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "in certificate chain (_ssl.c:1006)",
    )  # fmt: skip
    line = tls_refused(ssl_text(error), "tls_ca", "/etc/tickpipe/ca.pem")
    assert line is not None
    assert "tls_ca=/etc/tickpipe/ca.pem" in line and "self-signed certificate in" in line
    assert "_ssl.c" not in line
    assert "the system's CAs" in (tls_refused(ssl_text(error), "tlsCAFile", None) or "")


def test_a_handshake_cut_off_by_a_server_going_away_is_no_refusal() -> None:
    cut = ssl.SSLEOFError(8, "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of "
                          "protocol (_ssl.c:1006)")  # fmt: skip
    assert tls_refused(ssl_text(cut), "tls_ca", None) is None
    assert tls_refused("[Errno 111] Connection refused", "tls_ca", None) is None
    mismatch = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert "wrong version number" in (tls_refused(ssl_text(mismatch), "tls_ca", None) or "")


def test_a_refused_login_says_where_the_password_comes_from_or_that_a_user_is_missing() -> None:
    assert "TICKPIPE_STORE_PASSWORD_FILE" in login_refused("tickpipe", "scheme://user@host/db")
    assert "name a user in the URL (scheme://user@host/db)" in login_refused(
        None, "scheme://user@host/db"
    )
