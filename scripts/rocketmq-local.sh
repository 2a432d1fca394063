#!/usr/bin/env bash
# Local RocketMQ (Rust name server + broker 1.0.0) for development and CI, on 127.0.0.1 only.
#
# Usage:
#   scripts/rocketmq-local.sh install                 install rocketmq-namesrv/-broker 1.0.0 if missing
#   scripts/rocketmq-local.sh start                   pair "default": name server 9876, broker 10911 (+10909, HA 10912)
#   scripts/rocketmq-local.sh start-acl               pair "acl": 19876 / 20911 / 20912, authentication on
#                                                     (user rocketmq, password 12345678)
#   scripts/rocketmq-local.sh start --name N --namesrv-port P --broker-port B [--acl] [--no-auto-create]
#                                                     any other pair (broker uses B, B-2 and B+1);
#                                                     --no-auto-create: autoCreateTopicEnable = false
#   scripts/rocketmq-local.sh stop [--name N]         stop one pair (default: every pair this script started)
#   scripts/rocketmq-local.sh status                  show pairs, pids, addresses
#   scripts/rocketmq-local.sh broker-stop N [--kill]  stop (SIGTERM, or SIGKILL) only the broker of pair N
#   scripts/rocketmq-local.sh broker-start N          start the broker of pair N again, keeping its store
#   scripts/rocketmq-local.sh env                     print the env file (ROCKETMQ_NAMESRV=…, ROCKETMQ_ACL_NAMESRV=…)
#
# Environment:
#   RMQ_ROOT         install root (default $HOME/.local/rocketmq-rust; binaries in $RMQ_ROOT/bin)
#   RMQ_STATE_DIR    pid files, stores, logs, env file (default ${TMPDIR:-/tmp}/rocketmq-local-$UID)
#   CARGO_TARGET_DIR shared target dir for both installs (default $RMQ_ROOT/build-target)
#   RMQ_VERSION      server version to install (default 1.0.0)
#
# `start` is idempotent: a pair that is already running and listening is left alone; otherwise its
# processes are stopped and it starts again with a fresh, empty store. The store uses small mapped
# files (64 MiB commit log, 60 kB consume queues, small index) and CommitLog micro-batching off.
# Servers are stopped by their own recorded pids only.
set -euo pipefail

RMQ_VERSION="${RMQ_VERSION:-1.0.0}"
RMQ_ROOT="${RMQ_ROOT:-$HOME/.local/rocketmq-rust}"
RMQ_STATE_DIR="${RMQ_STATE_DIR:-${TMPDIR:-/tmp}/rocketmq-local-$(id -u)}"
NAMESRV_BIN="$RMQ_ROOT/bin/rocketmq-namesrv-rust"
BROKER_BIN="$RMQ_ROOT/bin/rocketmq-broker-rust"
ENV_FILE="$RMQ_STATE_DIR/env"
ACL_USER="rocketmq"
ACL_PASSWORD="12345678"

log() { printf 'rocketmq-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
}

installed() { [[ -x "$NAMESRV_BIN" && -x "$BROKER_BIN" ]]; }

cmd_install() {
  if installed; then
    log "already installed in $RMQ_ROOT/bin"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found (needed to install the servers)"
  mkdir -p "$RMQ_ROOT"
  local target="${CARGO_TARGET_DIR:-$RMQ_ROOT/build-target}"
  local crates=()
  [[ -x "$NAMESRV_BIN" ]] || crates+=("rocketmq-namesrv@$RMQ_VERSION")
  [[ -x "$BROKER_BIN" ]] || crates+=("rocketmq-broker@$RMQ_VERSION")
  log "installing ${crates[*]} into $RMQ_ROOT (shared target dir $target; ~15 min cold on 2 cores)"
  CARGO_TARGET_DIR="$target" cargo install --locked "${crates[@]}" --root "$RMQ_ROOT"
  installed || die "install finished but binaries are missing in $RMQ_ROOT/bin"
}

# --- helpers ---------------------------------------------------------------------------------

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f "$1" ]] && cat "$1" 2>/dev/null || true; }

# port_open PORT: something accepts TCP on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT SECONDS PID
  local port=$1 secs=$2 pid=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    port_open "$port" && return 0
    pid_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

