#!/bin/bash
# Formats the log dir once and runs the broker in the foreground. Env: KAFKA_PORT, KAFKA_CONTROLLER_PORT,
# KAFKA_HOST (the address it listens on and advertises), KAFKA_LOG_DIRS, KAFKA_MESSAGE_MAX_BYTES.
set -euo pipefail
port=${KAFKA_PORT:-9092} controller=${KAFKA_CONTROLLER_PORT:-9093} host=${KAFKA_HOST:-127.0.0.1}
logs=${KAFKA_LOG_DIRS:-/var/lib/kafka/data}
mkdir -p "$logs"
# The managed broker's settings (streams/broker.py), on the given address.
cat >/tmp/server.properties <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$host:$controller
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller
advertised.listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=${KAFKA_MESSAGE_MAX_BYTES:-8454144}
replica.fetch.max.bytes=${KAFKA_MESSAGE_MAX_BYTES:-8454144}
PROPS
java=(java -Xms256m -Xmx512m -cp "/opt/kafka/lib/*")
if [ ! -f "$logs/meta.properties" ]; then
  "${java[@]}" kafka.tools.StorageTool format --standalone -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
    -c /tmp/server.properties
fi
exec "${java[@]}" kafka.Kafka /tmp/server.properties
