#!/usr/bin/env bash
# Local RocketMQ (name server + broker) for development and CI, on 127.0.0.1 only.
#
# Servers (RMQ_SERVER):
#   java   (default) Apache RocketMQ 5.3.3 from Maven Central (Java 17), ACL 2.0
#   java4            Apache RocketMQ 4.9.7 from Maven Central, ACL 1.0 (plain_acl.yml)
#                    (the newest 4.x server on Maven Central: namesrv/broker 4.9.8 were never published)
#   rust             the Rust reimplementation, rocketmq-namesrv/-broker 1.0.0 from crates.io
#
# Usage:
#   scripts/rocketmq-local.sh install                 fetch/build the chosen servers if missing
#   scripts/rocketmq-local.sh start                   pair "default": name server 9876, broker 10911 (+10909, HA 10912)
#   scripts/rocketmq-local.sh start-acl               pair "acl": 19876 / 20911 / 20912, authentication on
#                                                     (user rocketmq, password 12345678)
#   scripts/rocketmq-local.sh start --name N --namesrv-port P --broker-port B [--acl] [--no-auto-create]
#                                                     any other pair (broker uses B, B-2 and B+1);
#                                                     --no-auto-create: autoCreateTopicEnable = false
#   scripts/rocketmq-local.sh stop [--name N]         stop one pair or cluster (default: every pair and cluster)
#   scripts/rocketmq-local.sh status                  show pairs, servers, pids, addresses
#   scripts/rocketmq-local.sh running [N]             exit 0 when pair N (default "default") runs with the chosen
#                                                     server, i.e. when `start` would leave it alone
#   scripts/rocketmq-local.sh broker-stop N [--kill]  stop (SIGTERM, or SIGKILL) only the broker of pair N
#   scripts/rocketmq-local.sh broker-start N          start the broker of pair N again, keeping its store
#   scripts/rocketmq-local.sh env                     print the env file (ROCKETMQ_NAMESRV=…, ROCKETMQ_ACL_NAMESRV=…,
#                                                     ROCKETMQ_SERVER=java-5.3.3, ROCKETMQ_CLUSTER_NAMESRV=… …)
#
# Clusters (one name server, several master brokers of brokerClusterName DefaultCluster):
#   scripts/rocketmq-local.sh start-cluster [--name N] [--namesrv-port P] [--broker-ports A,B,…]
#                                                     default: cluster "cluster", name server 31876, brokers
#                                                     broker-a 32911 and broker-b 33911 (each uses B, B-2 and B+1),
#                                                     own stores; its brokers are addressed as N/a, N/b, …;
#                                                     idempotent like `start`; env: ROCKETMQ_CLUSTER_NAMESRV,
#                                                     ROCKETMQ_CLUSTER_NAME, ROCKETMQ_CLUSTER_BROKERS (cluster "cluster")
#   scripts/rocketmq-local.sh broker-stop N/a [--kill]  / broker-start N/a   one broker of a cluster, store kept
#   scripts/rocketmq-local.sh broker-pause N/a        SIGSTOP the broker (hung, not dead: its sockets stay open)
#   scripts/rocketmq-local.sh broker-resume N/a       SIGCONT it
#   scripts/rocketmq-local.sh topic-create N TOPIC [--queues Q]
#                                                     create TOPIC (Q read/write queues, default 4) on every broker
#                                                     of cluster N and wait until the name server routes it to all
#   scripts/rocketmq-local.sh route N TOPIC           print the broker names the name server of N routes TOPIC to
#
# Environment:
#   RMQ_SERVER       java (default), java4 or rust; a pair keeps the server it was started with
#   RMQ_VERSION      server version (default 5.3.3 / 4.9.7 / 1.0.0 by RMQ_SERVER)
#   RMQ_STATE_DIR    pid files, stores, logs, env file (default ${TMPDIR:-/tmp}/rocketmq-local-$UID)
#   RMQ_JAVA_ROOT    Java jar cache (default $HOME/.cache/rocketmq-binding/java; jars in <version>/lib,
#                    copied by Maven from tools/rocketmq-java/pom.xml; ~/.m2 is the download cache)
#   RMQ_JAVA_OPTS    extra JVM options for both Java servers (appended)
#   RMQ_JAVA_TUNING  GC/JIT options for both (default -XX:+UseSerialGC -Xss512k, name server also
#                    -XX:TieredStopAtLevel=1; empty: the JVM's defaults, G1 and C2)
#   RMQ_ROOT         Rust install root (default $HOME/.local/rocketmq-rust; binaries in $RMQ_ROOT/bin)
#   CARGO_TARGET_DIR shared target dir for both Rust installs (default $RMQ_ROOT/build-target)
#
# `start` is idempotent: a pair that is already running and listening with the same server is left
# alone; otherwise its processes are stopped and it starts again with a fresh, empty store. Servers
# are stopped by their own recorded pids only. Readiness = the server's boot line in its stdout log
# AND its port accepting.
#
# Java servers: `java -cp '<cache>/<version>/lib/*'` NamesrvStartup / BrokerStartup with ROCKETMQ_HOME
# and -Duser.home in the pair's directory (Java's own logs: <pair>/home/logs/rocketmqlogs/), small heaps
# (name server -Xms128m -Xmx256m, broker -Xms256m -Xmx512m -XX:MaxDirectMemorySize=256m), serial GC,
# C1 only for the name server. Small store (64 MiB commit log, 600 kB consume queues, small index).
# Name server and broker remoting bind 127.0.0.1 (bindAddress; 4.9.7 has no such option); the
# broker's HA listener (B+1) has no bind option in either version, so tools/rocketmq-java/
# bind-loopback.c (LD_PRELOAD, built with cc) turns every wildcard bind of the JVMs into a 127.0.0.1
# bind and refuses every connect() outside loopback (the 5.x name server dials its own
# non-loopback address every few seconds). Broker: autoCreateTopicEnable, autoCreateSubscriptionGroup,
# enablePropertyFilter (SQL92), timerWheelEnable (5.x). ACL: 5.3.3 → ACL 2.0 (authenticationEnabled,
# local metadata provider, initAuthenticationUser); 4.9.7 → aclEnable + $ROCKETMQ_HOME/conf/
# plain_acl.yml. 4.9.7 reads its logback config from $ROCKETMQ_HOME/conf (written here); 5.3.3 from
# a classpath resource. A Java broker is ready when the name server routes its own topic
# (broker-<pair>): 5.3.3 prints its boot line before it is registered about one start in two
# (it registers only with name servers its client's availability scan has seen; else 10 s later).
#
# Rust servers: TOML config, small store, CommitLog micro-batching off.
#
# Measured on this 2-core machine, 2026-12 (shared with other builds: loaded runs are 2-3x slower):
#   install, cold (~/.m2 empty): 5.3.3 jars 17.5 s (134 jars, 83 MB), 4.9.7 12 s (40 jars, 28 MB);
#          client sets 5.3.3 / 4.9.8 ~12 s each; rust 1.0.0: ~15 min (cargo install)
#   start (boot line; CPU seconds at that point), 3 runs each:
#          java 5.3.3 name server 1.8-3.4 s (2.5 s CPU), broker 3.3-4.7 s (4.8 s CPU) plus up to
#          10 s until registered (see above); java4 4.9.7 name server 2.0-2.4 s, broker 4.1-4.8 s;
#          rust 1.0.0 both ~0.3 s. JVM defaults (G1 + C2): name server 3.4-3.8 s (4.9 s CPU),
#          broker 5.2-6.5 s (7 s CPU), RSS 185 / 386 MB instead of 142 / 270-310 MB.
#   idle 5.3.3 broker: ~10 % of a core with C2 (its TimerFlushService), ~33 % with C1 only
#   stop: Java broker SIGTERM ~8-10 s (service thread joins), name server <1 s
#   start-cluster (5.3.3, both brokers side by side): 38-75 s until both are routed, stop 20-40 s,
#          measured at load average 9-20 (other builds on the 2 cores; the figures above are quieter)
set -euo pipefail

