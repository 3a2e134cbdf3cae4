#!/usr/bin/env bash
# `make up-kubernetes`: the platform on the local single-node Kubernetes cluster. Starts the
# cluster (scripts/k8s-cluster.sh) unless one is running, then `aevatar-sandbox up` in the
# foreground with AEVATAR_SANDBOX_BACKEND=kubernetes: each run is a Job, and a real pod on the
# node. Same http://127.0.0.1:8080 as `make up`. Ctrl-C stops the platform, and the cluster too
# when this script started it (AEVATAR_K8S_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."

started_cluster=0
if ! bash scripts/k8s-cluster.sh status 2>/dev/null; then
  echo "up-kubernetes: starting the local single-node cluster (cold: builds Kubernetes and the images first)"
  bash scripts/k8s-cluster.sh start >/dev/null
  started_cluster=1
fi
eval "$(bash scripts/k8s-cluster.sh env | sed 's/^/export K8S_/')"
echo "up-kubernetes: the cluster's kubeconfig is $K8S_KUBECONFIG"
echo "up-kubernetes:   kubectl --kubeconfig $K8S_KUBECONFIG -n aevatar-sandbox get pods"
echo "up-kubernetes:   kubectl is at $(bash scripts/k8s-control-plane.sh --print-bin-dir 2>/dev/null)/kubectl"

export AEVATAR_SANDBOX_BACKEND=kubernetes
export AEVATAR_KUBECONFIG="$K8S_KUBECONFIG"
export AEVATAR_K8S_NAMESPACE=${AEVATAR_K8S_NAMESPACE:-aevatar-sandbox}
export AEVATAR_K8S_IMAGES=${AEVATAR_K8S_IMAGES:-$K8S_RUNNER_IMAGE}
export AEVATAR_K8S_IMAGE_PULL_POLICY=${AEVATAR_K8S_IMAGE_PULL_POLICY:-Never}

cleanup() {
  if [ "$started_cluster" = 1 ] && [ "${AEVATAR_K8S_KEEP:-0}" != 1 ]; then
    echo "up-kubernetes: stopping the cluster this command started"
    bash scripts/k8s-cluster.sh stop || true
  fi
}
trap cleanup EXIT
trap 'kill -INT "$child" 2>/dev/null || true' INT TERM
.venv/bin/aevatar-sandbox up "$@" &
child=$!
while kill -0 "$child" 2>/dev/null; do
  wait "$child" || true
done
wait "$child" 2>/dev/null || true
