#!/usr/bin/env bash
# Messages through the binding in one command, the way daprd drives it.
#
#   scripts/demo.sh          Aliyun MQ HTTP emulator (starts in milliseconds; the default)
#   scripts/demo.sh --tcp    a local Apache RocketMQ name server + broker (scripts/rocketmq-local.sh;
#                            the first run fetches the jars from Maven Central)
#   scripts/demo.sh --dapr   the real flow: the real daprd (scripts/daprd-local.sh; the first run
#                            builds it, ~5 minutes) in front of the daemon and a tiny HTTP app
#                            (scripts/demo-app.py), the emulator as the broker, curl as the sender
#
# Builds the binaries, starts the broker side and the daemon on a socket in a temp folder, then
# uses `rocketmq-binding client` (a daprd-like client) to Init a Component, send three messages
# with metadata and read them back, acking every second delivery with an error to show redelivery.
# Everything it starts is stopped on exit; with --tcp, a default pair that was already running is
# used and left running (only a pair this run started is stopped, by name).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=http
case "${1:-}" in
  --tcp) mode=tcp ;;
  --dapr) mode=dapr ;;
  "" | --http) ;;
  *) echo "usage: $0 [--tcp | --dapr]" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Only the pair this run started: a default pair that was already running (CI's, another
  # developer's) is left running, and other pairs are never touched.
  if [[ "$mode" == tcp && "${started_rmq:-0}" == 1 ]]; then scripts/rocketmq-local.sh stop --name default >/dev/null 2>&1 || true; fi
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
if [[ "$mode" == dapr ]]; then
  say "the real daprd (scripts/daprd-local.sh install: built once, then cached)"
  daprd_bin=$(scripts/daprd-local.sh install)
  port="$(free_port)"
  "$bin/aliyun-mq-emulator" --listen "127.0.0.1:$port" --access-key demo-ak --secret-key demo-sk \
    --invisibility-seconds 2 >"$work/emulator.log" 2>&1 &
  pids+=($!)
  wait_port "$port" || { cat "$work/emulator.log"; exit 1; }
  mkdir -p "$work/components"
  cat >"$work/components/orders.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: orders
spec:
  type: bindings.rocketmq-pluggable
  version: v1
  metadata:
    - {name: accessProto, value: http}
    - {name: endpoint, value: "http://127.0.0.1:$port"}
    - {name: accessKey, value: demo-ak}
    - {name: secretKey, value: demo-sk}
    - {name: consumerGroup, value: "GID_$topic"}
    - {name: topics, value: "$topic||created||paid"}
YAML
  cat >"$work/config.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: demo}
spec:
  nameResolution: {component: kubernetes}   # no mDNS: everything stays on 127.0.0.1
YAML
  say "starting rocketmq-binding, then the app, then daprd (daprd scans the socket folder once, at its start)"
  "$bin/rocketmq-binding" --socket-folder "$work/sockets" >"$work/daemon.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do [[ -S "$work/sockets/rocketmq-pluggable.sock" ]] && break; sleep 0.02; done
  app_port="$(free_port)"; http_port="$(free_port)"
  python3 scripts/demo-app.py "$app_port" orders >"$work/app.jsonl" 2>"$work/app.err" &
  pids+=($!)
  wait_port "$app_port" || { cat "$work/app.err"; exit 1; }
  DAPR_COMPONENTS_SOCKETS_FOLDER="$work/sockets" "$daprd_bin" --app-id demo \
    --resources-path "$work/components" --config "$work/config.yaml" \
    --app-port "$app_port" --app-protocol http --app-channel-address 127.0.0.1 \
    --dapr-http-port "$http_port" --dapr-grpc-port "$(free_port)" \
    --dapr-internal-grpc-port "$(free_port)" --dapr-internal-grpc-listen-address 127.0.0.1 \
    --dapr-listen-addresses 127.0.0.1 --enable-metrics=false >"$work/daprd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/v1.0/healthz")" == 204 ]] && break
    sleep 0.1
  done
  grep -o "pluggable component 'rocketmq-pluggable' was successfully registered for '[^']*'" "$work/daprd.log" || {
    tail -30 "$work/daprd.log"; exit 1; }
  say "daprd lists the component (GET /v1.0/metadata)"
  curl -s "http://127.0.0.1:$http_port/v1.0/metadata" | python3 -c 'import json,sys; [print(" ", c) for c in json.load(sys.stdin)["components"]]'
  say "sending 3 messages through daprd (POST /v1.0/bindings/orders) and one with a filtered tag"
  for i in 1 2 3; do
    tag=created; [[ $i == 2 ]] && tag=paid
    echo "-- order-$i (tag $tag): receipt headers from daprd:"
    curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$http_port/v1.0/bindings/orders" \
      -H 'content-type: application/json' \
      -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
      -d "{\"operation\":\"create\",\"data\":{\"order\":$i},\"metadata\":{\"rocketmq-tag\":\"$tag\",\"rocketmq-key\":\"order-$i\",\"rocketmq-property-region\":\"eu\"}}" |
      grep -i '^metadata\.' | sed 's/^/   /'
  done
  curl -s -o /dev/null -X POST "http://127.0.0.1:$http_port/v1.0/bindings/orders" \
    -d '{"operation":"create","data":"ignored","metadata":{"rocketmq-tag":"refunded"}}'
  say "what the app received (every second delivery answered 500, so it comes back)"
  for _ in $(seq 1 300); do [[ $(wc -l <"$work/app.jsonl") -ge 5 ]] && break; sleep 0.1; done
  sleep 3
  cat "$work/app.jsonl"
  delivered=$(wc -l <"$work/app.jsonl")
  redelivered=$(grep -c '"rocketmq-reconsume-times": "[1-9]' "$work/app.jsonl" || true)
  ignored=$(grep -c 'ignored' "$work/app.jsonl" || true)
  say "summary"
  echo "mode=dapr deliveries=$delivered redelivered=$redelivered filtered_tag_delivered=$ignored"
  if [[ "$delivered" -ne 5 || "$redelivered" -ne 2 || "$ignored" -ne 0 ]]; then
    echo "demo FAILED" >&2; tail -40 "$work/daprd.log" "$work/daemon.log" >&2; exit 1
  fi
  echo "demo OK"
  exit 0
fi
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
  if scripts/rocketmq-local.sh running default; then
    echo "(the default pair is already running: using it, and leaving it running)"
  else
    started_rmq=1
    scripts/rocketmq-local.sh start
  fi
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
