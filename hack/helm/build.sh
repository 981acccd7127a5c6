#!/usr/bin/env bash
# Builds helm for the chart tests from the wrapper module beside this script,
# into a per-version cache directory outside the repository, and prints the
# path of the helm binary on stdout.
#
# Invariants: the binary is moved into the cache only after a successful build
# (build to a temporary name, then rename), so an interrupted build never
# leaves a half-written binary that later runs would trust. A second run with
# the binary present does nothing. MPC_HELM=/path/to/helm uses that binary
# instead (it must be helm v3).
#
# Failure: one line on stderr naming the cause, exit status 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

die() { echo "helm: $*" >&2; exit 1; }

if [ -n "${MPC_HELM:-}" ]; then
  [ -x "$MPC_HELM" ] || die "MPC_HELM=$MPC_HELM is not an executable"
  echo "$MPC_HELM"
  exit 0
fi

cache_root="${MPC_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/machinepool-controller/helm}"
dest="$cache_root/helm-${HELM_VERSION}"
mkdir -p "$dest" || die "cannot create cache directory $dest"
if [ -x "$dest/helm" ]; then echo "$dest/helm"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain (go) is not on PATH; it is needed once to build helm (or set MPC_HELM to a helm v3 binary)"

log="$dest/build.log"
: > "$log"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
start=$(date +%s)
echo "helm: building helm ${HELM_VERSION} (one-time, cached in $dest) ..." >&2
# As helm's own Makefile: the default Kubernetes version for `helm template` and lint
# follows the client-go the binary is built with (v0.Y.Z means Kubernetes 1.Y).
client_go="$(go list -C "$here" -m -f '{{.Version}}' k8s.io/client-go)" || die "cannot read the client-go version of $here/go.mod"
kminor="$(echo "$client_go" | cut -d. -f2)"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${kminor}"
done
if ! go build -C "$here" -trimpath -ldflags "$ldflags" -o "$dest/.helm.tmp" helm.sh/helm/v3/cmd/helm >>"$log" 2>&1; then
  rm -f "$dest/.helm.tmp"
  die "building helm failed: $(grep -m1 -E 'error|cannot|go: ' "$log" || tail -n1 "$log") (full log: $log)"
fi
mv "$dest/.helm.tmp" "$dest/helm"
echo "helm: built helm in $(( $(date +%s) - start ))s" >&2
echo "$dest/helm"
