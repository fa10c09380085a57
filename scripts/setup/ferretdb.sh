#!/usr/bin/env bash
# FerretDB 1.x (a MongoDB wire-protocol server) for the MongoDB store tests: our own small main
# over FerretDB's embeddable package with its SQLite backend (scripts/ferretdb/), built with Go
# from the Go module proxy into a cache outside git. Rebuilt only when scripts/ferretdb/ changes;
# prints nothing more when the binary is in place. tests/servers/ferretdb.py finds it at the
# same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=scripts/ferretdb

version=$(sed -n 's:^require github.com/FerretDB/FerretDB \(v[^ ]*\).*:\1:p' "$src/go.mod")
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/ferretdb-${version#v}"
sum=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$out/ferretdb-for-tests" ] && [ "$(cat "$out/.source-sha256" 2>/dev/null)" = "$sum" ]; then
    exit 0
fi
# FerretDB 1.24 needs Go >= 1.24: GOTOOLCHAIN=auto fetches it when scripts/go.sh's Go is older.
go=$(bash scripts/go.sh)
echo "building FerretDB ${version} (SQLite backend) into ${out}"
mkdir -p "$out"
(cd "$src" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 \
    "$go" build -mod=readonly -trimpath -o "$out/ferretdb-for-tests" .)
echo "$sum" >"$out/.source-sha256"
