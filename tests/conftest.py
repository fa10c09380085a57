"""Fixtures shared by every test directory: the real servers the tests start (tests/servers/)."""

import os
from collections.abc import Iterator

import pytest

from tickpipe.credentials import forget_all

pytest_plugins = [
    "servers.cassandra",
    "servers.ferretdb",
    "servers.kafka",
    "servers.postgres",
    "servers.s3",
]

# Every `tickpipe run`/`demo` a test starts serves its API on a free port, never the default
# 8050 a developer's own demo (or another test run) may hold. Tests that need a port ask for one.
os.environ.setdefault("TICKPIPE_SERVE_PORT", "0")


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts as a fresh tickpipe process does, remembering no secret: a short dummy
    secret of one test must not blank out the text another test checks."""
    yield
    forget_all()
