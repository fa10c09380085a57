#!/usr/bin/env bash
# FerretDB 1.x (a MongoDB wire-protocol server) for the MongoDB store tests: our own small main
# over FerretDB's embeddable package with its SQLite backend (scripts/ferretdb/), built with Go
# from the Go module proxy into a cache outside git. Beside it, FerretDB's own command (go.mod's
# `tool` line) for the secured-server tests: TLS and its experimental SCRAM authentication, which
# the embeddable package cannot switch on. Rebuilt only when scripts/ferretdb/ changes; prints
# nothing more when both binaries are in place. tests/servers/ferretdb.py finds them there.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=scripts/ferretdb

version=$(sed -n 's:^require github.com/FerretDB/FerretDB \(v[^ ]*\).*:\1:p' "$src/go.mod")
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/ferretdb-${version#v}"
sum=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$out/ferretdb-for-tests" ] && [ -x "$out/ferretdb" ] \
    && [ "$(cat "$out/.source-sha256" 2>/dev/null)" = "$sum" ]; then
    exit 0
fi
# FerretDB 1.24 needs Go >= 1.24: GOTOOLCHAIN=auto fetches it when scripts/go.sh's Go is older.
go=$(bash scripts/go.sh)
echo "building FerretDB ${version} (SQLite backend) into ${out}"
mkdir -p "$out"
(cd "$src" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 \
    "$go" build -mod=readonly -trimpath -o "$out/ferretdb-for-tests" .)
# FerretDB's command panics without the build/version/version.txt its release process writes
# (absent from the module proxy's copy, and files there cannot be overlaid): it is built from a
# copy of the module in the cache that has one, through a go.mod that points there.
module=$(cd "$src" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" "$go" list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
rm -rf "$out/module" "$out/build.mod" "$out/build.sum"
cp -r "$module" "$out/module"
chmod -R u+w "$out/module"
echo "$version" >"$out/module/build/version/version.txt"
cp "$src/go.mod" "$out/build.mod"
cp "$src/go.sum" "$out/build.sum"
(cd "$src" && export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 \
    && "$go" mod edit -modfile="$out/build.mod" -replace "github.com/FerretDB/FerretDB=$out/module" \
    && "$go" build -modfile="$out/build.mod" -trimpath -o "$out/ferretdb" \
        github.com/FerretDB/FerretDB/cmd/ferretdb)
echo "$sum" >"$out/.source-sha256"
