#!/usr/bin/env bash
# Install everything the tests need into ./.venv, then lint and run every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
echo "== installing tickpipe with its test dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
echo "== ruff"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
echo "== pytest"
# In CI a test that cannot reach a server it needs fails instead of skipping.
export TICKPIPE_REQUIRE_SERVERS="${TICKPIPE_REQUIRE_SERVERS:-${CI:+1}}"
exec .venv/bin/python -m pytest "$@"
