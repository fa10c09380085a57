#!/usr/bin/env bash
# A replicated 3-node Apache Kafka cluster (KRaft, no ZooKeeper) on 127.0.0.1, from the jars
# scripts/setup/kafka.sh fetches from Maven Central:
#   scripts/kafka-cluster.sh start [NODE...]   start the nodes (1, 2, 3; default all) that are
#                                              not running (each formatted on its first start)
#   scripts/kafka-cluster.sh stop     stop every node (their data stays for the next start)
#   scripts/kafka-cluster.sh status   one line per node
# Combined mode: each node is a broker and a KRaft controller, the three forming a 3-voter
# quorum, so the cluster takes one node's loss (the quorum keeps a majority, partitions
# replicated 3 times with min.insync.replicas 2 keep producing); with two down, producing
# stops until one returns. Brokers listen on PORT, PORT+2, PORT+4 and controllers on the odd
# ports between (PORT = $TICKPIPE_KAFKA_CLUSTER_PORT, 9092): bootstrap
# 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096. State (config, data, logs, pids) lives in
# $TICKPIPE_KAFKA_CLUSTER_DIR (~/.cache/tickpipe/kafka-cluster), outside git. Each JVM gets a
# small heap (-Xmx256m): three fit on a laptop. The tests start one through this script too.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${TICKPIPE_KAFKA_CLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/kafka-cluster}"
port="${TICKPIPE_KAFKA_CLUSTER_PORT:-9092}"
nodes=(1 2 3)

broker_port() { echo $((port + 2 * ($1 - 1))); }
controller_port() { echo $((port + 2 * ($1 - 1) + 1)); }
pid_of() { cat "$dir/node$1/pid" 2>/dev/null || true; }
running() {
    local pid
    pid=$(pid_of "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

write_config() {  # node id
    local n=$1 voters="" v
    for v in "${nodes[@]}"; do voters+="${voters:+,}$v@127.0.0.1:$(controller_port "$v")"; done
    mkdir -p "$dir/node$n/data"
    cat >"$dir/node$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/node$n/data
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# A dead node is fenced (its partitions get new leaders) after 3 s, not 9 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
replica.lag.time.max.ms=10000
EOF
    cat >"$dir/node$n/log4j2.properties" <<EOF
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d %p %c: %m%n
EOF
}

java_node() {  # node id, main class, args...
    local n=$1
    shift
    exec setsid java -Xms128m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        "-Dlog4j2.configurationFile=$dir/node$n/log4j2.properties" -cp "$libs/*" "$@"
}

start() {  # [node...]
    bash "$here/setup/kafka.sh"
    local version n m started=() wanted=("${@:-${nodes[@]}}")
    version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
    libs="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/kafka-$version/libs"
    mkdir -p "$dir"
    [ -f "$dir/cluster.id" ] || java -cp "$libs/*" kafka.tools.StorageTool random-uuid \
        >"$dir/cluster.id"
    for n in "${wanted[@]}"; do
        [[ " ${nodes[*]} " == *" $n "* ]] \
            || { echo "kafka cluster: no node $n (nodes: ${nodes[*]})" >&2; exit 2; }
        running "$n" && continue
        write_config "$n"
        if [ ! -f "$dir/node$n/data/meta.properties" ]; then
            (java_node "$n" kafka.tools.StorageTool format -t "$(cat "$dir/cluster.id")" \
                -c "$dir/node$n/server.properties") >>"$dir/node$n/broker.log" 2>&1
        fi
        # setsid execs the JVM in place: the pid is the broker's (for `stop`, a test's SIGKILL).
        java_node "$n" kafka.Kafka "$dir/node$n/server.properties" \
            >>"$dir/node$n/broker.log" 2>&1 </dev/null &
        echo $! >"$dir/node$n/pid"
        started+=("$n")
    done
    [ ${#started[@]} -eq 0 ] && { echo "kafka cluster: already running"; return; }
    # Ready when a started node's metadata names every running node (the quorum has a leader).
    local want=0 deadline=$((SECONDS + 120))
    for n in "${nodes[@]}"; do running "$n" && want=$((want + 1)); done
    for n in "${started[@]}"; do
        until kcat -L -b "127.0.0.1:$(broker_port "$n")" -m 2 2>/dev/null \
            | grep -q " $want brokers:"; do
            for m in "${started[@]}"; do
                running "$m" || { echo "kafka cluster: node $m exited; its log is" \
                    "$dir/node$m/broker.log" >&2; exit 1; }
            done
            [ $SECONDS -lt $deadline ] || { echo "kafka cluster: node $n did not answer in" \
                "120 s; its log is $dir/node$n/broker.log" >&2; exit 1; }
            sleep 0.5
        done
    done
    echo "kafka cluster: started node(s) ${started[*]}; bootstrap $(bootstrap)"
}

bootstrap() {
    local out="" n
    for n in "${nodes[@]}"; do out+="${out:+,}127.0.0.1:$(broker_port "$n")"; done
    echo "$out"
}

stop() {
    # All at once: a node stopping alone waits for a controlled shutdown the others grant.
    local n pids=()
    for n in "${nodes[@]}"; do
        running "$n" && pids+=("$(pid_of "$n")") && kill "$(pid_of "$n")"
    done
    for _ in $(seq 60); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.5
    done
    for n in "${nodes[@]}"; do
        running "$n" && kill -9 "$(pid_of "$n")"
        rm -f "$dir/node$n/pid"
    done
    echo "kafka cluster: stopped"
}

status() {
    local n
    for n in "${nodes[@]}"; do
        if running "$n"; then
            echo "node $n: running, pid $(pid_of "$n"), broker 127.0.0.1:$(broker_port "$n")"
        else
            echo "node $n: stopped"
        fi
    done
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start [NODE...]|stop|status" >&2; exit 2 ;;
esac
