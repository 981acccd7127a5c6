#!/usr/bin/env bash
# Builds kube-apiserver and etcd for tests from the wrapper modules beside this
# script, into a per-version cache directory outside the repository, and prints
# that directory (the value for KUBEBUILDER_ASSETS) on stdout.
#
# Invariants: a binary is only ever moved into the cache after a successful
# build (build to a temp name, then rename), so an interrupted build never
# leaves a half-written binary that later runs would trust. A second run with
# both binaries present does nothing.
#
# Failure: one line on stderr naming the cause, exit status 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
# The wrapper modules; overridable so tests can exercise a failing build quickly.
src="${MPC_ENVTEST_SRC:-$here}"

die() { echo "envtest: $*" >&2; exit 1; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in kube-apiserver etcd; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache_root="${MPC_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/machinepool-controller/envtest}"
dest="$cache_root/kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}"
mkdir -p "$dest" || die "cannot create cache directory $dest"

need=()
[ -x "$dest/kube-apiserver" ] || need+=(kube-apiserver)
[ -x "$dest/etcd" ] || need+=(etcd)
if [ ${#need[@]} -eq 0 ]; then echo "$dest"; exit 0; fi

command -v go >/dev/null 2>&1 || die "the Go toolchain (go) is not on PATH; it is needed once to build ${need[*]} (or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd)"

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
log="$dest/build.log"
: > "$log"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
for b in "${need[@]}"; do
  start=$(date +%s)
  echo "envtest: building $b (one-time, cached in $dest) ..." >&2
  case "$b" in
    kube-apiserver)
      ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
      pkg=k8s.io/kubernetes/cmd/kube-apiserver ;;
    etcd)
      ldflags="-s -w"
      pkg=go.etcd.io/etcd/server/v3 ;;
  esac
  if ! go build -C "$src/$b" -trimpath -ldflags "$ldflags" -o "$dest/.$b.tmp" "$pkg" >>"$log" 2>&1; then
    rm -f "$dest/.$b.tmp"
    die "building $b failed: $(grep -m1 -E 'error|cannot|go: ' "$log" || tail -n1 "$log") (full log: $log)"
  fi
  mv "$dest/.$b.tmp" "$dest/$b"
  echo "envtest: built $b in $(( $(date +%s) - start ))s" >&2
done
echo "$dest"
