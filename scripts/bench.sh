#!/usr/bin/env bash
# Benchmark: the daemon vs the raw rocketmq-client-rust client on the same local broker.
#
# Usage:
#   scripts/bench.sh [--smoke] [bench flags...]
#
#   (no flag)  release build, full run (~5-8 min on 2 cores after the build); table on stdout,
#              JSON in target/bench/bench.json
#   --smoke    debug build, seconds-long run with tiny counts (what CI runs)
#   other flags go to the bench example (see `cargo run --example bench -- --help`),
#   e.g. --messages 50000, --concurrency 16,64, --only output,input, --json PATH
#
# It installs the servers if missing (scripts/rocketmq-local.sh install: the Java 5.3.3 name
# server + broker by default, RMQ_SERVER=rust for the Rust ones) and starts dedicated pairs on
# 127.0.0.1 that never touch the test pairs (with the Java servers only the first: micro-batching
# is a Rust-broker setting):
#   bench     name server 29876, broker 30911 (+30909, 30912): commitLogMicroBatchEnabled = false
#             (the ratios are measured here: with micro-batching the broker caps every producer
#             at ~1,450 msg/s and the comparison shows nothing)
#   bench-mb  name server 29886, broker 30921 (+30919, 30922): micro-batching on (the broker's
#             default, what users run)
# builds, runs the example and stops the pairs it started (also on failure / Ctrl-C).
# Every load has a fixed message count and a time limit; the whole run is bounded by `timeout`.
set -euo pipefail

cd "$(dirname "$0")/.."
RMQ=scripts/rocketmq-local.sh

smoke=0
pass=()
for a in "$@"; do
  if [[ "$a" == "--smoke" ]]; then smoke=1; fi
  pass+=("$a")
done

log() { printf 'bench.sh: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

started=()
cleanup() {
  local p
  for p in "${started[@]}"; do
    bash "$RMQ" stop --name "$p" >/dev/null 2>&1 || log "could not stop pair $p"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$RMQ" install

# start_pair NAME NAMESRV_PORT BROKER_PORT [microbatch]
start_pair() {
  local name=$1 np=$2 bp=$3 mb=${4:-}
  if ! port_open "$np" || ! port_open "$bp"; then
    started+=("$name")
  fi
  bash "$RMQ" start --name "$name" --namesrv-port "$np" --broker-port "$bp" >&2
  if [[ -n "$mb" ]]; then
    local conf
    conf="$(state_dir)/$name/broker.toml"
    if grep -q '^commitLogMicroBatchEnabled = false' "$conf"; then
      sed -i 's/^commitLogMicroBatchEnabled = false/commitLogMicroBatchEnabled = true/' "$conf"
      bash "$RMQ" broker-stop "$name" >&2
      bash "$RMQ" broker-start "$name" >&2
    fi
  fi
}

state_dir() { bash "$RMQ" env | sed -n 's/^RMQ_STATE_DIR=//p'; }

want_mb=1
for a in "${pass[@]}"; do
  case "$a" in --no-microbatch) want_mb=0 ;; esac
done
# CommitLog micro-batching is a setting of the Rust broker only: on the Java servers (the
# default) the second pair would be the same broker again, so it is skipped.
if [[ "${RMQ_SERVER:-java}" != rust && $want_mb == 1 ]]; then
  log "RMQ_SERVER=${RMQ_SERVER:-java}: no micro-batching broker (a Rust-broker setting); one pair"
  want_mb=0
  pass+=(--no-microbatch)
fi

start_pair bench 29876 30911
bench_args=(--namesrv 127.0.0.1:29876)
pid=$(cat "$(state_dir)/bench/broker.pid" 2>/dev/null || true)
[[ -n "$pid" ]] && bench_args+=(--broker-pid "$pid")
if [[ $want_mb == 1 ]]; then
  start_pair bench-mb 29886 30921 microbatch
  bench_args+=(--microbatch-namesrv 127.0.0.1:29886)
fi

target="${CARGO_TARGET_DIR:-target}"
if [[ $smoke == 1 ]]; then
  log "building (debug)"
  cargo build --bins --example bench
  exe="$target/debug/examples/bench"
  limit=600
else
  log "building (release; the first build takes several minutes)"
  # Two builds: the daemon exactly as users build it (deploy/Dockerfile: no dev-dependency
  # features, so its symbols match link/symbol-order.txt), then the example (dev-dependency
  # features unified in: another build of the library that the daemon does not link).
  cargo build --release --bins
  cargo build --release --example bench
  exe="$target/release/examples/bench"
  limit=3600
fi

log "running $exe ${bench_args[*]} ${pass[*]}"
timeout --signal=INT --kill-after=30 "$limit" "$exe" "${bench_args[@]}" "${pass[@]}"
