#!/usr/bin/env bash
# Installs everything Aevatar Sandbox needs on a fresh machine, and nothing twice:
# Debian packages (as root), the Python venv with the project, and the Kafka jars.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(bubblewrap libseccomp2 python3.11 openjdk-17-jre-headless maven)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A JDK or Maven installed outside Debian's packages counts too.
if command -v java >/dev/null 2>&1; then missing=("${missing[@]/openjdk-17-jre-headless}"); fi
if command -v mvn >/dev/null 2>&1; then missing=("${missing[@]/maven}"); fi
read -r -a missing <<< "${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install: missing Debian packages: ${missing[*]}" >&2
    echo "install: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Language toolchains and other optional parts: each scripts/install.d/*.sh is sourced in order.
# A part that cannot be installed says so and leaves the rest working.
for part in scripts/install.d/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  . "$part" || echo "install: $part failed; what it installs is reported unavailable" >&2
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "install: installing the project and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The sandbox-exec helper (runtime/sandbox_exec.c): bubblewrap is spawned through it, with vfork.
if [ "$(id -u)" -eq 0 ]; then
  .venv/bin/python -c 'import sys; from runtime import sandbox_exec; sys.exit(0 if sandbox_exec.ensure() else 1)' \
    || echo "install: sandbox-exec not built; sandboxes start through the slower preexec_fn path" >&2
fi

# The Kafka jars, into the cache outside the repo (a no-op when present).
.venv/bin/python - <<'PY'
from streams.broker import ManagedBroker
from streams.settings import Settings
settings = Settings.from_env()
if settings.managed_kafka:
    broker = ManagedBroker(settings)
    if broker.install():
        print(f"install: Kafka {settings.kafka_version} jars resolved into {broker.lib}")
PY
