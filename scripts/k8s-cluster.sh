#!/usr/bin/env bash
# The local single-node Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd 2 (scripts/k8s-gvisor.sh, through the CRI) with runc (the default)
# and gVisor's runsc (RuntimeClass gvisor, as deploy/components/gvisor registers it) and a real
# kubelet, all on loopback, with the images of scripts/k8s-images.sh imported. `make up-kubernetes` and the
# Kubernetes tests (tests/kubernetes/) use it; one runs per machine (the node is named localhost).
#
#   scripts/k8s-cluster.sh start     start what is not running, wait for the node to be Ready,
#                                    print the kubeconfig path (idempotent)
#   scripts/k8s-cluster.sh stop      stop everything, remove the pods' cgroups, mounts and bridge
#   scripts/k8s-cluster.sh status    exit 0 when the API answers and the node is Ready
#   scripts/k8s-cluster.sh env       print KUBECONFIG=, RUNNER_IMAGE=, PAUSE_IMAGE=
#
# Env: AEVATAR_K8S_STATE (default /var/lib/aevatar-sandbox/k8s), AEVATAR_K8S_API_PORT (16443),
#      AEVATAR_K8S_POD_PIDS_LIMIT (256), and those of k8s-control-plane.sh and k8s-images.sh.
#
# Facts this rests on (notes/kubernetes-node.md, measured on this machine kind):
# - the kubelet refuses a loopback node IP, so the node is named localhost and the apiserver
#   prefers the Hostname address (it dials localhost:10250);
# - containerd's CRI needs eth0 with an IP, so pods get a bridge with host-local addresses and
#   no gateway, no route, no masquerade: nothing to reach. The bridge has no host address, and an
#   ebtables rule drops frames between its ports, so pods cannot reach each other either;
# - root here lacks CAP_SYS_RESOURCE: containerd needs restrict_oom_score_adj = true, runs at
#   oom_score_adj 0, and gVisor's shim is built to set 0 rather than -999 (scripts/k8s-gvisor.sh);
# - the node-lifecycle controller must run to lift the node's not-ready taint;
# - cgroup v1 memory, cpu and pids: failCgroupV1 false, cgroupDriver cgroupfs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

STATE=${AEVATAR_K8S_STATE:-/var/lib/aevatar-sandbox/k8s}
API_PORT=${AEVATAR_K8S_API_PORT:-16443}
ETCD_PORT=$((API_PORT + 1))
ETCD_PEER_PORT=$((API_PORT + 2))
POD_PIDS_LIMIT=${AEVATAR_K8S_POD_PIDS_LIMIT:-256}
BRIDGE=aevatar0
POD_SUBNET=10.244.0.0/24
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"
KUBECONFIG_FILE="$STATE/kubeconfig"
LOGS="$STATE/logs"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet)

say() { echo "k8s-cluster: $*" >&2; }

bin_dir() { bash "$REPO/scripts/k8s-control-plane.sh" --print-bin-dir; }
gvisor_bin_dir() { bash "$REPO/scripts/k8s-gvisor.sh" --print-bin-dir; }
images_env() { echo "$(bash "$REPO/scripts/k8s-images.sh" --print-dir)/images.env"; }

