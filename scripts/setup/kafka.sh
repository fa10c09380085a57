#!/usr/bin/env bash
# Apache Kafka for the distributed-mode tests: Java, Maven and kcat from Debian, then the
# broker's jars from Maven Central into a cache outside git (skipped when already there).
# Prints nothing more when all is in place. The tests find the jars through
# tickpipe_kafka_libs (tests/servers/kafka.py) at the same path.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v java >/dev/null || need+=(default-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v kcat >/dev/null || need+=(kcat)
[ ${#need[@]} -eq 0 ] || bash scripts/apt-install.sh "${need[@]}"

pom=scripts/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
libs="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/kafka-${version}/libs"
if [ -f "$libs/.complete" ]; then
    exit 0
fi
echo "fetching Apache Kafka ${version} jars from Maven Central into ${libs}"
mkdir -p "$libs"
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
ls "$libs"/kafka_2.13-*.jar >/dev/null
touch "$libs/.complete"
