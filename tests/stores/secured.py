"""`tickpipe` run as a user runs it against a secured store server: the password from the file
TICKPIPE_STORE_PASSWORD_FILE names, and what a refusal must look like (one line, no secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servers.certs import TlsFiles


def tickpipe(*args: str, password: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    """`tickpipe ARGS` in a subprocess; `password`, if any, in a secret file as Docker and
    Kubernetes hand it over (with a trailing newline, as `echo` writes it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_STORE_PASSWORD")}
    if password is not None:
        path = tmp_path / "store-password"
        path.write_text(password + "\n")
        env["TICKPIPE_STORE_PASSWORD_FILE"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        capture_output=True, text=True, timeout=240, check=False, env=env,
    )  # fmt: skip


def refusal_line(run: subprocess.CompletedProcess, *secrets: str) -> str:
    """The one line a refused run printed: non-zero exit, no traceback, no retry warnings,
    none of `secrets` anywhere."""
    assert run.returncode != 0, run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for secret in secrets:
        assert secret not in run.stdout + run.stderr
    return lines[0]


def demo_and_verify(url: str, password: str | None, tmp_path: Path) -> None:
    """`tickpipe demo` stores into `url` and `tickpipe verify` passes on it; neither prints
    the password."""
    run = tickpipe("demo", "--duration", "6", "--quiet", "--no-serve", "--store", url,
                   "--data-dir", str(tmp_path), "--interval", "1s",
                   password=password, tmp_path=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    check = tickpipe("verify", "--store", url, "--data-dir", str(tmp_path),
                     password=password, tmp_path=tmp_path)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    if password is not None:
        for text in (run.stdout, run.stderr, check.stdout, check.stderr):
            assert password not in text


# fault: (the TlsFiles attribute of the CA the client trusts, or None for no TLS; the password
# it sends instead of the right one; the words its line must hold, {ca_option} the store's)
FAULTS = {
    "wrong password": ("ca", "not-the-password", "authentication failed for user tickpipe"),
    "untrusted certificate": ("other_ca", None, "certificate is not trusted by {ca_option}="),
    "no TLS against the TLS-only port": (None, None, "may require TLS"),
}


def fault_case(
    fault: str, tls: TlsFiles, password: str, ca_option: str
) -> tuple[Path | None, str, str]:
    """The CA file (None: no TLS), the password and the words of the line, of one of FAULTS
    against a server with `tls` and the right `password` (`ca_option`: the store's name for
    its CA file)."""
    ca_name, wrong_password, words = FAULTS[fault]
    ca = getattr(tls, ca_name) if ca_name else None
    return ca, wrong_password or password, words.format(ca_option=ca_option)


def refused_demo(url: str, password: str, tmp_path: Path, *secrets: str) -> str:
    """The one line `tickpipe demo` refused with (see `refusal_line`)."""
    run = tickpipe("demo", "--duration", "6", "--quiet", "--no-serve", "--store", url,
                   "--data-dir", str(tmp_path), password=password, tmp_path=tmp_path)  # fmt: skip
    return refusal_line(run, password, *secrets)
