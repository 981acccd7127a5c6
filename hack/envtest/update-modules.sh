#!/usr/bin/env bash
# Regenerates the two wrapper Go modules (kube-apiserver/, etcd/) for the
# versions in versions.env. Run by hand when bumping a version; commit the
# resulting go.mod and go.sum so ordinary builds need only the module proxy.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every
# staging module at v0.0.0 and relies on replace directives, which are
# ignored in a dependency. A main module that replaces each staging module
# with its published v0.Y.Z tag builds it unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
patch="${KUBE_VERSION##*.}"
staging_version="v0.${minor}.${patch}"

gomod_path="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
go_line="$(grep -E '^go ' "$gomod_path")"
godebug_line="$(grep -E '^godebug ' "$gomod_path" || true)"

cd "$here/kube-apiserver"
rm -f go.mod go.sum
{
  echo "module machinepool-controller.invalid/hack/envtest/kube-apiserver"
  echo
  echo "$go_line"
  [ -n "$godebug_line" ] && echo "$godebug_line"
  echo
  echo "replace ("
  grep -E '=> \./staging/src/' "$gomod_path" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
go get "k8s.io/kubernetes@${KUBE_VERSION}"
go mod edit -require="k8s.io/kubernetes@${KUBE_VERSION}"
cat > tools.go <<'GO'
//go:build tools

// Package tools pins the kube-apiserver main package so `go mod tidy` keeps
// its dependencies.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod tidy

cd "$here/etcd"
rm -f go.mod go.sum
printf 'module machinepool-controller.invalid/hack/envtest/etcd\n\ngo 1.24\n' > go.mod
cat > tools.go <<'GO'
//go:build tools

// Package tools pins the etcd server main package so `go mod tidy` keeps its
// dependencies.
package tools

import _ "go.etcd.io/etcd/server/v3"
GO
go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
go mod tidy