wait_log() { # FILE PATTERN SECONDS PID
  local file=$1 pattern=$2 secs=$3 pid=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    pid_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() { # PIDFILE SIGNAL
  local pidfile=$1 sig=${2:-TERM} pid i
  pid=$(read_pid "$pidfile")
  if pid_alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      log "pid $pid did not stop after 15 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pidfile"
}

pair_dir() { printf '%s/%s' "$RMQ_STATE_DIR" "$1"; }

# Loads NAMESRV_PORT BROKER_PORT ACL of an existing pair.
load_pair() {
  local dir
  dir=$(pair_dir "$1")
  [[ -f "$dir/pair.conf" ]] || die "no pair named '$1' (start it first)"
  # shellcheck disable=SC1091
  source "$dir/pair.conf"
}

write_broker_config() { # DIR NAMESRV_PORT BROKER_PORT ACL AUTO_CREATE
  local dir=$1 np=$2 bp=$3 acl=$4 auto=${5:-true}
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

start_namesrv() { # NAME
  local name=$1 dir pid
  dir=$(pair_dir "$name")
  load_pair "$name"
  port_open "$NAMESRV_PORT" && die "port $NAMESRV_PORT is already in use (another name server?)"
  HOME="$dir/home" "$NAMESRV_BIN" --bindAddress 127.0.0.1 --listenPort "$NAMESRV_PORT" \
    --rocketmqHome "$dir/home" >>"$dir/logs/namesrv.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/namesrv.pid"
  wait_port "$NAMESRV_PORT" 20 "$pid" || {
    tail -20 "$dir/logs/namesrv.log" >&2 || true
    die "name server '$name' did not listen on 127.0.0.1:$NAMESRV_PORT"
  }
}

start_broker() { # NAME
  local name=$1 dir pid port
  dir=$(pair_dir "$name")
  load_pair "$name"
  for port in "$BROKER_PORT" "$((BROKER_PORT - 2))" "$((BROKER_PORT + 1))"; do
    port_open "$port" && die "port $port is already in use (another broker?)"
  done
  local mark
  mark=0
  [[ -f "$dir/logs/broker.log" ]] && mark=$(wc -l <"$dir/logs/broker.log")
  HOME="$dir/home" "$BROKER_BIN" -c "$dir/broker.toml" >>"$dir/logs/broker.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/broker.pid"
  wait_port "$BROKER_PORT" 30 "$pid" || {
    tail -30 "$dir/logs/broker.log" >&2 || true
    die "broker '$name' did not listen on 127.0.0.1:$BROKER_PORT"
  }
  # Registration with the name server is logged right after "started successfully".
  local i ok=0
  for ((i = 0; i < 300; i++)); do
    if tail -n "+$((mark + 1))" "$dir/logs/broker.log" 2>/dev/null | grep -q 'started successfully'; then
      ok=1
      break
    fi
    pid_alive "$pid" || break
    sleep 0.1
  done
  [[ $ok == 1 ]] || {
    tail -30 "$dir/logs/broker.log" >&2 || true
    die "broker '$name' did not report a successful start"
  }
  # Give the first registration round trip a moment.
  sleep 0.5
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
  local tmp="$ENV_FILE.tmp.$$" dir name
  {
    echo "RMQ_ROOT=$RMQ_ROOT"
    echo "RMQ_STATE_DIR=$RMQ_STATE_DIR"
    for dir in "$RMQ_STATE_DIR"/*/; do
      [[ -f "$dir/pair.conf" ]] || continue
      name=$(basename "$dir")
      pair_running "$name" || continue
      (
        load_pair "$name"
        case "$name" in
        default) echo "ROCKETMQ_NAMESRV=127.0.0.1:$NAMESRV_PORT" ;;
        acl)
          echo "ROCKETMQ_ACL_NAMESRV=127.0.0.1:$NAMESRV_PORT"
          echo "ROCKETMQ_ACL_ACCESS_KEY=$ACL_USER"
          echo "ROCKETMQ_ACL_SECRET_KEY=$ACL_PASSWORD"
          ;;
        esac
      )
    done
  } >"$tmp"
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
  installed || die "servers not installed in $RMQ_ROOT/bin; run: $0 install"

  if pair_running "$name"; then
    log "pair '$name' already running"
    write_env_file
    cmd_status_one "$name"
    return 0
  fi
  local dir
  dir=$(pair_dir "$name")
  # Stop leftovers of a half-dead pair by their own pids, then start clean.
  stop_pid "$dir/broker.pid" TERM
  stop_pid "$dir/namesrv.pid" TERM
  rm -rf "$dir"
  mkdir -p "$dir/home" "$dir/store" "$dir/logs" "$dir/auth"
  printf 'NAMESRV_PORT=%s\nBROKER_PORT=%s\nACL=%s\n' "$np" "$bp" "$acl" >"$dir/pair.conf"
  write_broker_config "$dir" "$np" "$bp" "$acl" "$auto"
  log "starting pair '$name' (name server 127.0.0.1:$np, broker 127.0.0.1:$bp$([[ $acl == 1 ]] && echo ', authentication on'))"
  start_namesrv "$name"
  start_broker "$name"
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
  if [[ -n "$name" ]]; then
    dir=$(pair_dir "$name")
    stop_pid "$dir/broker.pid" TERM
    stop_pid "$dir/namesrv.pid" TERM
    log "pair '$name' stopped"
  else
    for dir in "$RMQ_STATE_DIR"/*/; do
      [[ -f "$dir/pair.conf" ]] || continue
      stop_pid "$dir/broker.pid" TERM
      stop_pid "$dir/namesrv.pid" TERM
      log "pair '$(basename "$dir")' stopped"
    done
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
  log "broker of pair '$name' started again (store kept)"
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
    printf '%-10s name server 127.0.0.1:%s (%s), broker 127.0.0.1:%s (%s)%s\n' "$name" \
      "$NAMESRV_PORT" "$np" "$BROKER_PORT" "$bs" "$([[ $ACL == 1 ]] && echo ", auth $ACL_USER")"
  )
}

cmd_status() {
  if installed; then echo "installed: $RMQ_ROOT/bin"; else echo "not installed (run: $0 install)"; fi
  local dir any=0
  for dir in "$RMQ_STATE_DIR"/*/; do
    [[ -f "$dir/pair.conf" ]] || continue
    any=1
    cmd_status_one "$(basename "$dir")"
  done
  [[ $any == 1 ]] || echo "no pairs"
  [[ -f "$ENV_FILE" ]] && echo "env file: $ENV_FILE"
  return 0
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
  broker-stop) cmd_broker_stop "$@" ;;
  broker-start) cmd_broker_start "$@" ;;
  env) [[ -f "$ENV_FILE" ]] && cat "$ENV_FILE" || die "no env file yet (start a pair first)" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
  esac
}

main "$@"
