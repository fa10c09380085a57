"""Fixtures shared by every test directory: the real servers the tests start (tests/servers/)."""

import os

pytest_plugins = [
    "servers.cassandra",
    "servers.chromium",
    "servers.ferretdb",
    "servers.kafka",
    "servers.postgres",
    "servers.s3",
]

# Every `tickpipe run`/`demo` a test starts serves its API on a free port, never the default
# 8050 a developer's own demo (or another test run) may hold. Tests that need a port ask for one.
os.environ.setdefault("TICKPIPE_SERVE_PORT", "0")
