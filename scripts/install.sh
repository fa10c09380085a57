#!/usr/bin/env bash
# Install tickpipe into ./.venv once: `scripts/install.sh` (the package), `scripts/install.sh test`
# (with the `[test]` extra). A stamp under .venv holds a hash of pyproject.toml and the extras
# installed, so a second call with nothing changed returns at once and works offline; a changed
# pyproject.toml (or an extra not installed yet) installs again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-}"
STAMP=.venv/.tickpipe-installed
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
hash="$(.venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml)"
# The stamp's line is "HASH EXTRAS"; an install without extras is covered by any install.
if [ -x .venv/bin/tickpipe ] && [ -f "$STAMP" ]; then
    read -r stamped_hash stamped_extras <"$STAMP" || true
    if [ "$stamped_hash" = "$hash" ] && { [ -z "$EXTRAS" ] || [ "${stamped_extras:-}" = "$EXTRAS" ]; }; then
        exit 0
    fi
fi
rm -f "$STAMP"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
echo "$hash $EXTRAS" >"$STAMP"
