#!/usr/bin/env bash
# kustomize v5 (the renderer of deploy/kubernetes/'s base and overlays) for tests/deploy/: built
# with Go from the Go module proxy (sigs.k8s.io/kustomize/kustomize/v5) into a cache outside
# git, once; prints nothing more when it is in place. Debian's kubernetes-client (1.20) embeds a
# kustomize too old for the overlays. tests/deploy/test_kubernetes.py finds the binary there.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=v5.5.0
out="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/kustomize-${version#v}"
if [ -x "$out/kustomize" ]; then
    exit 0
fi
go=$(bash scripts/go.sh)
echo "building kustomize ${version} into ${out}"
mkdir -p "$out"
GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 GOBIN="$out" \
    "$go" install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@${version}"
