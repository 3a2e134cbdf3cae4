#!/usr/bin/env bash
# `docker compose up` for real on a machine with no image registry and no container networking:
# builds what the public images would give, runs docker-compose.yml (its kafka, gateway, processors
# and executor) with deploy/compose/local.override.yml, sends a hello world through the gateway,
# checks the result, and tears everything down. Prometheus and Grafana are not started: their
# public images cannot be pulled here, and nothing else needs them.
#
#   [1] dockerd: Debian's docker.io with its own data-root, exec-root and socket, and WITHOUT any
#       network set-up of its own (--iptables=false --ip-masq=false --ip6tables=false
#       --ip-forward=false --bridge=none: by default it rewrites the host's iptables). So the
#       containers have no bridge network: they use the host's (network_mode: host), and every
#       service listens on 127.0.0.1 only, on ports of their own (below).
#   [2] the compose CLI plugin v5.6.0, built from its Go module (github.com/docker/compose/v5)
#   [3] a base image: Debian bookworm (debootstrap --variant=minbase, the apt mirror apt uses) with
#       python3.11 and venv, `docker import`ed (the public python:3.11-slim-bookworm is the
#       Dockerfile's default BASE_IMAGE; this one is given as the build argument)
#   [4] a Kafka image (deploy/compose/kafka.Dockerfile) from that base with Debian's Java 17 and the
#       broker jars `aevatar-sandbox kafka` resolved from Maven Central
#   [5] the platform image (Dockerfile, BASE_IMAGE=the local base) with the classic builder
#       (DOCKER_BUILDKIT=0: there is no buildx), its steps on the host network (apt, PyPI)
#   [6] docker compose up -d kafka gateway processors executor; wait for the gateway
#   [7] POST /v1/executions?wait=true print('hello') -> SUCCEEDED "hello\n"
#   [8] docker compose down -v; dockerd is stopped when this script started it
#
# Images and trees are cached (~/.cache/aevatar-sandbox/compose, docker's data-root): a warm run
# only builds the platform image's changed layers.
# Env: AEVATAR_COMPOSE_GATEWAY_PORT (18080), AEVATAR_COMPOSE_KAFKA_PORT (19092; +1 the controller),
#      AEVATAR_COMPOSE_KEEP=1 (leave the stack and dockerd running), AEVATAR_DOCKER_STATE
#      (/var/lib/aevatar-sandbox/docker), AEVATAR_DEBIAN_MIRROR. Needs root, docker.io, debootstrap, go.
# Exit: 0 when the hello world came back; non-zero with the failing step and its log otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

CACHE=${AEVATAR_COMPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aevatar-sandbox/compose}
STATE=${AEVATAR_DOCKER_STATE:-/var/lib/aevatar-sandbox/docker}
RUN_DIR=/run/aevatar-docker
COMPOSE_VERSION=v5.6.0
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
KAFKA_VERSION=4.1.1
export AEVATAR_COMPOSE_GATEWAY_PORT=${AEVATAR_COMPOSE_GATEWAY_PORT:-18080}
export AEVATAR_COMPOSE_KAFKA_PORT=${AEVATAR_COMPOSE_KAFKA_PORT:-19092}
export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
export DOCKER_CONFIG="$CACHE/docker-config"  # holds only cli-plugins/docker-compose
export COMPOSE_PROJECT_NAME=aevatar-compose-check
COMPOSE=(docker compose -f docker-compose.yml -f deploy/compose/local.override.yml)
SERVICES=(kafka gateway processors executor)

started=$(date +%s)
step() { echo "compose-check: [$1] $2 (+$(($(date +%s) - started))s)" >&2; }
die() { echo "compose-check: FAILED: $*" >&2; exit 1; }

for tool in dockerd docker debootstrap go curl; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool (apt-get install docker.io debootstrap curl; Go >= 1.26)"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (dockerd, debootstrap)"
mkdir -p "$CACHE" "$STATE" "$RUN_DIR" "$DOCKER_CONFIG/cli-plugins"

# [1] dockerd -------------------------------------------------------------------------------
started_dockerd=0
if ! docker version >/dev/null 2>&1; then
  step 1/8 "dockerd (data-root $STATE, socket $RUN_DIR/docker.sock, no iptables, no bridge)"
  setsid dockerd --data-root "$STATE" --exec-root "$RUN_DIR" --pidfile "$RUN_DIR/dockerd.pid" \
    -H "$DOCKER_HOST" --iptables=false --ip-masq=false --ip6tables=false --ip-forward=false --bridge=none \
    >>"$CACHE/dockerd.log" 2>&1 </dev/null &
  started_dockerd=1
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
  docker version >/dev/null 2>&1 || { tail -n 20 "$CACHE/dockerd.log" >&2; die "dockerd did not start"; }
