#!/usr/bin/env bash
# Side-by-side benchmark through the real daprd: Dapr's Go bindings.rocketmq vs ours
# (bindings.rocketmq-pluggable), same daprd build (scripts/daprd-local.sh), same broker, same run.
# Output rows have a third side, noop: a do-nothing pluggable OutputBinding
# (bindings.noop-pluggable: examples/support/noop_binding.rs, the example re-executed on
# noop-pluggable.sock in that daprd's socket folder; Invoke answers at once, no broker), with
# the same load, concurrencies and per-process CPU/RSS accounting. Under each output row the
# tables print daprd's pluggable overhead = daprd CPU(noop) - daprd CPU(Go) and ours - noop
# (latency, throughput, CPU): what daprd's pluggable path costs by itself and what our
# component adds to it.
#
# Usage:
#   scripts/bench-dapr.sh [--smoke] [bench-dapr flags...]
#
#   (no flag)  release build, full run: 3 rounds, output at C = 1, 16, 64 through daprd's HTTP
#              API and gRPC InvokeBinding, input backlogs of 20000 to an HTTP and a gRPC app
#              answering at once / after 1 ms (~15-25 min on 2 cores after the build); the
#              tables on stdout (also target/bench/bench-dapr.txt), every row in
#              target/bench/bench-dapr.json
#   --smoke    debug build, one round with tiny counts (what scripts/test.sh runs); exits 1 if
#              any create failed (the noop's included) or any message was not delivered
#              exactly once
#   other flags go to the example (`cargo run --example bench-dapr -- --help`), e.g.
#              --rounds 1, --concurrency 16, --only output, --messages 5000, --backlog 5000
#
# It starts its own Java 5.3.3 pair on 127.0.0.1 (scripts/rocketmq-local.sh, pair "bdapr": name
# server 61876, broker 62911, +62909, HA 62912), builds daprd if missing, runs the example under
# `timeout`, and stops everything it started, also on failure or Ctrl-C: the pair (only if this
# script started it) and any daprd / daemon / noop server the example left (their pids are in
# target/bench/dapr/pids; the example also kills them itself and they die with it).
set -euo pipefail

cd "$(dirname "$0")/.."
RMQ=scripts/rocketmq-local.sh
PAIR=bdapr
NP=61876
BP=62911
WORK=target/bench/dapr

smoke=0
pass=()
for a in "$@"; do
  if [[ "$a" == "--smoke" ]]; then smoke=1; fi
  pass+=("$a")
done

log() { printf 'bench-dapr.sh: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

started_pair=0
cleanup() {
  local f pid
  for f in "$WORK"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      log "stopping leftover $(basename "$f" .pid) (pid $pid)"
      kill "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  if [[ $started_pair == 1 ]]; then
    bash "$RMQ" stop --name "$PAIR" >/dev/null 2>&1 || log "could not stop pair $PAIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$RMQ" install
daprd=$(bash scripts/daprd-local.sh install)

if ! port_open "$NP" || ! port_open "$BP"; then
  started_pair=1
fi
bash "$RMQ" start --name "$PAIR" --namesrv-port "$NP" --broker-port "$BP" >&2
state=$(bash "$RMQ" env | sed -n 's/^RMQ_STATE_DIR=//p')
broker_pid=$(cat "$state/$PAIR/broker.pid")
namesrv_pid=$(cat "$state/$PAIR/namesrv.pid")

# The broker refuses a send that waited over waitTimeMillsInSendQueue (default 200 ms) in its
# queue ("[TIMEOUT_CLEAN_QUEUE]broker busy"): on a shared, overloaded 2-core machine that
# happens whenever the broker gets no CPU for 200 ms, and the Go client does not retry it.
# Raised to 2000 ms at run time (mqadmin updateBrokerConfig), the same for both sides.
if [[ "${RMQ_SERVER:-java}" == java ]]; then
  jlib="${RMQ_JAVA_ROOT:-$HOME/.cache/rocketmq-binding/java}/5.3.3/lib"
  java -Xms32m -Xmx128m -XX:TieredStopAtLevel=1 -Duser.home="$state/$PAIR/home" -cp "$jlib/*" \
    org.apache.rocketmq.tools.command.MQAdminStartup updateBrokerConfig \
    -n "127.0.0.1:$NP" -b "127.0.0.1:$BP" -k waitTimeMillsInSendQueue -v 2000 >&2 ||
    log "could not raise waitTimeMillsInSendQueue (continuing)"
fi

target="${CARGO_TARGET_DIR:-target}"
if [[ $smoke == 1 ]]; then
  log "building (debug)"
  cargo build --bins --example bench-dapr
  exe="$target/debug/examples/bench-dapr"
  limit=600
else
  log "building (release; the first build takes several minutes)"
  # Two builds: the daemon exactly as users build it (deploy/Dockerfile: no dev-dependency
  # features, so its symbols match link/symbol-order.txt), then the example (dev-dependency
  # features unified in: another build of the library that the daemon does not link).
  cargo build --release --bins
  cargo build --release --example bench-dapr
  exe="$target/release/examples/bench-dapr"
  limit=3600
fi

mkdir -p target/bench
args=(--namesrv "127.0.0.1:$NP" --broker-pid "$broker_pid" --namesrv-pid "$namesrv_pid"
  --daprd "$daprd" --work "$WORK")
log "running $exe ${args[*]} ${pass[*]}"
txt=target/bench/bench-dapr.txt
[[ $smoke == 1 ]] && txt=target/bench/bench-dapr-smoke.txt
set +e
timeout --signal=INT --kill-after=30 "$limit" "$exe" "${args[@]}" "${pass[@]}" | tee "$txt"
rc=${PIPESTATUS[0]}
set -e
echo "uptime at end: $(uptime)"
if [[ $rc != 0 ]]; then
  log "FAILED (exit $rc); logs in $WORK/logs"
  exit "$rc"
fi
