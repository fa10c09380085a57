#!/usr/bin/env bash
# Install the named Debian packages if any is missing (idempotent; quiet when all are there).
# Used by scripts/setup/*.sh. Needs root or sudo, as on a fresh CI machine.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Other installs may hold dpkg's lock for a while: wait for it rather than fail.
APT=(apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3 -y -q)
$SUDO "${APT[@]}" update >/dev/null
$SUDO "${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