RMQ_SERVER="${RMQ_SERVER:-java}"
case "$RMQ_SERVER" in
java) RMQ_VERSION="${RMQ_VERSION:-5.3.3}" ;;
java4) RMQ_VERSION="${RMQ_VERSION:-4.9.7}" ;;
rust) RMQ_VERSION="${RMQ_VERSION:-1.0.0}" ;;
*) printf 'rocketmq-local: error: RMQ_SERVER=%s (java, java4 or rust)\n' "$RMQ_SERVER" >&2; exit 2 ;;
esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA_TOOLS="$HERE/../tools/rocketmq-java"
RMQ_JAVA_ROOT="${RMQ_JAVA_ROOT:-$HOME/.cache/rocketmq-binding/java}"
RMQ_ROOT="${RMQ_ROOT:-$HOME/.local/rocketmq-rust}"
RMQ_STATE_DIR="${RMQ_STATE_DIR:-${TMPDIR:-/tmp}/rocketmq-local-$(id -u)}"
NAMESRV_BIN="$RMQ_ROOT/bin/rocketmq-namesrv-rust"
BROKER_BIN="$RMQ_ROOT/bin/rocketmq-broker-rust"
BIND_SHIM="$RMQ_JAVA_ROOT/bind-loopback.so"
ENV_FILE="$RMQ_STATE_DIR/env"
ACL_USER="rocketmq"
ACL_PASSWORD="12345678"

log() { printf 'rocketmq-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,54p' "$0" | sed 's/^# \{0,1\}//'
}

java_lib() { printf '%s/%s/lib' "$RMQ_JAVA_ROOT" "$1"; }

installed() { # [SERVER VERSION]
  local server=${1:-$RMQ_SERVER} version=${2:-$RMQ_VERSION}
  case "$server" in
  rust) [[ -x "$NAMESRV_BIN" && -x "$BROKER_BIN" ]] ;;
  *) [[ -f "$(java_lib "$version")/.complete" && -f "$BIND_SHIM" ]] ;;
  esac
}

install_rust() {
  command -v cargo >/dev/null || die "cargo not found (needed to install the servers)"
  mkdir -p "$RMQ_ROOT"
  local target="${CARGO_TARGET_DIR:-$RMQ_ROOT/build-target}"
  local crates=()
  [[ -x "$NAMESRV_BIN" ]] || crates+=("rocketmq-namesrv@$RMQ_VERSION")
  [[ -x "$BROKER_BIN" ]] || crates+=("rocketmq-broker@$RMQ_VERSION")
  log "installing ${crates[*]} into $RMQ_ROOT (shared target dir $target; ~15 min cold on 2 cores)"
  CARGO_TARGET_DIR="$target" cargo install --locked "${crates[@]}" --root "$RMQ_ROOT"
}

# build_shim: (re)builds the loopback bind/connect shim when missing or older than its source.
build_shim() {
  [[ -f "$BIND_SHIM" && ! "$JAVA_TOOLS/bind-loopback.c" -nt "$BIND_SHIM" ]] && return 0
  mkdir -p "$RMQ_JAVA_ROOT"
  cc -shared -fPIC -O2 -Wall -o "$BIND_SHIM.tmp.$$" "$JAVA_TOOLS/bind-loopback.c" -ldl
  mv "$BIND_SHIM.tmp.$$" "$BIND_SHIM"
}

