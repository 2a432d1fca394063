#!/usr/bin/env bash
# Messages through the binding in one command, the way daprd drives it.
#
#   scripts/demo.sh          Aliyun MQ HTTP emulator (starts in milliseconds; the default)
#   scripts/demo.sh --tcp    the local Rust RocketMQ name server + broker (scripts/rocketmq-local.sh;
#                            the first run installs them, ~15 minutes on 2 cores)
#
# Builds the binaries, starts the broker side and the daemon on a socket in a temp folder, then
# uses `rocketmq-binding client` (a daprd-like client) to Init a Component, send three messages
# with metadata and read them back, acking every second delivery with an error to show redelivery.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=http
case "${1:-}" in
  --tcp) mode=tcp ;;
  "" | --http) ;;
  *) echo "usage: $0 [--tcp]" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ "$mode" == tcp && "${started_rmq:-0}" == 1 ]]; then scripts/rocketmq-local.sh stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "building (cargo build --bins)"
cargo build --quiet --bins
bin=target/debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

topic="demo-$RANDOM$RANDOM"
if [[ "$mode" == http ]]; then
  port="$(free_port)"
  say "starting aliyun-mq-emulator on 127.0.0.1:$port"
  "$bin/aliyun-mq-emulator" --listen "127.0.0.1:$port" --access-key demo-ak --secret-key demo-sk \
    --invisibility-seconds 2 >"$work/emulator.log" 2>&1 &
  pids+=($!)
  wait_port "$port" || { cat "$work/emulator.log"; exit 1; }
  connection=$(printf '    - {name: accessProto, value: http}\n    - {name: endpoint, value: "http://127.0.0.1:%s"}\n    - {name: accessKey, value: demo-ak}\n    - {name: secretKey, secretKeyRef: {name: demo, key: secretKey}}' "$port")
  export ROCKETMQ_SECRET_DEMO_SECRETKEY=demo-sk
else
  say "starting the local RocketMQ name server and broker"
  scripts/rocketmq-local.sh install
  scripts/rocketmq-local.sh start
  started_rmq=1
  eval "$(scripts/rocketmq-local.sh env)"
  connection=$(printf '    - {name: accessProto, value: tcp}\n    - {name: nameServer, value: "%s"}\n    - {name: fromWhere, value: ConsumeFromFirstOffset}' "$ROCKETMQ_NAMESRV")
fi

cat >"$work/component.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: demo
spec:
  type: bindings.rocketmq-pluggable
  version: v1
  metadata:
$connection
    - {name: consumerGroup, value: "GID_$topic"}
    - {name: topics, value: "$topic||created||paid"}
YAML

say "starting rocketmq-binding on $work/sockets/rocketmq-pluggable.sock"
"$bin/rocketmq-binding" --socket-folder "$work/sockets" >"$work/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [[ -S "$work/sockets/rocketmq-pluggable.sock" ]] && break; sleep 0.02; done
client=("$bin/rocketmq-binding" client --socket-folder "$work/sockets" --component "$work/component.yaml")

say "reading (in the background): --fail-every 2 acks deliveries 2 and 4 with an error, so they come back"
"${client[@]}" read --count 3 --fail-every 2 --idle 60s >"$work/read.jsonl" 2>"$work/read.err" &
reader=$!
sleep 1

say "sending 3 messages to topic $topic"
for i in 1 2 3; do
  tag=created; [[ $i == 2 ]] && tag=paid
  echo "-- send order-$i (tag $tag)"
  "${client[@]}" send "{\"order\":$i}" -m "rocketmq-tag=$tag" -m "rocketmq-key=order-$i" \
    -m "rocketmq-property-region=eu" -m "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
done
echo "-- send with a tag the subscription filters out (never delivered)"
"${client[@]}" send '{"order":"ignored"}' -m "rocketmq-tag=refunded" >/dev/null

if ! wait "$reader"; then cat "$work/read.err" "$work/daemon.log"; exit 1; fi
say "deliveries (one JSON line each, as the app would see them through daprd)"
cat "$work/read.jsonl"
say "summary"
delivered=$(wc -l <"$work/read.jsonl")
redelivered=$(grep -c '"rocketmq-reconsume-times":"[1-9]' "$work/read.jsonl" || true)
ignored=$(grep -c '"order\\":\\"ignored' "$work/read.jsonl" || true)
echo "mode=$mode deliveries=$delivered redelivered=$redelivered filtered_tag_delivered=$ignored $(cat "$work/read.err")"
# 3 messages; deliveries 2 and 4 fail and come back: 5 deliveries, 2 of them redeliveries.
if [[ "$delivered" -ne 5 || "$redelivered" -ne 2 || "$ignored" -ne 0 ]]; then
  echo "demo FAILED" >&2; cat "$work/daemon.log" >&2; exit 1
fi
echo "demo OK"
