#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the dashboard's browser tests (tests/serve/dashboard/).
# Playwright drives /usr/bin/chromium directly: no tool ever downloads a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh chromium chromium-driver fonts-dejavu-core
