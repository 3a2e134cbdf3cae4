#!/usr/bin/env bash
# Everything the local single-node Kubernetes cluster needs (`make up-kubernetes`, and the
# Kubernetes tests in `make test`), and nothing twice; `make up` does not need it:
# - Debian packages: runc, the CNI plugins, umoci, debootstrap, ebtables, curl, openssl;
# - Kubernetes v1.36 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#   kubectl) built from Go modules into ~/.cache/aevatar-sandbox/k8s/<version>/bin
#   (scripts/k8s-control-plane.sh; cold: about 12-15 minutes on 2 cores);
# - the runner and pause images (scripts/k8s-images.sh; cold: about 1 minute);
# - containerd 2.4 and gVisor (runsc, containerd-shim-runsc-v1) built from Go modules into
#   ~/.cache/aevatar-sandbox/k8s/gvisor/ (scripts/k8s-gvisor.sh; cold: about 9 minutes on 2 cores);
# - docker.io, for scripts/compose-check.sh (its service is never started; see below).
# A part that fails says why; the Kubernetes tests then FAIL and print the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "install-kubernetes: [$1] $2 (+$(($(date +%s) - started))s)"; }

packages=(runc containernetworking-plugins umoci debootstrap ebtables curl openssl iproute2)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    step 1/5 "apt-get install ${missing[*]}"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      echo "install-kubernetes: apt-get install ${missing[*]} failed" >&2
  else
    echo "install-kubernetes: as root: apt-get install ${missing[*]}" >&2
  fi
else
  step 1/5 "Debian packages present"
fi
step 2/5 "Kubernetes binaries (cached after the first build)"
bash scripts/k8s-control-plane.sh ||
  echo "install-kubernetes: the Kubernetes binaries could not be built: tests/kubernetes will fail and say why" >&2
step 3/5 "runner and pause images (cached by content)"
bash scripts/k8s-images.sh ||
  echo "install-kubernetes: the images could not be built: the real-node tests will fail and say why" >&2
step 4/5 "containerd 2 and gVisor (runsc) for the node (cached after the first build)"
bash scripts/k8s-gvisor.sh ||
  echo "install-kubernetes: containerd 2 and gVisor could not be built: the real-node tests will fail and say why" >&2
# Debian's Docker engine for scripts/compose-check.sh (tests/compose), which starts its own dockerd
# without any network set-up. The package's own service would start dockerd with its defaults, which
# rewrite the host's iptables: it is installed with service starts refused (policy-rc.d) and, where
# systemd runs, its units are masked.
if dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q "install ok installed"; then
  step 5/5 "docker.io present (for scripts/compose-check.sh)"
elif [ "$(id -u)" -eq 0 ]; then
  step 5/5 "apt-get install docker.io (its service is not started: scripts/compose-check.sh runs its own dockerd)"
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null ||
    echo "install-kubernetes: apt-get install docker.io failed: tests/compose will fail and say why" >&2
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl mask --now docker.service docker.socket >/dev/null 2>&1 || true
  fi
else
  echo "install-kubernetes: as root: apt-get install docker.io (for scripts/compose-check.sh)" >&2
fi
step done "ready"
