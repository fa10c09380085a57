#!/usr/bin/env bash
# PostgreSQL for the store tests: Debian's server package (bookworm: PostgreSQL 15). The tests
# start their own throwaway cluster from its binaries (tests/servers/postgres.py); the
# package's own cluster service is not needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh postgresql
