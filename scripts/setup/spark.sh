#!/usr/bin/env bash
# Spark Structured Streaming for `tickpipe spark` and its tests: Java 17 and Maven from Debian
# if missing, then the Kafka connector (spark-sql-kafka-0-10) and the jars it needs beyond
# pyspark's own (spark-token-provider-kafka-0-10, kafka-clients, commons-pool2) from Maven
# Central into a cache outside git (skipped when already there). The job passes them with
# spark.jars (tickpipe.spark.jars), so nothing is resolved through ivy at run time. pyspark
# itself is the `spark` extra: pip install 'tickpipe[spark]'. Prints nothing more when all is
# in place.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
[ ${#need[@]} -eq 0 ] || bash scripts/apt-install.sh "${need[@]}"
pom=scripts/spark/pom.xml
version=$(sed -n "s:.*<spark.version>\(.*\)</spark.version>.*:\1:p" "$pom")
jars="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/spark-kafka-${version}/jars"
[ -f "$jars/.complete" ] && exit 0
echo "fetching the Spark ${version} Kafka connector jars from Maven Central into ${jars}"
mkdir -p "$jars"
# Only what pyspark does not ship: its own scala, slf4j, codecs and hadoop jars stay its own.
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2 \
    -DoutputDirectory="$jars"
ls "$jars/spark-sql-kafka-0-10_2.13-${version}.jar" >/dev/null
touch "$jars/.complete"
