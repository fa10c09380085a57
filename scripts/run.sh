#!/usr/bin/env bash
# Install tickpipe into ./.venv (once: scripts/install.sh) and start it. Arguments go to
# `tickpipe` (default: `run`).
#   scripts/run.sh              live: Binance BTC-USDT, ETH-USDT and Coinbase BTC-USD, ETH-USD
#   scripts/run.sh demo         simulated market, no network
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
if [ "$#" -eq 0 ]; then set -- run; fi
exec .venv/bin/tickpipe "$@"