install_java() {
  command -v java >/dev/null || die "java not found (Java 17 runs the RocketMQ servers; apt-get install openjdk-17-jdk-headless: the Java interop tests also compile with javac)"
  command -v mvn >/dev/null || die "mvn not found (fetches the servers from Maven Central; apt-get install maven)"
  command -v cc >/dev/null || die "cc not found (builds the loopback bind shim)"
  build_shim
  local lib
  lib=$(java_lib "$RMQ_VERSION")
  if [[ ! -f "$lib/.complete" ]]; then
    log "fetching RocketMQ $RMQ_VERSION jars into $lib (Maven profile server-$RMQ_VERSION)"
    rm -rf "$lib"
    mvn -q -B -Dstyle.color=never -f "$JAVA_TOOLS/pom.xml" -P "server-$RMQ_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" >&2 || {
      rm -rf "$lib"
      die "mvn could not fetch RocketMQ $RMQ_VERSION"
    }
    ls "$lib"/rocketmq-broker-*.jar >/dev/null 2>&1 || {
      rm -rf "$lib"
      die "no rocketmq-broker jar for $RMQ_VERSION (tools/rocketmq-java/pom.xml has no server-$RMQ_VERSION profile?)"
    }
    touch "$lib/.complete"
  fi
}

cmd_install() {
  if installed; then
    log "$RMQ_SERVER $RMQ_VERSION already installed"
    return 0
  fi
  case "$RMQ_SERVER" in
  rust) install_rust ;;
  *) install_java ;;
  esac
  installed || die "install finished but the $RMQ_SERVER $RMQ_VERSION servers are missing"
}

# --- helpers ---------------------------------------------------------------------------------

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f "$1" ]] && cat "$1" 2>/dev/null || true; }

# port_open PORT: something accepts TCP on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

now_ms() { date +%s%3N; }

secs_since() { # START_MS
  local d=$(($(now_ms) - $1))
  printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

# wait_ready LOG MARK PATTERN PORT SECONDS PID: PATTERN (if not empty) in LOG after line MARK,
# and PORT accepting.
wait_ready() {
  local file=$1 mark=$2 pattern=$3 port=$4 secs=$5 pid=$6 i seen=0
  [[ -z "$pattern" ]] && seen=1
  for ((i = 0; i < secs * 10; i++)); do
    if [[ $seen == 0 ]] && tail -n "+$((mark + 1))" "$file" 2>/dev/null | grep -q "$pattern"; then
      seen=1
    fi
    [[ $seen == 1 ]] && port_open "$port" && return 0
    pid_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

be32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }

# route_known PORT TOPIC: the name server on PORT answers GET_ROUTEINFO_BY_TOPIC (105) for TOPIC
# with SUCCESS (one JSON-header remoting request over /dev/tcp).
route_known() {
  local hdr reply
  hdr="{\"code\":105,\"language\":\"JAVA\",\"version\":401,\"opaque\":1,\"flag\":0,\"extFields\":{\"topic\":\"$2\"},\"serializeTypeCurrentRPC\":\"JSON\"}"
  reply=$(
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf '%b%s' "$(be32 $((${#hdr} + 4)))$(be32 ${#hdr})" "$hdr" >&3
    timeout 2 dd bs=4096 count=1 <&3 2>/dev/null | tr -d '\000'
  ) 2>/dev/null
  [[ "$reply" == *'{"code":0,'* ]]
}

log_lines() { [[ -f "$1" ]] && wc -l <"$1" || echo 0; }

stop_pid() { # PIDFILE SIGNAL [SECONDS]
  local pidfile=$1 sig=${2:-TERM} secs=${3:-30} pid i
  pid=$(read_pid "$pidfile")
  if pid_alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    # A SIGSTOPped (paused) server acts on the signal only once it runs again.
    kill -CONT "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      log "pid $pid did not stop after $secs s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pidfile"
}

# stop_pair DIR: broker and name server together (a Java broker takes ~10 s on SIGTERM).
stop_pair() {
  local dir=$1
  stop_pid "$dir/broker.pid" TERM &
  stop_pid "$dir/namesrv.pid" TERM &
  wait
}

pair_dir() { printf '%s/%s' "$RMQ_STATE_DIR" "$1"; }

# Loads NAMESRV_PORT BROKER_PORT ACL AUTO PAIR_SERVER PAIR_VERSION of an existing pair (a cluster
# broker N/a is a pair without its own name server; a cluster N has NAMESRV_PORT MEMBERS
# BROKER_PORTS PAIR_SERVER PAIR_VERSION in cluster.conf).
load_pair() {
  local dir
  dir=$(pair_dir "$1")
  PAIR_SERVER=rust PAIR_VERSION=1.0.0 AUTO=true
  if [[ -f "$dir/cluster.conf" ]]; then
    # shellcheck disable=SC1091
    source "$dir/cluster.conf"
    return 0
  fi
  [[ -f "$dir/pair.conf" ]] || die "no pair named '$1' (start it first)"
  # shellcheck disable=SC1091
  source "$dir/pair.conf"
}

# --- configuration ---------------------------------------------------------------------------

write_rust_config() { # DIR NAMESRV_PORT BROKER_PORT ACL AUTO_CREATE
  local dir=$1 np=$2 bp=$3 acl=$4 auto=$5
  {
    echo '[broker]'
    echo 'brokerIp1 = "127.0.0.1"'
    echo "listenPort = $bp"
    echo "namesrvAddr = \"127.0.0.1:$np\""
    echo "storePathRootDir = \"$dir/store\""
    echo "autoCreateTopicEnable = $auto"
    if [[ "$acl" == 1 ]]; then
      echo 'authenticationEnabled = true'
      echo 'authorizationEnabled = false'
      echo "authConfigPath = \"$dir/auth\""
      echo "initAuthenticationUser = \"$ACL_USER:$ACL_PASSWORD\""
    fi
    echo
    echo '[broker.brokerIdentity]'
    echo "brokerName = \"broker-$(basename "$dir")\""
    echo 'brokerClusterName = "DefaultCluster"'
    echo 'brokerId = 0'
    echo
    echo '[broker.brokerServerConfig]'
    echo 'bindAddress = "127.0.0.1"'
    echo
    echo '[store]'
    echo "storePathRootDir = \"$dir/store\""
    echo 'haListenAddress = "127.0.0.1"'
    echo "haListenPort = $((bp + 1))"
    echo 'mappedFileSizeCommitLog = 67108864'
    echo 'mappedFileSizeConsumeQueue = 60000'
    echo 'maxHashSlotNum = 10000'
    echo 'maxIndexNum = 40000'
    echo 'commitLogMicroBatchEnabled = false'
  } >"$dir/broker.toml"
}

write_java_config() { # DIR NAMESRV_PORT BROKER_PORT ACL AUTO_CREATE SERVER
  local dir=$1 np=$2 bp=$3 acl=$4 auto=$5 server=$6
  printf 'listenPort=%s\nbindAddress=127.0.0.1\n' "$np" >"$dir/namesrv.conf"
  {
    echo 'brokerClusterName=DefaultCluster'
    echo "brokerName=broker-$(basename "$dir")"
    echo 'brokerId=0'
    echo "namesrvAddr=127.0.0.1:$np"
    echo 'brokerIP1=127.0.0.1'
    echo 'bindAddress=127.0.0.1'
    echo "listenPort=$bp"
    echo "haListenPort=$((bp + 1))"
    echo "storePathRootDir=$dir/store"
    echo "storePathCommitLog=$dir/store/commitlog"
    echo "autoCreateTopicEnable=$auto"
    echo 'autoCreateSubscriptionGroup=true'
    echo 'enablePropertyFilter=true'
    echo 'mappedFileSizeCommitLog=67108864'
    echo 'mappedFileSizeConsumeQueue=600000'
    echo 'maxIndexNum=40000'
    echo 'maxHashSlotNum=10000'
    [[ "$server" == java ]] && echo 'timerWheelEnable=true'
    if [[ "$acl" == 1 ]]; then
      case "$server" in
      java)
        echo 'authenticationEnabled=true'
        echo 'authorizationEnabled=false'
        echo 'authenticationProvider=org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider'
        echo 'authenticationMetadataProvider=org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider'
        echo "initAuthenticationUser={\"username\":\"$ACL_USER\",\"password\":\"$ACL_PASSWORD\"}"
        echo "innerClientAuthenticationCredentials={\"accessKey\":\"$ACL_USER\",\"secretKey\":\"$ACL_PASSWORD\"}"
        ;;
      java4) echo 'aclEnable=true' ;;
      esac
    fi
  } >"$dir/broker.conf"
  if [[ "$server" == java4 ]]; then
    mkdir -p "$dir/home/conf"
    cat >"$dir/home/conf/plain_acl.yml" <<EOF
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: $ACL_USER
    secretKey: $ACL_PASSWORD
    admin: true
