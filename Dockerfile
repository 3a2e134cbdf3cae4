# syntax=docker/dockerfile:1
# The platform image: the gateway, the processors and the executor all run from it (docker-compose.yml).
# Multi-stage: wheels are built with the compiler in `build`, and only they are installed in `runtime`.
# It runs as the unprivileged user `aevatar` (uid 10001). Only the executor is started as root, because
# its supervisor must setuid() to one host uid per sandbox slot and write cgroups; see docker-compose.yml.

# BASE_IMAGE: Debian bookworm with python3.11 (`python`) and venv. The default is the public image;
# scripts/compose-check.sh gives a locally imported one where no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libseccomp-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The source stays at /opt/aevatar: the codec reads every schema version from schemas/ beside the packages,
# so the project is installed in place (editable) rather than as a wheel that would leave schemas/ out.
WORKDIR /opt/aevatar
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY core/ core/
COPY streams/ streams/
COPY processors/ processors/
COPY runtime/ runtime/
COPY gateway/ gateway/
COPY aevatar_cli/ aevatar_cli/
RUN pip install --no-cache-dir -e . opentelemetry-sdk opentelemetry-exporter-otlp-proto-http \
 && python -m compileall -q core streams processors runtime gateway aevatar_cli
# The sandbox-exec helper (runtime/sandbox_exec.c), built here with the compiler: bubblewrap starts through it.
RUN python -m runtime.sandbox_exec

FROM ${BASE_IMAGE} AS runtime
# bubblewrap and libseccomp: the local sandbox backend. tini: reaps zombies as PID 1 and forwards signals.
# python3.11 and python3.11-venv from Debian: the sandboxes' Python is /usr/bin/python3.11 through the
# venv /opt/aevatar-sandbox/python (runtime/languages/python.py, core/libraries.py; as scripts/install.sh
# makes it), not the platform's own interpreter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap libseccomp2 tini python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/* \
 && /usr/bin/python3.11 -m venv --without-pip /opt/aevatar-sandbox/python \
 && install -d -m 0755 /opt/aevatar-sandbox/node-libs /opt/aevatar-sandbox/rust-libs \
 && chmod -R a+rX /opt/aevatar-sandbox \
 && groupadd --system --gid 10001 aevatar \
 && useradd --system --uid 10001 --gid aevatar --home-dir /var/lib/aevatar --create-home aevatar \
 && install -d -o aevatar -g aevatar /var/lib/aevatar/data /var/lib/aevatar/cache \
 && install -d -m 0755 /var/lib/aevatar-sandbox
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/aevatar /opt/aevatar
COPY --from=build /var/cache/aevatar-sandbox/bin /var/cache/aevatar-sandbox/bin
ENV PATH=/opt/venv/bin:$PATH
# The executor's cgroup delegation (run as root, only by the executor service). Docker mounts the
# container's cgroups read-only. cgroup v2: every process is in the root, where no controller can be
# enabled for children, so this remounts it read-write, moves the container's processes to a leaf
# `init` group and enables the controllers for the sandboxes' groups. cgroup v1 (one hierarchy per
# controller, the container's own group bind-mounted at /sys/fs/cgroup/<controller>): each is
# remounted read-write (a bind remount: its own flags only), and the runs' groups are made below it. Then it runs the command.
RUN printf '%s\n' \
      '#!/bin/sh' \
      'set -eu' \
      'if [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then' \
      '  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true' \
      '  mkdir -p /sys/fs/cgroup/init' \
      '  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true' \
      '  sed -e "s/ / +/g" -e "s/^/+/" < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control' \
      'elif [ "$(id -u)" = 0 ] && [ -d /sys/fs/cgroup/memory ]; then' \
      '  for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d" 2>/dev/null || true; done' \
      'fi' \
      'exec "$@"' \
      > /usr/local/bin/aevatar-cgroup-delegate \
 && chmod 0755 /usr/local/bin/aevatar-cgroup-delegate
ENV AEVATAR_DATA_DIR=/var/lib/aevatar/data \
    AEVATAR_CACHE_DIR=/var/lib/aevatar/cache \
    PYTHONUNBUFFERED=1
USER aevatar
WORKDIR /var/lib/aevatar
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["aevatar-sandbox", "--help"]
