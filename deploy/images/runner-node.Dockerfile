# Runner image for the JavaScript family (JavaScript, TypeScript through a compile step).
# docker build -f deploy/images/runner-node.Dockerfile -t ghcr.io/aevatar/sandbox-runner-node:18 deploy/images
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && groupadd --gid 65532 sandbox && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin sandbox
USER 65532:65532
WORKDIR /work
