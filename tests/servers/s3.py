"""A real S3 endpoint for the data lake tests: moto's server (moto[server] from PyPI).

moto_server runs as a child process on a free 127.0.0.1 port for the whole test session,
holding its buckets in memory. Tests reach it as the lake will: pyarrow's S3FileSystem with
`endpoint_override`, plain HTTP, any credentials. Each test that wants a bucket gets a fresh one
(`s3_bucket`), emptied and removed afterwards.
"""

from __future__ import annotations

import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyarrow import fs

from servers.process import ServerProcess, free_port, serving
from servers.require import server_missing

REGION = "us-east-1"
# moto takes any key; these only make requests signed the way a real S3 expects.
ACCESS_KEY = "tickpipe-test"
SECRET_KEY = "tickpipe-test"


class S3Server(ServerProcess):
    """One moto server: `endpoint` (host:port for endpoint_override), `filesystem()`."""

    name = "moto_server"
    start_timeout_s = 60.0  # importing moto's Flask app takes a few seconds on a busy machine

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        super().__init__(cmd, root / "moto.log", cwd=root)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def filesystem(self) -> fs.S3FileSystem:
        """pyarrow's S3 client on this server, allowed to create and delete buckets."""
        return fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            scheme="http",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3 endpoint, started once; skipped (or failed in CI) when not installed."""
    try:
        import flask  # noqa: F401  (moto's server extra)
        import moto.server  # noqa: F401
    except ImportError:
        server_missing("moto[server] is not installed (pip install -e '.[test]')")
    # The AWS SDK inside pyarrow must never ask the cloud's metadata address for a region or
    # credentials: this machine reaches nothing beyond loopback.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    server = S3Server(tmp_path_factory.mktemp("s3"))
    with serving(server):
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """The name of a fresh, empty bucket on the session's endpoint; removed after the test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3 = s3_server.filesystem()
    s3.create_dir(name)
    try:
        yield name
    finally:
        s3.delete_dir(name)
