# Sourced by scripts/install.sh (set -euo pipefail, cwd = repo root).
# The Kubernetes control plane that tests/kubernetes runs against: kube-apiserver, kube-controller-manager,
# kubectl and etcd, built from Go modules by scripts/k8s-control-plane.sh into a cache outside the repo
# (~/.cache/aevatar-sandbox/k8s/<version>/bin). Cold: 10-12 minutes on 2 cores; cached: instant.
# A failure here does not stop the install; the kubernetes tests then FAIL and print the reason.
if ! command -v openssl >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "install: apt-get install openssl (test certificates for the Kubernetes control plane)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null || true
fi
# The script finds the cache first, and needs the go tool only to build.
bash scripts/k8s-control-plane.sh ||
  echo "install: the Kubernetes control plane could not be built: tests/kubernetes will fail and say why" >&2
