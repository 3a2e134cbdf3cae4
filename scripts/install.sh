#!/usr/bin/env bash
# Installs what Aevatar Sandbox needs on a fresh machine, and nothing twice.
#
#   scripts/install.sh               what `make up` needs for a first hello world: Debian packages
#                                    (as root), the Python venv with the project, the sandbox-exec
#                                    helper and the Kafka jars. Python, JavaScript (when node is
#                                    present) and Bash run after this alone.
#   scripts/install.sh --toolchains  the other languages' toolchains (scripts/install.d/*.sh: C, C++,
#                                    C#, Java's JDK, TypeScript, Rust, the Go standard-library cache).
#                                    `make up` runs it in the background once the platform is up;
#                                    `make test` runs it first. While it runs, $WARMING exists and
#                                    `up` reports those languages as warming.
#
# Every step prints what it installs, then how long it took and what comes next.
set -euo pipefail
cd "$(dirname "$0")/.."

WARMING=${AEVATAR_TOOLCHAINS_WARMING:-/opt/aevatar-sandbox/.toolchains-warming}
mode=core
case "${1:-}" in
  "") ;;
  --toolchains) mode=toolchains ;;
  *) echo "usage: $0 [--toolchains]" >&2; exit 2 ;;
esac

_step_started=$SECONDS
_step_name=""
_install_started=$SECONDS
# step NAME: ends the previous step (its time), starts the next.
step() {
  local now=$SECONDS
  if [ -n "$_step_name" ]; then
    echo "install: ✓ $_step_name ($((now - _step_started)) s)"
  fi
  _step_name=$1
  _step_started=$now
  if [ -n "$_step_name" ]; then echo "install: → $_step_name ..."; fi
}
finish() {
  step ""
  echo "install: $mode done in $((SECONDS - _install_started)) s"
}

if [ "$mode" = toolchains ]; then
  if [ "$(id -u)" -eq 0 ]; then
    install -d -m 0755 "$(dirname "$WARMING")"
    date -u +%s > "$WARMING"
    trap 'rm -f "$WARMING"' EXIT
  fi
  # Each scripts/install.d/*.sh is sourced in order. A part that cannot be installed says so and
  # leaves the rest working: its language is reported unavailable.
  for part in scripts/install.d/*.sh; do
    [ -e "$part" ] || continue
    step "toolchains: $(basename "$part" .sh)"
    # shellcheck source=/dev/null
    . "$part" || echo "install: $part failed; what it installs is reported unavailable" >&2
  done
  finish
  exit 0
fi

step "Debian packages for the platform (bubblewrap, libseccomp, gcc for the sandbox-exec helper, python3.11, a Java runtime and Maven for the Kafka broker)"
APT_PACKAGES=(bubblewrap libseccomp2 gcc libc6-dev python3.11 python3.11-venv openjdk-17-jre-headless maven)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A JDK, Maven or a venv-capable Python installed outside Debian's packages counts too.
if command -v java >/dev/null 2>&1; then missing=("${missing[@]/openjdk-17-jre-headless}"); fi
if command -v mvn >/dev/null 2>&1; then missing=("${missing[@]/maven}"); fi
if python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing=("${missing[@]/python3.11-venv}"); fi
read -r -a missing <<< "${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "install:   apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install: missing Debian packages: ${missing[*]}" >&2
    echo "install: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
step "Python venv (.venv) with the project and its dependencies"
if [ ! -x .venv/bin/python ]; then
  echo "install:   creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "install:   pip install -e '.[dev]'"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The sandbox-exec helper (runtime/sandbox_exec.c): bubblewrap is spawned through it, with vfork.
step "sandbox-exec helper (runtime/sandbox_exec.c)"
if [ "$(id -u)" -eq 0 ]; then
  .venv/bin/python -c 'import sys; from runtime import sandbox_exec; sys.exit(0 if sandbox_exec.ensure() else 1)' \
    || echo "install: sandbox-exec not built; sandboxes start through the slower preexec_fn path" >&2
fi

# The Kafka jars, into the cache outside the repo (a no-op when present).
step "Kafka broker jars (Maven Central, into the cache dir)"
.venv/bin/python - <<'PY'
from streams.broker import ManagedBroker
from streams.settings import Settings
settings = Settings.from_env()
if settings.managed_kafka:
    broker = ManagedBroker(settings)
    if broker.install():
        print(f"install:   Kafka {settings.kafka_version} jars resolved into {broker.lib}")
PY
finish
echo "install: next: \`make up\` (the other languages' toolchains install in the background: make install-toolchains)"