EOF
    local role
    for role in namesrv broker; do
      cat >"$dir/home/conf/logback_$role.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/home/logs/rocketmqlogs/$role.log</file>
    <encoder><pattern>%d{yyy-MM-dd HH:mm:ss,SSS} %-5p %logger{0} - %m%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
    done
  fi
}

# --- starting --------------------------------------------------------------------------------

# java_run DIR ROLE MAINCLASS HEAP... -- ARGS...: runs one Java server in the background, sets PID.
java_run() {
  local dir=$1 role=$2 main=$3
  shift 3
  # The --add-opens/--add-exports let the store unmap files on Java 17 (4.9.7's recovery after
  # a crash calls jdk.internal.ref.Cleaner and exits with "load exception" without them).
  local jvm=() args=()
  while [[ $# -gt 0 && "$1" != -- ]]; do jvm+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  args=("$@")
  # Serial GC for both; C1 only for the name server (cheap start, idle afterwards), full tiered
  # JIT for the broker (its timer flush loop costs ~33 % of a core idle as C1 code, ~10 % as C2).
  local tuning="-XX:+UseSerialGC -Xss512k"
  [[ "$role" == namesrv ]] && tuning+=" -XX:TieredStopAtLevel=1"
  # shellcheck disable=SC2206
  jvm+=(${RMQ_JAVA_TUNING-$tuning})
  jvm+=(-Duser.home="$dir/home"
    -Djava.net.preferIPv4Stack=true
    --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED)
  [[ "$PAIR_SERVER" == java ]] && jvm+=(-Drmq.logback.configurationFile="rmq.$role.logback.xml")
  # shellcheck disable=SC2206
  [[ -n "${RMQ_JAVA_OPTS:-}" ]] && jvm+=($RMQ_JAVA_OPTS)
  LD_PRELOAD="$BIND_SHIM" ROCKETMQ_HOME="$dir/home" java "${jvm[@]}" \
    -cp "$(java_lib "$PAIR_VERSION")/*" "$main" "${args[@]}" >>"$dir/logs/$role.log" 2>&1 </dev/null &
  PID=$!
}

start_namesrv() { # NAME
  local name=$1 dir mark t0
  dir=$(pair_dir "$name")
  load_pair "$name"
  port_open "$NAMESRV_PORT" && die "port $NAMESRV_PORT is already in use (another name server?)"
  mark=$(log_lines "$dir/logs/namesrv.log")
  t0=$(now_ms)
  case "$PAIR_SERVER" in
  rust)
    HOME="$dir/home" "$NAMESRV_BIN" --bindAddress 127.0.0.1 --listenPort "$NAMESRV_PORT" \
      --rocketmqHome "$dir/home" >>"$dir/logs/namesrv.log" 2>&1 </dev/null &
    PID=$!
    ;;
  *)
    java_run "$dir" namesrv org.apache.rocketmq.namesrv.NamesrvStartup -Xms128m -Xmx256m \
      -- -c "$dir/namesrv.conf"
    ;;
  esac
  echo "$PID" >"$dir/namesrv.pid"
  local ready=''
  [[ "$PAIR_SERVER" != rust ]] && ready='The Name Server boot success'
  wait_ready "$dir/logs/namesrv.log" "$mark" "$ready" "$NAMESRV_PORT" 60 "$PID" || {
    tail -20 "$dir/logs/namesrv.log" >&2 || true
    die "name server '$name' did not start on 127.0.0.1:$NAMESRV_PORT"
  }
  NAMESRV_SECS=$(secs_since "$t0")
}

