#!/usr/bin/env bash
# actionlint, the GitHub Actions workflow checker (tests/release/ runs it on .github/workflows/),
# built with Go from the Go module proxy into a cache outside git, and Debian's shellcheck, which
# actionlint runs on each `run:` script. Prints nothing when both are in place. tests/release/
# finds actionlint at the same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.7.12
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/actionlint-${version}"
bash scripts/apt-install.sh shellcheck
[ -x "$out/actionlint" ] && exit 0
go=$(bash scripts/go.sh)
echo "building actionlint ${version} into ${out}"
# actionlint's go.mod asks for Go 1.25: GOTOOLCHAIN=auto fetches it when the local Go is older.
(cd / && GOTOOLCHAIN=auto GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$out" \
    "$go" install -trimpath "github.com/rhysd/actionlint/cmd/actionlint@v${version}")
