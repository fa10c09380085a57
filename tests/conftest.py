"""Fixtures shared by every test directory: the real servers the tests start (tests/servers/)."""

pytest_plugins = [
    "servers.kafka",
    "servers.postgres",
]