start_broker() { # NAME
  local name=$1 dir port mark t0
  dir=$(pair_dir "$name")
  load_pair "$name"
  for port in "$BROKER_PORT" "$((BROKER_PORT - 2))" "$((BROKER_PORT + 1))"; do
    port_open "$port" && die "port $port is already in use (another broker?)"
  done
  mark=$(log_lines "$dir/logs/broker.log")
  t0=$(now_ms)
  case "$PAIR_SERVER" in
  rust)
    HOME="$dir/home" "$BROKER_BIN" -c "$dir/broker.toml" >>"$dir/logs/broker.log" 2>&1 </dev/null &
    PID=$!
    ;;
  *)
    java_run "$dir" broker org.apache.rocketmq.broker.BrokerStartup \
      -Xms256m -Xmx512m -XX:MaxDirectMemorySize=256m -- -c "$dir/broker.conf"
    ;;
  esac
  echo "$PID" >"$dir/broker.pid"
  # Rust: registration with the name server is logged right after "started successfully".
  # Java: "The broker[…] boot success" is printed after the first registration.
  local ready='started successfully'
  [[ "$PAIR_SERVER" != rust ]] && ready='boot success'
  wait_ready "$dir/logs/broker.log" "$mark" "$ready" "$BROKER_PORT" 90 "$PID" || {
    tail -30 "$dir/logs/broker.log" >&2 || true
    die "broker '$name' did not start on 127.0.0.1:$BROKER_PORT"
  }
  # Java: the boot line does not mean registered. 5.x registers only with name servers its
  # client's availability scan has already seen, so a broker that boots before the first scan
  # registers 10 s later (its periodic task). Ready = the name server routes the topic every
  # broker registers under its own name.
  local i own
  own="broker-$(basename "$dir")"
  if [[ "$PAIR_SERVER" != rust ]]; then
    for ((i = 0; i < 300; i++)); do
      route_known "$NAMESRV_PORT" "$own" && break
      pid_alive "$PID" || break
      sleep 0.1
    done
    route_known "$NAMESRV_PORT" "$own" || {
      tail -30 "$dir/logs/broker.log" >&2 || true
      die "broker '$name' is not registered with its name server 127.0.0.1:$NAMESRV_PORT"
    }
  fi
  BROKER_SECS=$(secs_since "$t0")
  # Rust: give the first registration round trip a moment.
  [[ "$PAIR_SERVER" == rust ]] && sleep 0.5
  return 0
}

pair_running() { # NAME
  local dir
  dir=$(pair_dir "$1")
  [[ -f "$dir/pair.conf" ]] || return 1
  (
    load_pair "$1"
    pid_alive "$(read_pid "$dir/namesrv.pid")" && pid_alive "$(read_pid "$dir/broker.pid")" &&
      port_open "$NAMESRV_PORT" && port_open "$BROKER_PORT"
  )
}

write_env_file() {
  mkdir -p "$RMQ_STATE_DIR"
  local tmp="$ENV_FILE.tmp.$$" dir name server=""
  {
    echo "RMQ_ROOT=$RMQ_ROOT"
    echo "RMQ_JAVA_ROOT=$RMQ_JAVA_ROOT"
    echo "RMQ_STATE_DIR=$RMQ_STATE_DIR"
    for dir in "$RMQ_STATE_DIR"/*/; do
      [[ -f "$dir/pair.conf" ]] || continue
      name=$(basename "$dir")
      pair_running "$name" || continue
      (
        load_pair "$name"
        case "$name" in
        default)
          echo "ROCKETMQ_NAMESRV=127.0.0.1:$NAMESRV_PORT"
          echo "ROCKETMQ_SERVER=$PAIR_SERVER-$PAIR_VERSION"
          ;;
        acl)
          echo "ROCKETMQ_ACL_NAMESRV=127.0.0.1:$NAMESRV_PORT"
          echo "ROCKETMQ_ACL_ACCESS_KEY=$ACL_USER"
          echo "ROCKETMQ_ACL_SECRET_KEY=$ACL_PASSWORD"
          echo "ROCKETMQ_ACL_SERVER=$PAIR_SERVER-$PAIR_VERSION"
          ;;
        esac
      )
    done
    for dir in "$RMQ_STATE_DIR"/*/; do
      [[ -f "$dir/cluster.conf" && "$(basename "$dir")" == cluster ]] || continue
      cluster_running cluster || continue
      (
        load_pair cluster
        echo "ROCKETMQ_CLUSTER_NAMESRV=127.0.0.1:$NAMESRV_PORT"
        echo "ROCKETMQ_CLUSTER_NAME=cluster"
        echo "ROCKETMQ_CLUSTER_BROKERS=$BROKER_PORTS"
      )
    done
  } >"$tmp"
  # Without a default pair, ROCKETMQ_SERVER names the acl pair's server.
  if ! grep -q '^ROCKETMQ_SERVER=' "$tmp"; then
    server=$(sed -n 's/^ROCKETMQ_ACL_SERVER=//p' "$tmp")
    [[ -n "$server" ]] && echo "ROCKETMQ_SERVER=$server" >>"$tmp"
  fi
  mv "$tmp" "$ENV_FILE"
}

