#!/usr/bin/env bash
# promtool (Debian's prometheus package) for `promtool check rules` / `promtool test rules`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh prometheus
