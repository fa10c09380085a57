#!/usr/bin/env bash
# Copy a committed pom's runtime dependencies from Maven Central into a cache outside git:
#   maven-jars.sh POM VERSION_PROPERTY NAME MAIN_JAR_PREFIX [MAVEN_ARG...]
# puts them in ~/.cache/tickpipe/NAME-<version>/libs (or under $XDG_CACHE_HOME), where the
# test fixtures (tests/servers/) and tickpipe.spark.jars look. MAVEN_ARGs go to
# dependency:copy-dependencies as they are (e.g. -DincludeArtifactIds=... to copy only some).
# Skipped, silently, when a complete copy is there.
# Used by scripts/setup/kafka.sh, cassandra.sh and spark.sh.
set -euo pipefail
pom=$1 property=$2 name=$3 main_jar=$4
shift 4
version=$(sed -n "s:.*<${property}>\(.*\)</${property}>.*:\1:p" "$pom")
libs="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/${name}-${version}/libs"
if [ -f "$libs/.complete" ]; then
    exit 0
fi
echo "fetching ${name} ${version} jars from Maven Central into ${libs}"
mkdir -p "$libs"
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$libs" "$@"
ls "$libs/${main_jar}"*.jar >/dev/null
touch "$libs/.complete"
