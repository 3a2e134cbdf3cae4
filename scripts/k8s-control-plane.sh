#!/usr/bin/env bash
# Builds the local single-node Kubernetes (tests/kubernetes/, `make up-kubernetes`) from Go modules,
# into a cache outside the repo, and nothing twice:
#
#   ${AEVATAR_K8S_CACHE:-~/.cache/aevatar-sandbox/k8s}/<k8s version>/bin/
#       kube-apiserver  kube-controller-manager  kube-scheduler  kubelet  kubectl  etcd
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api => ./staging/src/k8s.io/api, ...), so
# `go install k8s.io/kubernetes/cmd/...@v1.x` is refused. A throw-away module requires
# k8s.io/kubernetes and replaces every staging module with its published v0.<minor>.<patch>; the list
# is read from that version's own go.mod. etcd is built the same way, at the version Kubernetes pins.
#
# Usage: scripts/k8s-control-plane.sh [--print-bin-dir]
# Env:   AEVATAR_K8S_VERSION (default v1.36.3), AEVATAR_K8S_CACHE, AEVATAR_K8S_BUILD_JOBS (go build -p, default 1)
# Exit:  0 when the six binaries are in the cache; non-zero with a message on stderr otherwise.
set -euo pipefail

K8S_VERSION=${AEVATAR_K8S_VERSION:-v1.36.3}
CACHE_ROOT=${AEVATAR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aevatar-sandbox/k8s}
JOBS=${AEVATAR_K8S_BUILD_JOBS:-1}
DIR="$CACHE_ROOT/$K8S_VERSION"
BIN="$DIR/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd)

say() { echo "k8s-control-plane: $*" >&2; }

if [ "${1:-}" = "--print-bin-dir" ]; then
  echo "$BIN"
  exit 0
fi

complete() {
  [ -f "$DIR/.complete" ] || return 1
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

if complete; then
  say "$K8S_VERSION control plane cached in $BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  say "cannot build: the go tool is not on PATH (Go >= 1.26 is needed to build Kubernetes $K8S_VERSION)"
  exit 2
fi

mkdir -p "$DIR"
# One build at a time per version: a second caller waits for the first and then finds the cache.
exec 9>"$DIR/.lock"
flock 9
if complete; then
  say "$K8S_VERSION control plane cached in $BIN (built by a concurrent run)"
  exit 0
fi

started=$(date +%s)
say "building Kubernetes $K8S_VERSION (control plane and node) into $BIN (go build -p $JOBS; cold: about 15 minutes on 2 cores)"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOTOOLCHAIN=local

# --- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl --------------------
src="$DIR/src/kubernetes"
rm -rf "$src"
mkdir -p "$src" "$BIN"
if ! gomod_json=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>&1); then
  say "cannot download k8s.io/kubernetes@$K8S_VERSION through the Go module proxy ($(go env GOPROXY)):"
  printf '%s\n' "$gomod_json" | grep -i '"Error"\|error' >&2 || printf '%s\n' "$gomod_json" >&2
  exit 3
fi
upstream_mod=$(printf '%s\n' "$gomod_json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
if [ -z "$upstream_mod" ] || [ ! -f "$upstream_mod" ]; then
  say "cannot read the go.mod of k8s.io/kubernetes@$K8S_VERSION from the module proxy"
  exit 3
fi
staging_version="v0.${K8S_VERSION#v1.}"
go_directive=$(sed -n 's/^go \(.*\)$/\1/p' "$upstream_mod" | head -n1)
etcd_version=$(sed -n 's#^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[0-9.]*\).*#\1#p' "$upstream_mod" | head -n1)
{
  echo "module aevatar.local/k8s-control-plane"
  echo
  echo "go $go_directive"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$upstream_mod" |
    while read -r module; do echo "	$module => $module $staging_version"; done
  echo ")"
} > "$src/go.mod"
say "$(grep -c "=> k8s.io/" "$src/go.mod") staging modules replaced by their published $staging_version"
(
  cd "$src"
  cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
  pkgs=()
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
  go get -tool "${pkgs[@]}"
  # Only what is missing: a cache from before the node binaries existed keeps its control plane.
  todo=()
  for c in "${cmds[@]}"; do [ -x "$BIN/$c" ] || todo+=("k8s.io/kubernetes/cmd/$c"); done
  go build -p "$JOBS" -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
    -o "$BIN/" "${todo[@]}"
)
say "kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl built after $(($(date +%s) - started))s"

# --- etcd, at the version Kubernetes pins -------------------------------------------------------
etcd_version=${AEVATAR_ETCD_VERSION:-${etcd_version:-v3.6.8}}
esrc="$DIR/src/etcd"
rm -rf "$esrc"
mkdir -p "$esrc"
[ -x "$BIN/etcd" ] || (
  cd "$esrc"
  printf 'module aevatar.local/etcd\n\ngo %s\n' "$go_directive" > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@$etcd_version"
  go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
)
say "etcd $etcd_version built"

for b in "${BINARIES[@]}"; do
  if [ ! -x "$BIN/$b" ]; then
    say "build finished without $BIN/$b"
    exit 4
  fi
done
printf 'kubernetes=%s\netcd=%s\nbuild_seconds=%s\n' "$K8S_VERSION" "$etcd_version" "$(($(date +%s) - started))" \
  > "$DIR/.complete"
rm -rf "$DIR/src"
say "control plane ready in $BIN after $(($(date +%s) - started))s"
