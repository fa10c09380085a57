"""tickpipe over a secured PostgreSQL as a user configures it: the store URL names the user and
`sslmode=verify-full` with the authority's certificate, the password comes from the file named
by TICKPIPE_STORE_PASSWORD_FILE. `demo` then `verify` pass over TLS (the server says so), and a
refused connection ends the command with one line naming the cause and no password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from servers.postgres import SecuredPostgres

pytestmark = [pytest.mark.slow, pytest.mark.secured]

TICKPIPE = [sys.executable, "-m", "tickpipe"]
WAIT_S = 60


def environment(password_file: Path) -> dict[str, str]:
    """The caller's environment without tickpipe's settings, plus the store's password file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    return {**env, "TICKPIPE_STORE_PASSWORD_FILE": str(password_file), "PYTHONUNBUFFERED": "1"}


def password_file(directory: Path, password: str) -> Path:
    path = directory / "store-password"
    path.write_text(password + "\n")  # as `echo` or an editor leaves it
    path.chmod(0o600)
    return path


def tickpipe(*args: str, password: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TICKPIPE, *args], capture_output=True, text=True, timeout=120, check=False,
        env=environment(password),
    )  # fmt: skip


def tls_connections(db: SecuredPostgres, proc: subprocess.Popen) -> list[tuple]:
    """(ssl, version) of tickpipe's connections to `db`, once it has some."""
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(db.server.dsn, autocommit=True) as admin:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            rows = admin.execute(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                "WHERE a.usename = %s AND a.datname = %s AND a.application_name = 'tickpipe'",
                [db.user, db.database],
            ).fetchall()
            if rows:
                return rows
            time.sleep(0.2)
    raise AssertionError(f"tickpipe did not connect to {db.database} within {WAIT_S}s")


def one_line_error(run: subprocess.CompletedProcess, secret: str) -> str:
    """The single stderr line of a command the store refused (it names no password)."""
    assert run.returncode != 0, run.stdout
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr and secret not in run.stderr + run.stdout
    return lines[0]


def test_demo_then_verify_over_tls_with_the_password_from_a_file(
    secured_database: SecuredPostgres, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, secured_database.password)
    demo = subprocess.Popen(
        [*TICKPIPE, "demo", "--duration", "6", "--quiet", "--no-serve",
         "--store", secured_database.url(), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(secret),
    )  # fmt: skip
    try:
        connections = tls_connections(secured_database, demo)
        out, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 0, err
    assert all(ssl and version.startswith("TLS") for ssl, version in connections), connections
    assert secured_database.password not in out + err

    check = tickpipe("verify", "--store", secured_database.url(), password=secret)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 mismatches, 0 duplicate trades" in check.stdout
    assert secured_database.password not in check.stdout + check.stderr


def test_a_wrong_password_ends_verify_with_one_line(
    secured_database: SecuredPostgres, tmp_path: Path
) -> None:
    wrong = "wrong-Pa55word"
    run = tickpipe(
        "verify", "--store", secured_database.url(), password=password_file(tmp_path, wrong)
    )
    line = one_line_error(run, wrong)
    assert line.endswith(": password authentication failed for user tickpipe")
    assert f"postgresql://tickpipe@127.0.0.1:{secured_database.port}/" in line


def test_an_untrusted_certificate_ends_demo_with_one_line(
    secured_database: SecuredPostgres, tmp_path: Path
) -> None:
    other_ca = secured_database.tls.other_ca
    run = tickpipe(
        "demo", "--duration", "2", "--quiet", "--no-serve", "--data-dir", str(tmp_path / "data"),
        "--store", secured_database.url(rootcert=other_ca),
        password=password_file(tmp_path, secured_database.password),
    )  # fmt: skip
    line = one_line_error(run, secured_database.password)
    assert line.endswith(f": the server's certificate is not trusted (sslrootcert {other_ca})")