cmd_start() {
  local name="" np="" bp="" acl=0 auto=true
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --namesrv-port) np=${2:?--namesrv-port needs a value}; shift 2 ;;
    --broker-port) bp=${2:?--broker-port needs a value}; shift 2 ;;
    --acl) acl=1; shift ;;
    --no-auto-create) auto=false; shift ;;
    *) die "start: unknown option $1" ;;
    esac
  done
  if [[ -z "$name" ]]; then
    if [[ $acl == 1 ]]; then name=acl; else name=default; fi
  fi
  [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "pair name '$name': letters, digits, - and _ only"
  case "$name" in
  default) np=${np:-9876}; bp=${bp:-10911} ;;
  acl) np=${np:-19876}; bp=${bp:-20911}; acl=1 ;;
  *) [[ -n "$np" && -n "$bp" ]] || die "pair '$name' needs --namesrv-port and --broker-port" ;;
  esac
  [[ "$np" =~ ^[0-9]+$ && "$bp" =~ ^[0-9]+$ ]] || die "ports must be numbers"
  installed || die "$RMQ_SERVER $RMQ_VERSION servers not installed; run: RMQ_SERVER=$RMQ_SERVER $0 install"
  [[ "$RMQ_SERVER" == rust ]] || build_shim

  local dir
  dir=$(pair_dir "$name")
  if pair_running "$name" && (load_pair "$name"; [[ "$PAIR_SERVER-$PAIR_VERSION" == "$RMQ_SERVER-$RMQ_VERSION" ]]); then
    log "pair '$name' already running"
    write_env_file
    cmd_status_one "$name"
    return 0
  fi
  # Stop leftovers of a half-dead pair (or one of another server) by their own pids, then start clean.
  stop_pair "$dir"
  rm -rf "$dir"
  mkdir -p "$dir/home" "$dir/store" "$dir/logs" "$dir/auth"
  printf 'NAMESRV_PORT=%s\nBROKER_PORT=%s\nACL=%s\nAUTO=%s\nPAIR_SERVER=%s\nPAIR_VERSION=%s\n' \
    "$np" "$bp" "$acl" "$auto" "$RMQ_SERVER" "$RMQ_VERSION" >"$dir/pair.conf"
  case "$RMQ_SERVER" in
  rust) write_rust_config "$dir" "$np" "$bp" "$acl" "$auto" ;;
  *) write_java_config "$dir" "$np" "$bp" "$acl" "$auto" "$RMQ_SERVER" ;;
  esac
  log "starting pair '$name' ($RMQ_SERVER $RMQ_VERSION: name server 127.0.0.1:$np, broker 127.0.0.1:$bp$([[ $acl == 1 ]] && echo ', authentication on'))"
  start_namesrv "$name"
  start_broker "$name"
  log "pair '$name' up: name server ${NAMESRV_SECS} s, broker ${BROKER_SECS} s"
  write_env_file
  cmd_status_one "$name"
}

cmd_stop() {
  local name=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    *) name=$1; shift ;;
    esac
  done
  local dir
  if [[ -n "$name" && -f "$(pair_dir "$name")/cluster.conf" ]]; then
    stop_cluster "$(pair_dir "$name")"
    log "cluster '$name' stopped"
  elif [[ -n "$name" ]]; then
    stop_pair "$(pair_dir "$name")"
    log "pair '$name' stopped"
  else
    for dir in "$RMQ_STATE_DIR"/*/; do
      if [[ -f "$dir/pair.conf" ]]; then
        stop_pair "$dir" &
      elif [[ -f "$dir/cluster.conf" ]]; then
        stop_cluster "$dir" &
      fi
    done
    wait
    log "all pairs and clusters in $RMQ_STATE_DIR stopped"
  fi
  [[ -d "$RMQ_STATE_DIR" ]] && write_env_file
  return 0
}

cmd_broker_stop() {
  local name=${1:?broker-stop needs a pair name} sig=TERM
  [[ "${2:-}" == "--kill" ]] && sig=KILL
  load_pair "$name"
  stop_pid "$(pair_dir "$name")/broker.pid" "$sig"
  log "broker of pair '$name' stopped (SIG$sig)"
}

cmd_broker_start() {
  local name=${1:?broker-start needs a pair name} dir
  dir=$(pair_dir "$name")
  load_pair "$name"
  if pid_alive "$(read_pid "$dir/broker.pid")"; then
    log "broker of pair '$name' already running"
    return 0
  fi
  start_broker "$name"
  log "broker of pair '$name' started again in ${BROKER_SECS} s (store kept)"
}

cmd_status_one() {
  local name=$1 dir np nsrv brk
  dir=$(pair_dir "$name")
  (
    load_pair "$name"
    nsrv=$(read_pid "$dir/namesrv.pid")
    brk=$(read_pid "$dir/broker.pid")
    np="stopped"
    pid_alive "$nsrv" && np="pid $nsrv"
    local bs="stopped"
    pid_alive "$brk" && bs="pid $brk"
    printf '%-10s %s-%s: name server 127.0.0.1:%s (%s), broker 127.0.0.1:%s (%s)%s\n' "$name" \
      "$PAIR_SERVER" "$PAIR_VERSION" "$NAMESRV_PORT" "$np" "$BROKER_PORT" "$bs" \
      "$([[ $ACL == 1 ]] && echo ", auth $ACL_USER")"
  )
}

cmd_status() {
  if installed; then
    echo "installed: $RMQ_SERVER $RMQ_VERSION"
  else
    echo "not installed: $RMQ_SERVER $RMQ_VERSION (run: RMQ_SERVER=$RMQ_SERVER $0 install)"
  fi
  local dir any=0
  for dir in "$RMQ_STATE_DIR"/*/; do
    if [[ -f "$dir/pair.conf" ]]; then
      any=1
      cmd_status_one "$(basename "$dir")"
    elif [[ -f "$dir/cluster.conf" ]]; then
      any=1
      cmd_status_cluster "$(basename "$dir")"
    fi
  done
  [[ $any == 1 ]] || echo "no pairs"
  [[ -f "$ENV_FILE" ]] && echo "env file: $ENV_FILE"
  return 0
}

