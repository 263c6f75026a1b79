#!/usr/bin/env bash
# Apache Kafka 3.9 (KRaft, one combined broker+controller) from Maven Central jars, no Docker.
# usage: kafka.sh start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PID_FILE="$KAFKA_DIR/kafka.pid"

ensure_java() {
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    log "installing Java 17 and Maven from Debian"
    apt_install openjdk-17-jre-headless maven
  fi
}

fetch_jars() {
  if [[ -n "${KALO_KAFKA_HOME:-}" ]]; then
    [[ -f "$KAFKA_HOME/libs/.complete" ]] || { log "no Kafka jars in KALO_KAFKA_HOME=$KAFKA_HOME"; exit 1; }
    return 0
  fi
  if [[ ! -f "$KAFKA_HOME/libs/.complete" || "$LOCAL_DIR/pom.xml" -nt "$KAFKA_HOME/libs/.complete" ]]; then
    log "fetching Kafka jars from Maven Central"
    rm -rf "$KAFKA_HOME/libs"
    mvn -q -B -f "$LOCAL_DIR/pom.xml" dependency:copy-dependencies
    touch "$KAFKA_HOME/libs/.complete"
  fi
}

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=12
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# Large declarations travel as one message: keep these limits in step with
# the topic registry (max.message.bytes) and the clients (services/common/kafka.py).
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
socket.request.max.bytes=104857600
PROPS
  cat >"$KAFKA_DIR/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
PROPS
}

JAVA_OPTS=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties" "-Dkafka.logs.dir=$KAFKA_DIR"
  -cp "$KAFKA_HOME/libs/*")

answers() {
  # A metadata request through the Python client: the broker is really serving.
  (cd "$REPO_DIR" && "$PYTHON" -m services.common.kafka_ping "127.0.0.1:$KAFKA_PORT")
}

start() {
  if pid_alive "$PID_FILE"; then log "Kafka already running (pid $(cat "$PID_FILE"), port $KAFKA_PORT)"; return 0; fi
  ensure_java
  fetch_jars
  write_config
  if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
    java "${JAVA_OPTS[@]}" kafka.tools.StorageTool format -t "$(java "${JAVA_OPTS[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$KAFKA_DIR/server.properties" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/stdout.log" 2>&1 &
  echo $! >"$PID_FILE"
  if ! wait_for "Kafka metadata on port $KAFKA_PORT" 90 answers; then
    tail -n 30 "$KAFKA_DIR/stdout.log" "$KAFKA_DIR/server.log" >&2 || true
    exit 1
  fi
  log "Kafka ready"
}

stop() {
  if pid_alive "$PID_FILE"; then
    local pid; pid="$(cat "$PID_FILE")"
    log "stopping Kafka (pid $pid)"
    kill "$pid"
    wait_for "Kafka to stop" 60 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

status() {
  if pid_alive "$PID_FILE" && answers; then echo "kafka: up (127.0.0.1:$KAFKA_PORT, pid $(cat "$PID_FILE"))"
  else echo "kafka: down"; return 1; fi
}

"${1:-status}"
