#!/usr/bin/env bash
# Spark Structured Streaming for `tickpipe spark` and its tests: Java 17 and Maven from Debian
# if missing, then the Kafka connector (spark-sql-kafka-0-10) and the jars it needs beyond
# pyspark's own (spark-token-provider-kafka-0-10, kafka-clients, commons-pool2) from Maven
# Central into ~/.cache/tickpipe/spark-kafka-<version>/libs by scripts/maven-jars.sh (skipped
# when already there). The job passes them with spark.jars (tickpipe.spark.jars), so nothing
# is resolved through ivy at run time. Beside them, Hadoop's S3A file system (hadoop-aws and the
# AWS SDK bundle, ~690 MB) into ~/.cache/tickpipe/spark-s3a-<version>/libs, for a checkpoint on
# S3 (the job puts it on the class path only then). pyspark itself is the `spark` extra:
# pip install 'tickpipe[spark]'. Prints nothing more when all is in place.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
[ ${#need[@]} -eq 0 ] || bash scripts/apt-install.sh "${need[@]}"
# Only what pyspark does not ship: its own scala, slf4j, codecs and hadoop jars stay its own.
bash scripts/maven-jars.sh scripts/spark/pom.xml spark.version spark-kafka spark-sql-kafka-0-10_2.13- \
    -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2
bash scripts/maven-jars.sh scripts/spark/s3a-pom.xml hadoop.version spark-s3a hadoop-aws-