# --- clusters ----------------------------------------------------------------------------------

# stop_cluster DIR: its brokers and its name server together.
stop_cluster() {
  local dir=$1 m
  for m in "$dir"/*/; do
    [[ -f "$m/pair.conf" ]] && stop_pid "$m/broker.pid" TERM &
  done
  stop_pid "$dir/namesrv.pid" TERM &
  wait
}

cluster_running() { # NAME: name server and every broker alive and listening
  local dir
  dir=$(pair_dir "$1")
  [[ -f "$dir/cluster.conf" ]] || return 1
  (
    load_pair "$1"
    pid_alive "$(read_pid "$dir/namesrv.pid")" && port_open "$NAMESRV_PORT" || exit 1
    local m
    for m in $MEMBERS; do
      pair_running_member "$1/$m" || exit 1
    done
  )
}

pair_running_member() { # N/a
  local dir
  dir=$(pair_dir "$1")
  [[ -f "$dir/pair.conf" ]] || return 1
  (
    load_pair "$1"
    pid_alive "$(read_pid "$dir/broker.pid")" && port_open "$BROKER_PORT"
  )
}

cmd_start_cluster() {
  local name=cluster np=31876 bps=32911,33911
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --namesrv-port) np=${2:?--namesrv-port needs a value}; shift 2 ;;
    --broker-ports) bps=${2:?--broker-ports needs a value}; shift 2 ;;
    *) die "start-cluster: unknown option $1" ;;
    esac
  done
  [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "cluster name '$name': letters, digits, - and _ only"
  [[ "$name" != default && "$name" != acl ]] || die "'$name' is a pair name"
  [[ "$np" =~ ^[0-9]+$ && "$bps" =~ ^[0-9]+(,[0-9]+)+$ ]] ||
    die "--namesrv-port P --broker-ports A,B[,…]: numbers, at least two brokers"
  installed || die "$RMQ_SERVER $RMQ_VERSION servers not installed; run: RMQ_SERVER=$RMQ_SERVER $0 install"
  [[ "$RMQ_SERVER" == rust ]] || build_shim
  local dir
  dir=$(pair_dir "$name")
  if cluster_running "$name" && (load_pair "$name"; [[ "$PAIR_SERVER-$PAIR_VERSION" == "$RMQ_SERVER-$RMQ_VERSION" ]]); then
    log "cluster '$name' already running"
    write_env_file
    cmd_status_cluster "$name"
    return 0
  fi
  [[ -f "$dir/pair.conf" ]] && die "'$name' is a pair; choose another cluster name"
  [[ -d "$dir" ]] && stop_cluster "$dir"
  rm -rf "$dir"
  mkdir -p "$dir/home" "$dir/logs"
  local members="" m bp letters=abcdefghijklmnopqrstuvwxyz i=0 t0 ports=()
  IFS=, read -r -a ports <<<"$bps"
  [[ ${#ports[@]} -le 26 ]] || die "at most 26 brokers"
  for bp in "${ports[@]}"; do
    m=${letters:i:1}
    i=$((i + 1))
    members+="${members:+ }$m"
    mkdir -p "$dir/$m/home" "$dir/$m/store" "$dir/$m/logs" "$dir/$m/auth"
    printf 'NAMESRV_PORT=%s\nBROKER_PORT=%s\nACL=0\nAUTO=true\nPAIR_SERVER=%s\nPAIR_VERSION=%s\nCLUSTER=%s\n' \
      "$np" "$bp" "$RMQ_SERVER" "$RMQ_VERSION" "$name" >"$dir/$m/pair.conf"
    case "$RMQ_SERVER" in
    rust) write_rust_config "$dir/$m" "$np" "$bp" 0 true ;;
    *) write_java_config "$dir/$m" "$np" "$bp" 0 true "$RMQ_SERVER" ;;
    esac
  done
  printf 'NAMESRV_PORT=%s\nMEMBERS="%s"\nBROKER_PORTS=%s\nPAIR_SERVER=%s\nPAIR_VERSION=%s\n' \
    "$np" "$members" "$bps" "$RMQ_SERVER" "$RMQ_VERSION" >"$dir/cluster.conf"
  printf 'listenPort=%s\nbindAddress=127.0.0.1\n' "$np" >"$dir/namesrv.conf"
  log "starting cluster '$name' ($RMQ_SERVER $RMQ_VERSION: name server 127.0.0.1:$np, brokers $(
    for m in $members; do printf 'broker-%s ' "$m"; done
  )on $bps)"
  t0=$(now_ms)
  start_namesrv "$name"
  # The brokers start side by side; each waits until the name server routes it.
  local pids=() rc=0
  for m in $members; do
    (start_broker "$name/$m" && log "broker-$m up in ${BROKER_SECS} s") &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  if [[ $rc != 0 ]]; then
    stop_cluster "$dir"
    die "cluster '$name' did not start (logs in $dir)"
  fi
  log "cluster '$name' up in $(secs_since "$t0") s (name server ${NAMESRV_SECS} s)"
  write_env_file
  cmd_status_cluster "$name"
}

cmd_status_cluster() {
  local name=$1 dir
  dir=$(pair_dir "$name")
  (
    load_pair "$name"
    local ns="stopped" line m pid st
    pid=$(read_pid "$dir/namesrv.pid")
    pid_alive "$pid" && ns="pid $pid"
    line=$(printf '%-10s %s-%s cluster: name server 127.0.0.1:%s (%s)' "$name" "$PAIR_SERVER" "$PAIR_VERSION" "$NAMESRV_PORT" "$ns")
    for m in $MEMBERS; do
      (
        load_pair "$name/$m"
        pid=$(read_pid "$dir/$m/broker.pid")
        st="stopped"
        if pid_alive "$pid"; then
          st="pid $pid"
          [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == T* ]] && st+=", paused"
        fi
        printf ', broker-%s 127.0.0.1:%s (%s)' "$m" "$BROKER_PORT" "$st"
      )
    done | { printf '%s' "$line"; cat; echo; }
  )
}

cmd_broker_signal() { # STOP|CONT N/a
  local sig=$1 name=${2:?broker-pause/broker-resume need a broker (N/a)} pid
  load_pair "$name"
  pid=$(read_pid "$(pair_dir "$name")/broker.pid")
  pid_alive "$pid" || die "broker $name is not running"
  kill "-$sig" "$pid"
  log "broker $name (pid $pid) sent SIG$sig"
}

# remoting_json PORT CODE EXTFIELDS_JSON: one JSON-header remoting request; prints the reply.
remoting_json() {
  local hdr
  hdr="{\"code\":$2,\"language\":\"JAVA\",\"version\":401,\"opaque\":1,\"flag\":0,\"extFields\":$3,\"serializeTypeCurrentRPC\":\"JSON\"}"
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf '%b%s' "$(be32 $((${#hdr} + 4)))$(be32 ${#hdr})" "$hdr" >&3
    timeout 5 dd bs=8192 count=1 <&3 2>/dev/null | tr -d '\000'
  ) 2>/dev/null
}

# route_brokers PORT TOPIC: the broker names the name server on PORT routes TOPIC to, sorted.
route_brokers() {
  remoting_json "$1" 105 "{\"topic\":\"$2\"}" | grep -o '"brokerName":"[^"]*"' | cut -d'"' -f4 | sort -u | tr '\n' ' ' | sed 's/ $//'
}

cmd_topic_create() {
  local name=${1:?topic-create needs a cluster name} topic=${2:?topic-create needs a topic} queues=4
  shift 2
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --queues) queues=${2:?--queues needs a value}; shift 2 ;;
    *) die "topic-create: unknown option $1" ;;
    esac
  done
  [[ "$topic" =~ ^[A-Za-z0-9_%|-]+$ ]] || die "topic '$topic': letters, digits, _ - % | only"
  [[ "$queues" =~ ^[0-9]+$ ]] || die "--queues: a number"
  local dir m want="" reply i got
  dir=$(pair_dir "$name")
  [[ -f "$dir/cluster.conf" ]] || die "no cluster named '$name'"
  load_pair "$name"
  local ns=$NAMESRV_PORT
  for m in $MEMBERS; do
    want+="${want:+ }broker-$m"
    (
      load_pair "$name/$m"
      # UPDATE_AND_CREATE_TOPIC (17), what `mqadmin updateTopic -b` sends; perm 6 = read + write.
      reply=$(remoting_json "$BROKER_PORT" 17 "{\"topic\":\"$topic\",\"defaultTopic\":\"TBW102\",\"readQueueNums\":\"$queues\",\"writeQueueNums\":\"$queues\",\"perm\":\"6\",\"topicFilterType\":\"SINGLE_TAG\",\"topicSysFlag\":\"0\",\"order\":\"false\"}")
      [[ "$reply" == *'"code":0,'* ]] || die "broker-$m (127.0.0.1:$BROKER_PORT) did not create $topic: ${reply:0:300}"
    ) || exit 1
  done
  for ((i = 0; i < 150; i++)); do
    got=$(route_brokers "$ns" "$topic")
    [[ "$got" == "$want" ]] && break
    sleep 0.1
  done
  [[ "$got" == "$want" ]] || die "topic $topic created, but the name server routes it to '${got}', not '$want'"
  log "topic $topic ($queues queues) on $want"
}

cmd_route() {
  local name=${1:?route needs a cluster name} topic=${2:?route needs a topic}
  load_pair "$name"
  local got
  got=$(route_brokers "$NAMESRV_PORT" "$topic") || true
  [[ -n "$got" ]] || die "the name server 127.0.0.1:$NAMESRV_PORT has no route for $topic"
  echo "$got"
}

cmd_running() { # [N]
  local name=${1:-default}
  pair_running "$name" && (load_pair "$name"; [[ "$PAIR_SERVER-$PAIR_VERSION" == "$RMQ_SERVER-$RMQ_VERSION" ]])
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  install) cmd_install ;;
  start) cmd_start "$@" ;;
  start-acl) cmd_start --acl "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status ;;
  running) cmd_running "$@" ;;
  broker-stop) cmd_broker_stop "$@" ;;
  broker-start) cmd_broker_start "$@" ;;
  broker-pause) cmd_broker_signal STOP "$@" ;;
  broker-resume) cmd_broker_signal CONT "$@" ;;
  start-cluster) cmd_start_cluster "$@" ;;
  topic-create) cmd_topic_create "$@" ;;
  route) cmd_route "$@" ;;
  env) [[ -f "$ENV_FILE" ]] && cat "$ENV_FILE" || die "no env file yet (start a pair first)" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
  esac
}

main "$@"
