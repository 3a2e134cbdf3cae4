# Runner image for the native family (C, C++): the compile init container and the run container both use it.
# docker build -f deploy/images/runner-native.Dockerfile -t ghcr.io/aevatar/sandbox-runner-native:12 deploy/images
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && groupadd --gid 65532 sandbox && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin sandbox
USER 65532:65532
WORKDIR /work
