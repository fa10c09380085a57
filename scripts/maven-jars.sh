#!/usr/bin/env bash
# Copy a committed pom's runtime dependencies from Maven Central into a cache outside git:
#   maven-jars.sh POM VERSION_PROPERTY NAME MAIN_JAR_PREFIX
# puts them in ~/.cache/tickpipe/NAME-<version>/libs (or under $XDG_CACHE_HOME), where the
# test fixtures look (tests/servers/). Skipped, silently, when a complete copy is there.
# Used by scripts/setup/kafka.sh and cassandra.sh.
set -euo pipefail
pom=$1 property=$2 name=$3 main_jar=$4
version=$(sed -n "s:.*<${property}>\(.*\)</${property}>.*:\1:p" "$pom")
libs="${XDG_CACHE_HOME:-$HOME/.cache}/tickpipe/${name}-${version}/libs"
if [ -f "$libs/.complete" ]; then
    exit 0
fi
echo "fetching ${name} ${version} jars from Maven Central into ${libs}"
mkdir -p "$libs"
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
ls "$libs/${main_jar}"*.jar >/dev/null
touch "$libs/.complete"
