#!/usr/bin/env bash
# Builds what a `runsc` (gVisor) RuntimeClass needs on the local node, from Go modules, into a cache
# outside the repo, and nothing twice:
#
#   ${AEVATAR_K8S_CACHE:-~/.cache/aevatar-sandbox/k8s}/gvisor/<gvisor>_containerd-<version>/bin/
#       runsc  containerd-shim-runsc-v1           (gvisor.dev/gvisor, pinned pseudo-version)
#       containerd  ctr  containerd-shim-runc-v2  (github.com/containerd/containerd/v2, pinned)
#
# Why a containerd of its own (notes/kubernetes-node.md, section gVisor): Debian's runsc package has
# no containerd-shim-runsc-v1, and the current shim speaks the newer shim bootstrap protocol (it
# prints its address as JSON), which Debian's containerd 1.6 cannot parse. containerd 2.x can.
#
# Measured on this machine kind (2-core Firecracker VM, kernel 6.18, cgroup v1, root without
# CAP_SYS_RESOURCE), with containerd 2.4.2 and this gVisor:
# - runsc runs here with platform systrap (no KVM needed): python3.11 in the runner image under
#   `ctr run --runtime io.containerd.runsc.v1` and in a CRI pod (crictl runp --runtime runsc) prints
#   uname 4.19.0-gvisor; exit codes and container logs come back; runc still works beside it.
# - The unpatched shim cannot start: it sets its own oom_score_adj to the constant -999, and no
#   process here may go below 0 ("failed to set OOM Score on shim: write /proc/N/oom_score_adj:
#   permission denied"). Raising containerd's score does not help (the constant does not depend on
#   it), so the shim is built with that constant set to 0 (patch_gvisor_shim below).
# - Without CRI annotations (plain `ctr run`) the shim takes the container for a non-root one,
#   runs `runsc create` with its output captured, the sandbox inherits that pipe, and the create
#   never returns (ctr hangs, the container stays "created"). Add
#   `--annotation io.kubernetes.cri.container-type=sandbox` to ctr run; the CRI sets it itself.
# - Container memory limits are not enforced per container under runsc (a 256 MiB-limited container
#   allocated 400 MiB): the sandbox lives in the pod's cgroup, which the kubelet limits.
#
# Usage: scripts/k8s-gvisor.sh                         build (or find cached), print nothing on stdout
#        scripts/k8s-gvisor.sh --print-bin-dir         the bin dir above
#        scripts/k8s-gvisor.sh --print-containerd-config STATE PAUSE_IMAGE [CNI_CONF_DIR]
#                                                      a containerd 2.x config (version 3) with CRI
#                                                      runtimes runc and runsc; runsc's own config
#                                                      (platform systrap) is written to
#                                                      STATE/runsc.toml by --write-runsc-config STATE
#        scripts/k8s-gvisor.sh --write-runsc-config STATE
# Env:   AEVATAR_K8S_CACHE, AEVATAR_K8S_BUILD_JOBS (go build -p, default 1)
# Exit:  0 when the five binaries are in the cache; non-zero with a message on stderr otherwise.
set -euo pipefail

# Pinned. gVisor publishes no tagged Go module releases: the proxy's @latest is a pseudo-version of
# its Go branch (branch queries are refused), so the exact pseudo-version is pinned here.
GVISOR_VERSION=v0.0.0-20260905035102-160fafc42237
CONTAINERD_VERSION=v2.4.2

CACHE_ROOT=${AEVATAR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aevatar-sandbox/k8s}
JOBS=${AEVATAR_K8S_BUILD_JOBS:-1}
# The shim is built with one change (below); its number is part of the cache key.
SHIM_PATCH=oom0
DIR="$CACHE_ROOT/gvisor/${GVISOR_VERSION}-$SHIM_PATCH"_containerd-"$CONTAINERD_VERSION"
BIN="$DIR/bin"
BINARIES=(runsc containerd-shim-runsc-v1 containerd ctr containerd-shim-runc-v2)

say() { echo "k8s-gvisor: $*" >&2; }

