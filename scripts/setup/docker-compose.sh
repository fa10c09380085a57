#!/usr/bin/env bash
# Debian's docker-compose, only to validate deploy/docker-compose.yml (`config -q`): no engine.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh docker-compose
