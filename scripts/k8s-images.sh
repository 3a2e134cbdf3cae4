#!/usr/bin/env bash
# Builds the images of the local single-node cluster (scripts/k8s-node.sh) with no image registry,
# into a cache outside the repo, keyed by content:
#
#   ${AEVATAR_K8S_CACHE:-~/.cache/aevatar-sandbox/k8s}/images/<key>/
#       pause.tar    aevatar.local/pause:<key>    a static C binary that waits for SIGTERM
#       runner.tar   aevatar.local/runner:<key>   Debian bookworm (debootstrap minbase) with
#                    python3.11 and its standard library, gcc/g++ (C, C++), bash, and /usr/local/bin/aevatar-runner
#                    (runtime/pod_runner.c), the first process of every sandbox container
#       images.env   RUNNER_IMAGE=... PAUSE_IMAGE=...
#
# Each .tar is an OCI image layout (umoci), which `ctr -n k8s.io images import` takes; pods use
# them with imagePullPolicy Never. The key hashes this script, the runner's and the pause's source
# and the package list, so a change to any of them builds new images and nothing else does.
#
# Usage: scripts/k8s-images.sh [--print-dir]
# Env:   AEVATAR_K8S_CACHE, AEVATAR_DEBIAN_MIRROR (default: the first deb URI apt uses)
# Needs: root, debootstrap, umoci, gcc with a static libc (libc6-dev). Cold: about 2-4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT=${AEVATAR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aevatar-sandbox/k8s}
SUITE=bookworm
PACKAGES=python3,gcc,g++,libc6-dev
RUNNER_SRC=runtime/pod_runner.c
PAUSE_SRC=deploy/images/local/pause.c
key=$( (cat "$0" "$RUNNER_SRC" "$PAUSE_SRC"; echo "$SUITE $PACKAGES") | sha256sum | cut -c1-16)
DIR="$CACHE_ROOT/images/$key"
# The Debian tree, cached apart from the images: a change to the runner does not debootstrap again.
ROOTFS_DIR="$CACHE_ROOT/rootfs/$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-16)"

say() { echo "k8s-images: $*" >&2; }

if [ "${1:-}" = "--print-dir" ]; then
  echo "$DIR"
  exit 0
fi
if [ -f "$DIR/.complete" ]; then
  say "images $key cached in $DIR"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (debootstrap)"
  exit 2
fi
for tool in debootstrap umoci gcc tar; do
  command -v "$tool" >/dev/null 2>&1 || { say "missing $tool (apt-get install debootstrap umoci gcc libc6-dev)"; exit 2; }
done
mirror=${AEVATAR_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*(https?://[^[:space:]]+/debian)\b' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^[:space:]]+/debian$' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [ -f "$DIR/.complete" ]; then
  say "images $key cached in $DIR (built by a concurrent run)"
  exit 0
fi
started=$(date +%s)
work="$DIR/work"
rm -rf "$work"
mkdir -p "$work"

say "[1/4] aevatar-runner and pause: gcc -static"
gcc -static -O2 -Wall -o "$work/aevatar-runner" "$RUNNER_SRC"
gcc -static -O2 -Wall -o "$work/pause" "$PAUSE_SRC"

rootfs="$work/rootfs"
if [ -f "$ROOTFS_DIR/.complete" ]; then
  say "[2/4] runner root filesystem: debootstrap's tree cached in $ROOTFS_DIR"
else
  say "[2/4] runner root filesystem: debootstrap --variant=minbase $SUITE from $mirror (+ $PACKAGES; 1-3 min)"
  rm -rf "$ROOTFS_DIR"
  mkdir -p "$ROOTFS_DIR"
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS_DIR/tree" "$mirror" > "$work/debootstrap.log" 2>&1; then
    say "debootstrap failed; the end of its log ($work/debootstrap.log):"
    tail -n 20 "$work/debootstrap.log" >&2
    exit 3
  fi
  t=$ROOTFS_DIR/tree
  rm -rf "$t"/var/cache/apt/archives/*.deb "$t"/var/lib/apt/lists/* "$t"/var/log/* "$t"/dev/*
  touch "$ROOTFS_DIR/.complete"
fi
cp -a "$ROOTFS_DIR/tree" "$rootfs"
install -m 0755 "$work/aevatar-runner" "$rootfs/usr/local/bin/aevatar-runner"
mkdir -p "$rootfs/work" "$rootfs/input"
chmod 0755 "$rootfs/work" "$rootfs/input"

# One OCI layout per image: umoci new, insert the tree as one layer, set the config.
oci_image() { # name tag source-dir entrypoint...
  local name=$1 tag=$2 src=$3
  shift 3
  local layout="$work/$name-oci"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci insert --image "$layout:$tag" "$src" /
  local entry=()
  for arg in "$@"; do entry+=(--config.entrypoint "$arg"); done
  umoci config --image "$layout:$tag" --os linux --architecture amd64 \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${entry[@]}"
  umoci gc --layout "$layout"
  tar -C "$layout" -cf "$DIR/$name.tar.tmp" .
  mv "$DIR/$name.tar.tmp" "$DIR/$name.tar"
}

say "[3/4] OCI images: runner ($(du -sm "$rootfs" | cut -f1) MiB) and pause"
oci_image runner "$key" "$rootfs" /bin/sh
mkdir -p "$work/pause-root"
install -m 0755 "$work/pause" "$work/pause-root/pause"
oci_image pause "$key" "$work/pause-root" /pause

say "[4/4] images.env"
{
  echo "RUNNER_IMAGE=aevatar.local/runner:$key"
  echo "PAUSE_IMAGE=aevatar.local/pause:$key"
  echo "KEY=$key"
} > "$DIR/images.env"
rm -rf "$work"
printf 'build_seconds=%s\n' "$(($(date +%s) - started))" > "$DIR/.complete"
# Older images of this cache (a changed runner or package list) are not used any more.
find "$CACHE_ROOT/images" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
say "images $key built in $DIR after $(($(date +%s) - started))s"