# runsc's own configuration, read by the shim (ConfigPath in the runtime options): runsc by its
# absolute path (not whatever runsc is on PATH, e.g. Debian's), its state under STATE/runsc (not the
# default /run/containerd/runsc, shared by every containerd on the host), and the platform. systrap
# needs no KVM (none in this Firecracker VM); it is gVisor's default platform. oci-seccomp: runsc
# ignores the pod's seccomp profile by default (the Sentry has its own host filter); with it the
# RuntimeDefault profile the restricted pods ask for also filters the program inside the sandbox
# (/proc/self/status Seccomp 2 there, as under runc).
runsc_config() {
  cat <<EOF
# containerd-shim-runsc-v1 configuration (ConfigPath of the runsc runtime's options)
binary_name = "$BIN/runsc"
root = "$1/runsc"

[runsc_config]
  platform = "systrap"
  oci-seccomp = "true"
EOF
}

# A containerd 2.x configuration (version 3) for the node: CRI with runc (the default) and runsc.
# STATE is containerd's own directory (root, state, socket, runsc.toml); PAUSE_IMAGE the local pause
# tag. Facts it rests on (measured on this machine kind):
# - root lacks CAP_SYS_RESOURCE: restrict_oom_score_adj = true, or runc fails to set the container's
#   oom_score_adj below containerd's own;
# - containerd-shim-runc-v2 sets its own oom_score_adj to containerd's + 1 and the patched runsc shim
#   to 0: containerd must run at 0 (what the shells here have; a score can always be raised,
#   `echo 0 > /proc/self/oom_score_adj` in a wrapper before exec, never lowered);
# - containerd 2.4 migrates version 3 on load (a warning; `containerd config migrate` prints v4);
# - containerd's CRI needs eth0 with an IP in the pod: bridge + host-local CNI conflist in CNI_CONF_DIR;
# - the shims (containerd-shim-runc-v2, containerd-shim-runsc-v1) are looked up on containerd's
#   PATH: put this script's bin dir first (runc is Debian's /usr/bin/runc; runsc is named by its
#   absolute path in runsc.toml, so write that too: --write-runsc-config STATE);
# - the kubelet names the runtime in a RuntimeClass: `handler: runsc`;
# - runsc's CRI pods need no extra CNI setup: the sandbox uses the pod's netns (eth0 from the bridge).
containerd_config() {
  local state=$1 pause_image=$2 cni_conf_dir=${3:-$1/cni/net.d}
  cat <<EOF
version = 3
root = "$state/root"
state = "$state/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$state/containerd.sock"

[ttrpc]
  address = "$state/containerd.sock.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$pause_image"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$state/runsc.toml"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$cni_conf_dir"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
EOF
}

