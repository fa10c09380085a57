#!/usr/bin/env bash
# Install tickpipe into ./.venv and start it. Arguments go to `tickpipe` (default: `run`).
#   scripts/run.sh              live: Binance BTC-USDT, ETH-USDT and Coinbase BTC-USD, ETH-USD
#   scripts/run.sh demo         simulated market, no network
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
if [ "$#" -eq 0 ]; then set -- run; fi
exec .venv/bin/tickpipe "$@"
