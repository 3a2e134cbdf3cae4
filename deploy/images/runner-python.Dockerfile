# Runner image for the Python family (runtime/languages/python.py runs /usr/bin/python3.11 -I -S main.py).
# Minimal: Debian's python3.11, /bin/sh and cp (the Job's container stages /input into /work), nothing else.
# docker build -f deploy/images/runner-python.Dockerfile -t ghcr.io/aevatar/sandbox-runner-python:3.11 deploy/images
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && groupadd --gid 65532 sandbox && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin sandbox
USER 65532:65532
WORKDIR /work
