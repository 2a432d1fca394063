#!/usr/bin/env bash
# Regenerates link/symbol-order.txt, the code layout of release builds (build.rs passes it to
# LLD as --symbol-ordering-file): every function of the daemon binary that ran in two runs,
#   tcp:  scripts/bench-dapr.sh driving it through daprd (output over HTTP and gRPC at C = 1
#         and 16, the four input rows) against the Java broker;
#   http: `accessProto: http` against the project's Aliyun MQ HTTP emulator, driven by the
#         daemon's own `client` subcommand (160 Inits and creates, 8 at a time, with tags,
#         keys, properties and every 10th body binary; then one Read of all of them, every
#         10th acked as failed and redelivered);
# the functions both runs saw first, then the tcp run's own, then the http run's own, each group
# in the order of their old addresses. Those functions then sit together at the start of .text,
# so the pages a daemon runs are few and adjacent instead of spread over the whole text (see
# README, "Code layout" under Benchmark).
#
# Usage: scripts/symbol-order.sh          (~10 min with the release builds; needs valgrind)
#        scripts/symbol-order.sh --check  how many of the file's functions the release daemon
#                                         (cargo build --release --bins) has, and whether they
#                                         lead its .text; exits 1 below 90 %: time to regenerate
#        scripts/symbol-order.sh --measure-http [N]
#                                         the http run with the plain release daemon and N creates
#                                         (default 800); prints the daemon's VmHWM and how much of
#                                         its binary is resident at the end (README's figures)
#
# How: the benchmark (which makes the release build) with the daemon run under
# `valgrind --tool=callgrind --demangle=no` (one output file per daemon process), then every
# function name callgrind saw that is a text symbol of the binary. Names are exact legacy-mangled
# symbols; rerun this after a compiler, dependency or release-profile change (a name that no
# longer exists is ignored by the linker, so a stale file only costs memory). The parsing is
# scripts/symbol-order.py.
set -euo pipefail

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
exe="$(pwd)/$target/release/rocketmq-binding"

if [[ "${1:-}" == --check ]]; then
  cargo build --release --bins
  exec python3 scripts/symbol-order.py check "$exe" link/symbol-order.txt
fi
measure=0
if [[ "${1:-}" == --measure-http ]]; then measure=1; else
  command -v valgrind >/dev/null || { echo "symbol-order.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
fi
work="$(pwd)/$target/symbol-order"
rm -rf "$work"
mkdir -p "$work/cg/tcp" "$work/cg/http"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# The http run: the emulator, the daemon (command $1) on a socket of its own, $2 creates from 8
# instances at once (a second Init of one instance would replace its producer), then one Read
# of all of them with every 10th delivery acked as failed and redelivered. Fails unless all $2
# are acked; with $3 = measure, prints the daemon's VmHWM and resident binary before stopping it.
http_run() {
  local daemon_cmd=$1 n=$2 h="$work/http" port daemon w ok
  mkdir -p "$h/sockets"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$target/release/aliyun-mq-emulator" --listen "127.0.0.1:$port" --access-key so-ak \
    --secret-key so-sk --invisibility-seconds 2 >"$h/emulator.log" 2>&1 &
  pids+=($!)
  "$daemon_cmd" --socket-folder "$h/sockets" >"$h/daemon.log" 2>&1 &
  daemon=$!
  pids+=($daemon)
  for _ in $(seq 1 600); do [[ -S "$h/sockets/rocketmq-pluggable.sock" ]] && break; sleep 0.1; done
  [[ -S "$h/sockets/rocketmq-pluggable.sock" ]] || { tail -20 "$h/daemon.log" >&2; exit 1; }
  head -c 1024 /dev/zero | tr '\0' x >"$h/text.bin"
  head -c 1024 /dev/urandom >"$h/binary.bin"
  for w in $(seq 1 8) read; do
    cat >"$h/component-$w.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: symbol-order-$w
spec:
  type: bindings.rocketmq-pluggable
  version: v1
  metadata:
    - {name: accessProto, value: http}
    - {name: endpoint, value: "http://127.0.0.1:$port"}
    - {name: accessKey, value: so-ak}
    - {name: secretKey, value: so-sk}
    - {name: consumerGroup, value: GID_symbol_order}
    - {name: topics, value: symbol-order}
YAML
  done
  local senders=()
  for w in $(seq 1 8); do
    (
      for i in $(seq "$w" 8 "$n"); do
        body=text; (( i % 10 == 0 )) && body=binary
        client "$w" send --file "$h/$body.bin" -m rocketmq-topic=symbol-order \
          -m "rocketmq-tag=t$i" -m "rocketmq-key=k$i" -m "rocketmq-property-n=$i" >/dev/null
      done
    ) &
    senders+=($!)
  done
  for w in "${senders[@]}"; do wait "$w"; done
  client read read --count "$n" --fail-every 10 --idle 60s >"$h/read.jsonl"
  ok=$(grep -c '"ack":"ok"' "$h/read.jsonl" || true)
  [[ "$ok" -eq "$n" ]] || { echo "symbol-order.sh: http run: $ok of $n acked" >&2; tail -20 "$h/daemon.log" >&2; exit 1; }
  echo "symbol-order.sh: http run: $n creates, $ok acked, $(($(wc -l <"$h/read.jsonl") - ok)) failed and redelivered"
  if [[ "${3:-}" == measure ]]; then
    echo "symbol-order.sh: daemon $(grep VmHWM "/proc/$daemon/status" | tr -s '\t ' ' '), binary resident" \
      "$(awk -v exe="$exe" '/^[0-9a-f]+-[0-9a-f]+ / {f = $6} $1 == "Rss:" && f == exe {t += $2} END {print t + 0}' \
        "/proc/$daemon/smaps") kB"
  fi
  kill -TERM "$daemon"
  wait "$daemon" || true
}
client() { "$exe" client --socket-folder "$work/http/sockets" --component "$work/http/component-$1.yaml" "${@:2}"; }

if [[ "$measure" == 1 ]]; then
  cargo build --release --bins
  http_run "$exe" "${2:-800}" measure
  exit 0
fi

# The daemon under callgrind, one output file per process in cg/$1.
callgrind() {
  cat >"$work/daemon-$1.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/cg/$1/out.%p $exe "\$@"
EOF
  chmod +x "$work/daemon-$1.sh"
}
callgrind tcp
callgrind http

# The daemon runs ~20-50x slower under callgrind: small counts, generous limits.
echo "symbol-order.sh: tcp run (scripts/bench-dapr.sh; its tables in $work/bench.txt)"
scripts/bench-dapr.sh --daemon "$work/daemon-tcp.sh" --rounds 1 --concurrency 1,16 \
  --messages 1600 --backlog 1000 --limit-secs 300 >"$work/bench.txt"
echo "symbol-order.sh: http run (emulator and client; logs in $work/http)"
http_run "$work/daemon-http.sh" 160

python3 scripts/symbol-order.py write "$exe" link/symbol-order.txt "$work/cg/tcp" "$work/cg/http"
