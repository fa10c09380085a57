"""What a test does when a real server it needs is missing: skip locally, fail in CI."""

from __future__ import annotations

import os

import pytest


def server_missing(what: str) -> None:
    """Skip the test on a developer's quick run; fail it when TICKPIPE_REQUIRE_SERVERS is set
    (CI), so a broken install can never pass as skipped tests."""
    if os.environ.get("TICKPIPE_REQUIRE_SERVERS"):
        pytest.fail(f"{what} (TICKPIPE_REQUIRE_SERVERS is set, so this fails instead of skipping)")
    pytest.skip(what)
