#!/usr/bin/env bash
# Apache Kafka for the distributed-mode tests: Java, Maven and kcat from Debian, then the
# broker's jars from Maven Central into a cache outside git (skipped when already there).
# Prints nothing more when all is in place. The tests find the jars through kafka_libs
# (tests/servers/kafka.py) at the same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v java >/dev/null || need+=(default-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v kcat >/dev/null || need+=(kcat)
[ ${#need[@]} -eq 0 ] || bash scripts/apt-install.sh "${need[@]}"
bash scripts/maven-jars.sh scripts/kafka/pom.xml kafka.version kafka kafka_2.13-
