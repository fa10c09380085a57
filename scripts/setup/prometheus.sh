#!/usr/bin/env bash
# Debian's prometheus package: promtool for `promtool check rules` / `promtool test rules`, and
# the server that tests/deploy/test_prometheus_server.py runs until the shipped alerts fire.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh prometheus
