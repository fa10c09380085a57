#!/usr/bin/env bash
# actionlint, the GitHub Actions workflow checker (tests/release/ runs it on .github/workflows/),
# built with Go from the Go module proxy into a cache outside git. Prints nothing when the pinned
# version is in place. tests/release/ finds it at the same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.7.12
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/actionlint-${version}"
[ -x "$out/actionlint" ] && exit 0
go=$(bash scripts/go.sh)
echo "building actionlint ${version} into ${out}"
# actionlint's go.mod asks for Go 1.25: GOTOOLCHAIN=auto fetches it when the local Go is older.
(cd / && GOTOOLCHAIN=auto GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$out" \
    "$go" install -trimpath "github.com/rhysd/actionlint/cmd/actionlint@v${version}")