case "${1:-}" in
  --print-bin-dir)
    echo "$BIN"
    exit 0
    ;;
  --print-containerd-config)
    [ $# -ge 3 ] || { echo "usage: $0 --print-containerd-config STATE PAUSE_IMAGE [CNI_CONF_DIR]" >&2; exit 2; }
    containerd_config "$2" "$3" "${4:-}"
    exit 0
    ;;
  --write-runsc-config)
    [ $# -ge 2 ] || { echo "usage: $0 --write-runsc-config STATE" >&2; exit 2; }
    mkdir -p "$2"
    runsc_config "$2" >"$2/runsc.toml"
    echo "$2/runsc.toml"
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: $0 [--print-bin-dir | --print-containerd-config STATE PAUSE_IMAGE [CNI_CONF_DIR] | --write-runsc-config STATE]" >&2
    exit 2
    ;;
esac

complete() {
  [ -f "$DIR/.complete" ] || return 1
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

if complete; then
  say "gVisor $GVISOR_VERSION and containerd $CONTAINERD_VERSION cached in $BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  say "cannot build: the go tool is not on PATH (Go >= 1.26.6 is needed)"
  exit 2
fi

mkdir -p "$DIR"
# One build at a time per version: a second caller waits for the first and then finds the cache.
exec 9>"$DIR/.lock"
flock 9
if complete; then
  say "gVisor $GVISOR_VERSION and containerd $CONTAINERD_VERSION cached in $BIN (built by a concurrent run)"
  exit 0
fi

started=$(date +%s)
say "building gVisor $GVISOR_VERSION and containerd $CONTAINERD_VERSION into $BIN (go build -p $JOBS; cold: a few minutes on 2 cores)"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOTOOLCHAIN=local
mkdir -p "$BIN"

# build NAME MODULE VERSION LDFLAGS OUT=PKG...: a throw-away module requiring MODULE@VERSION builds
# each PKG into $BIN/OUT (only those missing), so each binary gets the name containerd looks for.
# With PATCH set (a function), MODULE is replaced by a copy of its source that PATCH edits first.
build() {
  local name=$1 module=$2 version=$3 ldflags=$4
  shift 4
  local src="$DIR/src/$name" pair out pkg t0 json moddir
  t0=$(date +%s)
  rm -rf "$src"
  mkdir -p "$src"
  (
    cd "$src"
    printf 'module aevatar.local/%s\n\ngo 1.26\n\nrequire %s %s\n' "$name" "$module" "$version" >go.mod
    if [ -n "${PATCH:-}" ]; then
      if ! json=$(go mod download -json "$module@$version" 2>&1); then
        say "cannot download $module@$version through the Go module proxy ($(go env GOPROXY)):"
        printf '%s\n' "$json" >&2
        exit 3
      fi
      moddir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
      cp -r "$moddir" "$src/module"
      chmod -R u+w "$src/module"
      "$PATCH" "$src/module"
      printf '\nreplace %s => ./module\n' "$module" >>go.mod
    fi
    local pkgs=()
    for pair in "$@"; do pkgs+=("${pair#*=}@$version"); done
    [ -z "${PATCH:-}" ] || pkgs=("${pkgs[@]%@*}")
    if ! go get -tool "${pkgs[@]}" >"$src/get.log" 2>&1; then
      say "cannot get $module@$version through the Go module proxy ($(go env GOPROXY)):"
      tail -n 20 "$src/get.log" >&2
      exit 3
    fi
    for pair in "$@"; do
      out=${pair%%=*}
      pkg=${pair#*=}
      [ -x "$BIN/$out" ] && continue
      go build -p "$JOBS" -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$out" "$pkg"
      say "  $out built ($(($(date +%s) - t0))s since $name started)"
    done
  )
  say "$name $version done after $(($(date +%s) - t0))s"
}

# The one change to gVisor's shim: it sets its own oom_score_adj to -999 (a constant), and fails to
# start when that is denied ("failed to set OOM Score on shim: write /proc/N/oom_score_adj:
# permission denied"). Root here lacks CAP_SYS_RESOURCE (not even in the bounding set), so no
# process may go below the score it inherited (0 here). The shim sets 0 instead, which is allowed
# whenever containerd runs at 0 or above (start it from a wrapper that raises its score to 0).
patch_gvisor_shim() {
  local f="$1/pkg/shim/v1/manager.go"
  if ! grep -qE '^[[:space:]]*oomScoreMax = -999$' "$f"; then
    say "gVisor $GVISOR_VERSION: $f no longer sets oomScoreMax = -999; review the shim patch"
    exit 4
  fi
  sed -i -E 's/^([[:space:]]*oomScoreMax = )-999$/\10/' "$f"
}

PATCH=patch_gvisor_shim build gvisor gvisor.dev/gvisor "$GVISOR_VERSION" \
  "-X gvisor.dev/gvisor/runsc/version.version=$GVISOR_VERSION" \
  runsc=gvisor.dev/gvisor/runsc containerd-shim-runsc-v1=gvisor.dev/gvisor/shim
PATCH= build containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" \
  "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
  containerd=github.com/containerd/containerd/v2/cmd/containerd \
  ctr=github.com/containerd/containerd/v2/cmd/ctr \
  containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

for b in "${BINARIES[@]}"; do
  if [ ! -x "$BIN/$b" ]; then
    say "build finished without $BIN/$b"
    exit 4
  fi
done
printf 'gvisor=%s\ncontainerd=%s\nbuild_seconds=%s\n' "$GVISOR_VERSION" "$CONTAINERD_VERSION" "$(($(date +%s) - started))" \
  >"$DIR/.complete"
rm -rf "$DIR/src"
say "gVisor and containerd ready in $BIN after $(($(date +%s) - started))s"
