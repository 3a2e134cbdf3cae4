#!/usr/bin/env bash
# A fresh clone to its first hello world, timed, every cache fresh (the README's "Measured: a fresh
# clone to its first hello world").
#
#   bench/first_run.sh            clones this checkout's HEAD into a new temporary directory
#
# Steps, each timed: `git clone`; `scripts/install.sh` (what `make install` runs: the venv from PyPI
# with an empty pip cache, the sandbox-exec helper, the Kafka jars from Maven Central into an empty
# Maven repository and cache dir); `aevatar-sandbox up` until the gateway answers /readyz (a new
# broker formatted and started, topics created, the warm pool filled); `aevatar-sandbox run
# hello.py`. Fresh: AEVATAR_CACHE_DIR, AEVATAR_DATA_DIR, PIP_CACHE_DIR, MAVEN_OPTS
# -Dmaven.repo.local, a new sandbox state dir, its own ports and sandbox uids. Not in the figure:
# the Debian packages (install.sh installs them when missing, as root) and the other languages'
# toolchains (not on the way to the first run). Needs root and the registries (PyPI, Maven Central).
# At the end `up` and its broker are stopped and the directory is removed.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/aevatar-first-run-XXXXXX)
chmod 0755 "$WORK"  # the sandbox uids traverse it to the state dir
export AEVATAR_CACHE_DIR=$WORK/cache AEVATAR_DATA_DIR=$WORK/data PIP_CACHE_DIR=$WORK/pip
export MAVEN_OPTS="-Dmaven.repo.local=$WORK/m2"
export AEVATAR_KAFKA_PORT=${FIRST_RUN_KAFKA_PORT:-19692} AEVATAR_KAFKA_CONTROLLER_PORT=${FIRST_RUN_CONTROLLER_PORT:-19693}
export AEVATAR_GATEWAY_PORT=${FIRST_RUN_GATEWAY_PORT:-18695} AEVATAR_METRICS_PORT=0
export AEVATAR_SANDBOX_UID_BASE=${FIRST_RUN_UID_BASE:-63900} AEVATAR_SANDBOX_STATE_DIR=$WORK/state
UP_PID=""
cleanup() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID"
    wait "$UP_PID" 2>/dev/null || true
  fi
  if [ -x "$WORK/repo/.venv/bin/aevatar-sandbox" ]; then
    "$WORK/repo/.venv/bin/aevatar-sandbox" kafka stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
began=$(now_ms)
t=$(now_ms)
git clone -q "$SRC" "$WORK/repo"
clone_ms=$(( $(now_ms) - t ))
cd "$WORK/repo"
t=$(now_ms)
./scripts/install.sh > "$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; exit 1; }
install_ms=$(( $(now_ms) - t ))
t=$(now_ms)
.venv/bin/aevatar-sandbox up > "$WORK/up.log" 2>&1 &
UP_PID=$!
until curl -sf -o /dev/null "http://127.0.0.1:$AEVATAR_GATEWAY_PORT/readyz"; do
  kill -0 "$UP_PID" 2>/dev/null || { tail -40 "$WORK/up.log"; exit 1; }
  sleep 0.2
done
up_ms=$(( $(now_ms) - t ))
echo "print('hello')" > "$WORK/hello.py"
t=$(now_ms)
out=$(.venv/bin/aevatar-sandbox run "$WORK/hello.py")
run_ms=$(( $(now_ms) - t ))
[ "$out" = "hello" ] || { echo "first run printed: $out" >&2; exit 1; }
total_ms=$(( $(now_ms) - began ))
grep '^install: ✓' "$WORK/install.log" | sed 's/^/  /'
printf 'git clone %d ms, install %d ms, up to ready %d ms, run hello.py %d ms: fresh clone to first hello world %.1f s\n' \
  "$clone_ms" "$install_ms" "$up_ms" "$run_ms" "$(awk "BEGIN{print $total_ms/1000}")"
