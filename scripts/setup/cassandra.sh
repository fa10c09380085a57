#!/usr/bin/env bash
# Apache Cassandra for the Cassandra store tests: Java 17 and Maven from Debian if missing,
# then the node's jars (cassandra-all and its runtime dependencies) from Maven Central into a
# cache outside git (skipped when already there). Prints nothing more when all is in place.
# The tests find the jars through cassandra_libs (tests/servers/cassandra.py) at the same path
# and start the node with scripts/cassandra/cassandra.yaml.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
[ ${#need[@]} -eq 0 ] || bash scripts/apt-install.sh "${need[@]}"
bash scripts/maven-jars.sh scripts/cassandra/pom.xml cassandra.version cassandra cassandra-all-