pid_of() { # the running pid of a component started here, or nothing
  local f="$STATE/run/$1.pid"
  [ -f "$f" ] || return 1
  local pid
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  # An exited component whose parent is gone stays a zombie ("Z"): not running.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

token() { cat "$STATE/pki/admin.token"; }

api_ready() {
  [ -f "$STATE/pki/admin.token" ] || return 1
  curl -skf -m 3 -H "Authorization: Bearer $(token)" "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

kubectl_() { "$(bin_dir)/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

node_ready() {
  api_ready || return 1
  [ "$(kubectl_ get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

spawn() { # name argv...: started in a session of its own, output to logs/<name>.log
  local name=$1
  shift
  if pid_of "$name" >/dev/null; then return 0; fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/$name.pid"
}

wait_for() { # what seconds command...
  local what=$1 seconds=$2
  shift 2
  local deadline=$(($(date +%s) + seconds))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "$what not ready after ${seconds}s; see $LOGS"
      return 1
    fi
    sleep 0.5
  done
}

check_alive() {
  local name
  for name in "$@"; do
    if ! pid_of "$name" >/dev/null; then
      say "$name exited; the end of $LOGS/$name.log:"
      tail -n 25 "$LOGS/$name.log" >&2 || true
      return 1
    fi
  done
}

write_configs() {
  local pause_image=$1
  mkdir -p "$STATE"/{pki,run,cni/net.d,cni/ipam,containerd,kubelet,etcd} "$LOGS"
  if [ ! -f "$STATE/pki/admin.token" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/pki/admin.token")
  fi
  [ -f "$STATE/pki/sa.key" ] || openssl genrsa -out "$STATE/pki/sa.key" 2048 2>/dev/null
  printf '%s,admin,admin-uid,"system:masters"\n' "$(token)" >"$STATE/pki/tokens.csv"
  chmod 600 "$STATE/pki/tokens.csv" "$STATE/pki/sa.key"
  (umask 077 && cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aevatar-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $STATE/pki/apiserver/apiserver.crt
users:
- name: admin
  user:
    token: $(token)
contexts:
- name: aevatar-local
  context: {cluster: aevatar-local, user: admin}
current-context: aevatar-local
EOF
  )
  # containerd 2 (built by scripts/k8s-gvisor.sh) with CRI runtimes runc (the default) and runsc.
  bash "$REPO/scripts/k8s-gvisor.sh" --print-containerd-config "$STATE/containerd" "$pause_image" "$STATE/cni/net.d" \
    >"$STATE/containerd/config.toml"
  bash "$REPO/scripts/k8s-gvisor.sh" --write-runsc-config "$STATE/containerd" >/dev/null
  cat >"$STATE/cni/net.d/10-aevatar.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "aevatar",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "dataDir": "$STATE/cni/ipam"}
    },
    {"type": "loopback"}
  ]
}
EOF
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: 127.0.0.1
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
podPidsLimit: $POD_PIDS_LIMIT
maxPods: 64
registerNode: true
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
}

start() {
  local bins gvisor_bin
  bash "$REPO/scripts/k8s-control-plane.sh"
  bash "$REPO/scripts/k8s-images.sh"
  bash "$REPO/scripts/k8s-gvisor.sh"
  bins=$(bin_dir)
  gvisor_bin=$(gvisor_bin_dir)
  # shellcheck source=/dev/null
  . "$(images_env)"
  if node_ready; then
    import_images  # the images may be newer than the running cluster
    say "already running; the node is Ready"
    echo "$KUBECONFIG_FILE"
    return 0
  fi
  for tool in runc curl openssl ebtables; do
    command -v "$tool" >/dev/null 2>&1 || { say "missing $tool (apt-get install runc containernetworking-plugins curl openssl ebtables)"; return 2; }
  done
  [ -x /usr/lib/cni/bridge ] || { say "missing /usr/lib/cni/bridge (apt-get install containernetworking-plugins)"; return 2; }
  # A cluster killed without `stop` (a session's end, kill -9) left its pods' mounts and cgroups.
  if ! any_running; then
    clean_host
    # The store of Debian's containerd 1.6 (config version 2), from before containerd 2: dropped,
    # the images are imported again below.
    if grep -qx 'version = 2' "$STATE/containerd/config.toml" 2>/dev/null; then rm -rf "$STATE/containerd"; fi
  fi
  write_configs "$PAUSE_IMAGE"
  local t0
  t0=$(date +%s)

  spawn etcd "$bins/etcd" --name=aevatar --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="aevatar=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level=warn
  spawn kube-apiserver "$bins/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$STATE/pki/apiserver" --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$STATE/pki/sa.key" \
    --service-account-signing-key-file="$STATE/pki/sa.key" --authorization-mode=RBAC \
    --token-auth-file="$STATE/pki/tokens.csv" --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none --kubelet-preferred-address-types=Hostname \
    --enable-priority-and-fairness=false --v=1
  wait_for "kube-apiserver" 90 api_ready_or_dead
  spawn kube-controller-manager "$bins/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false --secure-port=0 --use-service-account-credentials=false \
    --controllers=job-controller,garbage-collector-controller,namespace-controller,ttl-after-finished-controller,node-lifecycle-controller \
    --concurrent-job-syncs=5 --v=1
  spawn kube-scheduler "$bins/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 --v=1
  # containerd 2 from scripts/k8s-gvisor.sh's bin dir, first on its PATH (the shims are looked up
  # there), at oom_score_adj 0: the shims derive theirs from it and may not go below 0 here.
  spawn containerd env PATH="$gvisor_bin:$PATH" bash -c \
    'echo 0 >/proc/self/oom_score_adj 2>/dev/null || true; exec "$0" "$@"' \
    "$gvisor_bin/containerd" --config "$STATE/containerd/config.toml"
  wait_for "containerd" 30 containerd_ready_or_dead
  import_images
  # Pods may not reach each other over the bridge (it is their only interface).
  # (Every pod's host side is a veth port of the bridge; --logical-in is not supported here.)
  ebtables -L FORWARD 2>/dev/null | grep -q -- "-i veth+ -o veth+ -j DROP" ||
    ebtables -A FORWARD -i veth+ -o veth+ -j DROP
  spawn kubelet "$bins/kubelet" --config="$STATE/kubelet/config.yaml" --kubeconfig="$KUBECONFIG_FILE" \
    --hostname-override=localhost --root-dir="$STATE/kubelet/root" --cert-dir="$STATE/kubelet/pki" --v=1
  wait_for "the node" 90 node_ready_or_dead
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: aevatar-sandbox
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: aevatar-sandbox-run
  namespace: aevatar-sandbox
automountServiceAccountToken: false
EOF
  # gVisor: the RuntimeClass of the production-gvisor overlay (name gvisor, handler runsc, its overhead).
  kubectl_ apply -f "$REPO/deploy/components/gvisor/runtimeclass.yaml" >/dev/null
  say "node localhost Ready after $(($(date +%s) - t0))s; kubectl --kubeconfig $KUBECONFIG_FILE get pods -A"
  echo "$KUBECONFIG_FILE"
}

api_ready_or_dead() { check_alive etcd kube-apiserver || exit 1; api_ready; }
containerd_ready_or_dead() { check_alive containerd || exit 1; ctr_ version >/dev/null 2>&1; }
node_ready_or_dead() {
  check_alive etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet || exit 1
  node_ready
}
ctr_() { "$(gvisor_bin_dir)/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

import_images() {
  import_image "$RUNNER_IMAGE" "$(dirname "$(images_env)")/runner.tar"
  import_image "$PAUSE_IMAGE" "$(dirname "$(images_env)")/pause.tar"
}

import_image() { # name tar
  if ctr_ images ls -q 2>/dev/null | grep -qx "$1"; then return 0; fi
  local base=${1%:*}
  say "importing $1 into containerd (namespace k8s.io)"
  local err
  if ! err=$(ctr_ images import --base-name "$base" "$2" 2>&1 >/dev/null); then
    say "cannot import $2: $err"
    return 1
  fi
  # (ctr warns on every call that containerd deprecates cgroup v1: not repeated here.)
  printf '%s\n' "$err" | grep -v -e 'DEPRECATION: The support for cgroup v1' -e '^$' >&2 || true
  ctr_ images label "$1" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
}

# What pods and a killed cluster leave on the host: mounts under the state dir, the pods' cgroups, the
# bridge, the ebtables rule, IP allocations, and what the kubelet writes outside its root dir.
clean_host() {
  local pid
  # The containers (also of a containerd that was killed): their shims belong to this containerd (its socket is in their command line).
  for pid in $(pgrep -f "containerd-shim-run(c-v2|sc-v1) .*-address $CONTAINERD_SOCK" || true); do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  # gVisor's sandboxes and gofers (children of the runsc shims, killed above, unless orphaned).
  for pid in $(pgrep -f -- "--root=$STATE/containerd/runsc/" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # The pods' cgroups (cgroupfs driver: kubepods under every hierarchy), deepest first.
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$root" ] || continue
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ebtables -D FORWARD -i veth+ -o veth+ -j DROP 2>/dev/null || true
  rm -rf "$STATE/cni/ipam" "$STATE/containerd/runsc"
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet/pki /var/lib/kubelet 2>/dev/null || true
}

any_running() {
  local name
  for name in "${COMPONENTS[@]}"; do
    if pid_of "$name" >/dev/null; then return 0; fi
  done
  return 1
}

stop() {
  local name pid
  for name in kubelet kube-scheduler kube-controller-manager; do
    if pid=$(pid_of "$name"); then kill "$pid" 2>/dev/null || true; fi
  done
  for pid in $(pgrep -f "containerd-shim-run(c-v2|sc-v1) .*-address $CONTAINERD_SOCK" || true); do
    pkill -KILL -P "$pid" 2>/dev/null || true
  done
  for name in containerd kube-apiserver etcd; do
    if pid=$(pid_of "$name"); then kill "$pid" 2>/dev/null || true; fi
  done
  for name in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$name"); then
      for _ in $(seq 1 50); do pid_of "$name" >/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/run/$name.pid"
  done
  clean_host
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) node_ready ;;
  env)
    echo "KUBECONFIG=$KUBECONFIG_FILE"
    cat "$(images_env)" 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
