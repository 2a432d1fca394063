#!/usr/bin/env bash
# The Apache RocketMQ Java client (org.apache.rocketmq:rocketmq-client from Maven Central) for
# the Java interop peer tests/java/Peer.java (used by tests/java_interop.rs).
#
# Usage:
#   scripts/java-peer.sh install      fetch the client jars if missing
#   scripts/java-peer.sh classpath    install if missing, then print the classpath ('<lib>/*')
#   scripts/java-peer.sh run ARGS...  install if missing, then java -cp <classpath> tests/java/Peer.java ARGS...
#
# Environment:
#   RMQ_JAVA_ROOT        jar cache (default $HOME/.cache/rocketmq-binding/java; the same cache as
#                        scripts/rocketmq-local.sh); jars in <version>/lib-client
#   RMQ_CLIENT_VERSION   client version (default 5.3.3; 4.9.8 also has a profile)
#
# The jars are copied by Maven (profile client-<version> of tools/rocketmq-java/pom.xml; ~/.m2 is
# the download cache), ~12 s cold; a complete set is marked with <lib>/.complete.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/../tools/rocketmq-java/pom.xml"
RMQ_JAVA_ROOT="${RMQ_JAVA_ROOT:-$HOME/.cache/rocketmq-binding/java}"
VERSION="${RMQ_CLIENT_VERSION:-5.3.3}"
LIB="$RMQ_JAVA_ROOT/$VERSION/lib-client"

log() { printf 'java-peer: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install() {
  [[ -f "$LIB/.complete" ]] && return 0
  command -v javac >/dev/null || die "javac not found (Java 17 JDK: the peer is compiled; apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found (fetches the client from Maven Central; apt-get install maven)"
  local tmp="$LIB.tmp.$$"
  log "fetching rocketmq-client $VERSION jars into $LIB (Maven profile client-$VERSION)"
  rm -rf "$tmp"
  mvn -q -B -Dstyle.color=never -f "$POM" -P "client-$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 || {
    rm -rf "$tmp"
    die "mvn could not fetch rocketmq-client $VERSION"
  }
  ls "$tmp"/rocketmq-client-*.jar >/dev/null 2>&1 || {
    rm -rf "$tmp"
    die "no rocketmq-client jar for $VERSION (no client-$VERSION profile in $POM?)"
  }
  touch "$tmp/.complete"
  mkdir -p "$(dirname "$LIB")"
  # Replace an incomplete set (a fetch that never finished) in one step.
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
}

case "${1:-}" in
install) install ;;
classpath) install; printf '%s/*\n' "$LIB" ;;
run)
  shift
  install
  exec java -cp "$LIB/*" "$HERE/../tests/java/Peer.java" "$@"
  ;;
*) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
