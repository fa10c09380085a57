#!/usr/bin/env bash
# Install everything the tests need into ./.venv, then lint and run every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# System packages and servers the tests start (PostgreSQL, Kafka, Chromium, ...): one
# idempotent script each under scripts/setup/, which installs what is missing.
for setup in scripts/setup/*.sh; do
    [ -e "$setup" ] || continue
    echo "== setup: $(basename "$setup" .sh)"
    bash "$setup"
done
echo "== installing tickpipe with its test dependencies"
scripts/install.sh test  # once: again only when pyproject.toml changed
echo "== ruff"
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# In CI a test that cannot reach a server it needs fails instead of skipping.
export TICKPIPE_REQUIRE_SERVERS="${TICKPIPE_REQUIRE_SERVERS:-${CI:+1}}"
exec .venv/bin/python -m pytest "$@"
