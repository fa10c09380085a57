#!/usr/bin/env bash
# Print the path of a `go` command that can build modules needing newer Go releases: Go >= 1.21
# fetches the toolchain a go.mod asks for from the Go module proxy by itself (GOTOOLCHAIN=auto).
# Installs Debian's golang-go when there is no Go at all. Debian bookworm's golang-go is 1.19,
# which cannot switch toolchains, so it only downloads Go BOOTSTRAP (a module on the proxy,
# golang.org/toolchain) into a cache outside git, once, and that one is used from then on.
# Used by scripts/setup/*.sh; messages go to stderr, the path alone to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bootstrap=1.25.0
PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
    bash scripts/apt-install.sh golang-go >&2 || {
        echo "go.sh: no Go found and Debian's golang-go could not be installed" >&2
        exit 1
    }
fi
minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ "${minor:-0}" -ge 21 ]; then
    command -v go
    exit 0
fi
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/go-${bootstrap}"
if [ ! -x "$out/bin/go" ]; then
    echo "$(go env GOVERSION) cannot fetch newer toolchains: downloading Go ${bootstrap} into ${out}" >&2
    module="golang.org/toolchain@v0.0.1-go${bootstrap}.$(go env GOOS)-$(go env GOARCH)"
    dir=$(cd / && go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$(dirname "$out")"
    rm -rf "$out.tmp"
    # The module cache keeps files read-only and drops their executable bits.
    cp -r --no-preserve=mode "$dir" "$out.tmp"
    chmod +x "$out.tmp"/bin/* "$out.tmp"/pkg/tool/*/*
    mv "$out.tmp" "$out"
fi
echo "$out/bin/go"
