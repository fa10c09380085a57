#!/usr/bin/env bash
# FerretDB 1.x (a MongoDB wire-protocol server) for the MongoDB store tests: our own small main
# over FerretDB's embeddable package with its SQLite backend (scripts/ferretdb/), built with Go
# from the Go module proxy into a cache outside git. Rebuilt only when scripts/ferretdb/ changes;
# prints nothing more when the binary is in place. tests/servers/ferretdb.py finds it at the
# same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=scripts/ferretdb
PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || bash scripts/apt-install.sh golang-go
# FerretDB 1.24 needs Go >= 1.24. Go >= 1.21 fetches that toolchain from the module proxy by
# itself (go.mod's go line); an older Go (Debian bookworm's golang-go is 1.19) cannot.
minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ "${minor:-0}" -lt 21 ]; then
    echo "ferretdb.sh: $(go env GOVERSION) is too old to build FerretDB 1.24 (needs Go >= 1.21" \
        "to fetch Go 1.24 from the module proxy); install a newer Go first" >&2
    exit 1
fi

version=$(sed -n 's:^require github.com/FerretDB/FerretDB \(v[^ ]*\).*:\1:p' "$src/go.mod")
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/ferretdb-${version#v}"
sum=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$out/ferretdb-for-tests" ] && [ "$(cat "$out/.source-sha256" 2>/dev/null)" = "$sum" ]; then
    exit 0
fi
echo "building FerretDB ${version} (SQLite backend) into ${out}"
mkdir -p "$out"
(cd "$src" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 \
    go build -mod=readonly -trimpath -o "$out/ferretdb-for-tests" .)
echo "$sum" >"$out/.source-sha256"
