# A single-node Kafka broker (KRaft) for `scripts/compose-check.sh`, where the public apache/kafka
# image cannot be pulled: Debian's Java runtime and the broker jars that `aevatar-sandbox kafka`
# resolves from Maven Central (deploy/kafka/pom.xml), copied into the build context as lib/.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
COPY lib/ /opt/kafka/lib/
COPY kafka-start.sh /opt/kafka/kafka-start.sh
ENTRYPOINT ["/bin/bash", "/opt/kafka/kafka-start.sh"]
