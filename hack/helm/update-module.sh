#!/usr/bin/env bash
# Regenerates the wrapper Go module for HELM_VERSION in versions.env. Run by
# hand when bumping the version; commit go.mod and go.sum so ordinary builds
# need only the module proxy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cd "$here"
gomod_path="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
rm -f go.mod go.sum
printf 'module machinepool-controller.invalid/hack/helm\n\n%s\n' "$(grep -E '^go ' "$gomod_path")" > go.mod
go get "helm.sh/helm/v3@${HELM_VERSION}"
go mod tidy