else
  step 1/8 "dockerd already running on $DOCKER_HOST"
fi

cleanup() {
  local rc=$?
  if [ "${AEVATAR_COMPOSE_KEEP:-0}" = 1 ]; then
    echo "compose-check: kept running (AEVATAR_COMPOSE_KEEP=1): DOCKER_HOST=$DOCKER_HOST DOCKER_CONFIG=$DOCKER_CONFIG" >&2
    return
  fi
  if [ "$rc" -ne 0 ]; then
    echo "compose-check: the services' last log lines:" >&2
    "${COMPOSE[@]}" logs --no-color --tail 15 >&2 2>/dev/null || true
  fi
  "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  if [ "$started_dockerd" = 1 ] && [ -f "$RUN_DIR/dockerd.pid" ]; then
    local pid
    pid=$(cat "$RUN_DIR/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT

# [2] the compose plugin ------------------------------------------------------------------------
plugin="$CACHE/bin/docker-compose-$COMPOSE_VERSION"
if [ ! -x "$plugin" ]; then
  step 2/8 "docker compose $COMPOSE_VERSION: building from the Go module (cold: a few minutes)"
  src="$CACHE/src/compose"
  rm -rf "$src"
  mkdir -p "$src" "$CACHE/bin"
  (
    cd "$src"
    printf 'module aevatar.local/compose\n\ngo 1.26\n\nrequire github.com/docker/compose/v5 %s\n' "$COMPOSE_VERSION" >go.mod
    GOTOOLCHAIN=local go get -tool "github.com/docker/compose/v5/cmd@$COMPOSE_VERSION" >get.log 2>&1 ||
      { tail -n 20 get.log >&2; exit 3; }
    CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
      -o "$plugin.tmp" github.com/docker/compose/v5/cmd
  ) || die "could not build docker compose $COMPOSE_VERSION"
  mv "$plugin.tmp" "$plugin"
  rm -rf "$src"
else
  step 2/8 "docker compose $COMPOSE_VERSION cached in $plugin"
fi
ln -sf "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
docker compose version >/dev/null || die "docker does not find the compose plugin in $DOCKER_CONFIG/cli-plugins"

# [3] the base image ----------------------------------------------------------------------------
# The host's own CA certificates (/usr/local/share/ca-certificates: here, the one of the proxy
# that PyPI and the apt mirror are reached through) are trusted in the base image too, so pip in the
# platform image's build verifies what pip on the host verifies.
HOST_CAS=/usr/local/share/ca-certificates
base_key=$( (echo "$SUITE $BASE_PACKAGES"; cat "$HOST_CAS"/*.crt 2>/dev/null || true) | sha256sum | cut -c1-12)
BASE_IMAGE="aevatar.local/python:3.11-$SUITE-$base_key"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  step 3/8 "base image $BASE_IMAGE present"
else
  rootfs="$CACHE/rootfs/$base_key"
  if [ ! -f "$rootfs/.complete" ]; then
    mirror=${AEVATAR_DEBIAN_MIRROR:-}
    if [ -z "$mirror" ]; then
      # (as scripts/k8s-images.sh: the first deb URI apt uses)
      mirror=$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*(https?://[^[:space:]]+/debian)\b' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        grep -oE 'https?://[^[:space:]]+/debian$' | head -n1 || true)
      mirror=${mirror:-http://deb.debian.org/debian}
    fi
    step 3/8 "base image: debootstrap --variant=minbase $SUITE (+ $BASE_PACKAGES) from $mirror (1-3 min)"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs/tree" "$mirror" >"$rootfs/debootstrap.log" 2>&1 ||
      { tail -n 20 "$rootfs/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$rootfs"/tree/var/cache/apt/archives/*.deb "$rootfs"/tree/var/lib/apt/lists/* "$rootfs"/tree/dev/*
    if compgen -G "$HOST_CAS/*.crt" >/dev/null; then
      cp "$HOST_CAS"/*.crt "$rootfs/tree/usr/local/share/ca-certificates/"
      chroot "$rootfs/tree" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates in the base tree failed"
    fi
    touch "$rootfs/.complete"
  else
    step 3/8 "base image: debootstrap's tree cached in $rootfs"
  fi
  tar -C "$rootfs/tree" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null || die "docker import of the base image failed"
fi

# [4] the Kafka image ---------------------------------------------------------------------------
KAFKA_IMAGE="aevatar.local/kafka:$KAFKA_VERSION-$base_key"
if docker image inspect "$KAFKA_IMAGE" >/dev/null 2>&1 &&
  [ "$(docker image inspect -f '{{ index .Config.Labels "aevatar.start-sha" }}' "$KAFKA_IMAGE")" = "$(sha256sum deploy/compose/kafka-start.sh | cut -c1-16)" ]; then
  step 4/8 "Kafka image $KAFKA_IMAGE present"
else
  step 4/8 "Kafka image: Java 17 from Debian and the broker jars (cold: 1-2 min)"
  lib=$(.venv/bin/python -c 'from streams.broker import ManagedBroker; from streams.settings import Settings
b = ManagedBroker(Settings()); b.installed() or b.install(); print(b.lib)') || die "the Kafka jars could not be resolved"
  ctx="$CACHE/kafka-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -r "$lib" "$ctx/lib"
  cp deploy/compose/kafka-start.sh "$ctx/"
  DOCKER_BUILDKIT=0 docker build -q --network host -f deploy/compose/kafka.Dockerfile \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --label "aevatar.start-sha=$(sha256sum deploy/compose/kafka-start.sh | cut -c1-16)" \
    -t "$KAFKA_IMAGE" "$ctx" >"$CACHE/kafka-build.log" 2>&1 ||
    { tail -n 20 "$CACHE/kafka-build.log" >&2; die "the Kafka image did not build"; }
  rm -rf "$ctx"
fi
export AEVATAR_COMPOSE_KAFKA_IMAGE=$KAFKA_IMAGE

# [5] the platform image ------------------------------------------------------------------------
step 5/8 "platform image aevatar-sandbox:dev (Dockerfile, BASE_IMAGE=$BASE_IMAGE, classic builder)"
DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t aevatar-sandbox:dev . \
  >"$CACHE/platform-build.log" 2>&1 || { tail -n 30 "$CACHE/platform-build.log" >&2; die "the platform image did not build"; }

# [6] up ----------------------------------------------------------------------------------------
api_key_line=$(.venv/bin/aevatar-sandbox apikey compose-check)
API_KEY=$(printf '%s\n' "$api_key_line" | sed -n 's/^key:[[:space:]]*//p' | head -n1)
API_ENTRY=$(printf '%s\n' "$api_key_line" | grep -oE 'compose-check:[0-9a-f]{64}' | head -n1)
[ -n "$API_KEY" ] && [ -n "$API_ENTRY" ] || die "aevatar-sandbox apikey printed no key and entry: $api_key_line"
export AEVATAR_API_KEYS=$API_ENTRY
AEVATAR_WEBHOOK_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AEVATAR_WEBHOOK_SECRET
step 6/8 "docker compose up -d ${SERVICES[*]} (gateway on 127.0.0.1:$AEVATAR_COMPOSE_GATEWAY_PORT)"
"${COMPOSE[@]}" up -d --no-build "${SERVICES[@]}" >"$CACHE/up.log" 2>&1 ||
  { tail -n 30 "$CACHE/up.log" >&2; die "docker compose up failed"; }
gw="http://127.0.0.1:$AEVATAR_COMPOSE_GATEWAY_PORT"
for _ in $(seq 1 240); do
  curl -sf -m 2 "$gw/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf -m 2 "$gw/readyz" >/dev/null || die "the gateway did not answer on $gw/readyz"

# [7] hello world -------------------------------------------------------------------------------
step 7/8 "POST $gw/v1/executions?wait=true print('hello')"
result=""
for _ in $(seq 1 10); do  # the executor may still be joining its group
  result=$(curl -s -m 130 -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
    -d '{"language": "python", "code": "print(\"hello\")"}' "$gw/v1/executions?wait=true") || true
  printf '%s' "$result" | grep -q '"state"' && break
  sleep 3
done
echo "compose-check: result: $result" >&2
printf '%s' "$result" | .venv/bin/python -c '
import json, sys
r = json.load(sys.stdin)
assert (r["state"], r["stdout"], r["exit_code"]) == ("SUCCEEDED", "hello\n", 0), r
' || die "the hello world did not come back as SUCCEEDED hello"

step 8/8 "docker compose down -v"
echo "compose-check: OK: hello world through docker compose in $(($(date +%s) - started))s"
