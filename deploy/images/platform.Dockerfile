# The platform image: gateway, processors and executors (`aevatar-sandbox gateway`, `aevatar-sandbox worker <role>`).
# Build from the repo root:  docker build -f deploy/images/platform.Dockerfile -t ghcr.io/aevatar/aevatar-sandbox:0.1.0 .
# (Not built in this repo's CI: the development machines have no Docker.)

# The sandbox-exec helper (runtime/sandbox_exec.c), through which the local backend starts bubblewrap:
# built with a compiler in a stage of its own, so the image carries the binary and no compiler. Without
# it the local backend falls back to a slower `preexec_fn` spawn (runtime/sandbox_exec.py).
FROM python:3.11-slim-bookworm AS helper
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY processors processors
COPY runtime runtime
COPY gateway gateway
COPY aevatar_cli aevatar_cli
COPY schemas schemas
RUN pip install --no-cache-dir -e . && python -m runtime.sandbox_exec

FROM python:3.11-slim-bookworm
# The local backend's host tools, for a single-node use of this image; executors on Kubernetes do not need them.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
# Root-owned and not writable by others, as runtime/sandbox_exec.py's `trusted` requires.
COPY --from=helper /var/cache/aevatar-sandbox/bin /var/cache/aevatar-sandbox/bin
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY processors processors
COPY runtime runtime
COPY gateway gateway
COPY aevatar_cli aevatar_cli
COPY schemas schemas
# Editable: streams/codec.py reads the Avro schemas from ../schemas beside the package.
RUN python -m venv /opt/aevatar && /opt/aevatar/bin/pip install --no-cache-dir -e . \
    && groupadd --gid 10001 aevatar \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin aevatar
ENV PATH=/opt/aevatar/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["aevatar-sandbox"]
CMD ["gateway"]
