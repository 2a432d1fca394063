#!/usr/bin/env bash
# The full test suite: what .ci/run calls and what the README tells users to run.
#
# 1. installs the Apache RocketMQ (Java) name server and broker from Maven Central when missing
#    (scripts/rocketmq-local.sh; RMQ_SERVER=rust for the Rust servers) and starts a plain pair
#    and an authenticating pair on 127.0.0.1 with fresh temp stores;
# 2. runs the Aliyun MQ HTTP emulator fidelity proof with the official Python and Node SDKs
#    (installed into .tools/ on first run);
# 3. lints and validates the deploy/ manifests (yamllint, kubernetes-validate in .tools/);
# 4. runs `cargo test` (unit, integration and doc tests) with the servers' addresses exported,
#    and for its duration a two-broker cluster (name server 31876, broker-a 32911, broker-b 33911:
#    tests/tcp_cluster.rs SIGKILLs and SIGSTOPs its brokers), then `scripts/demo.sh --tcp` on the
#    running default pair (left running);
# 5. runs the end-to-end suite under the real daprd (scripts/dapr-e2e.sh: builds daprd from Go
#    modules once per version, ~5 min cold, and installs the Dapr Python SDK into .tools/);
# 6. runs the benchmark in smoke mode (seconds; numbers are not judged);
# 7. stops the servers (pairs and cluster), also on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/rocketmq-local.sh install
trap 'scripts/rocketmq-local.sh stop || true' EXIT
scripts/rocketmq-local.sh start
scripts/rocketmq-local.sh start-acl
set -a
# shellcheck disable=SC1090
eval "$(scripts/rocketmq-local.sh env)"
set +a

echo "== deploy/ manifests: yamllint + kubernetes-validate"
scripts/validate-deploy.sh

echo "== demo (scripts/demo.sh, default mode)"
scripts/demo.sh

echo "== Aliyun MQ HTTP emulator: official SDK fidelity"
scripts/http-sdk-fidelity.sh

echo "== cargo test (with the two-broker cluster of tests/tcp_cluster.rs)"
scripts/rocketmq-local.sh start-cluster
set -a
# shellcheck disable=SC1090
eval "$(scripts/rocketmq-local.sh env)"
set +a
cargo test --locked "$@"
scripts/rocketmq-local.sh stop --name cluster
unset ROCKETMQ_CLUSTER_NAMESRV ROCKETMQ_CLUSTER_NAME ROCKETMQ_CLUSTER_BROKERS

echo "== demo against the Java broker (scripts/demo.sh --tcp: uses the running default pair, leaves it running)"
scripts/demo.sh --tcp

echo "== Apache RocketMQ 4.9.7 compatibility subset (tcp_transport against the 4.x Java servers)"
scripts/rocketmq-4x-subset.sh

echo "== under the real daprd (scripts/dapr-e2e.sh)"
scripts/dapr-e2e.sh

echo "== demo through the real daprd (scripts/demo.sh --dapr)"
scripts/demo.sh --dapr

echo "== benchmark smoke (scripts/bench.sh --smoke: seconds-long, keeps the benchmark working)"
scripts/bench.sh --smoke
echo "== side-by-side smoke through daprd (scripts/bench-dapr.sh --smoke: Go bindings.rocketmq vs ours vs a do-nothing pluggable binding; fails on any lost message or failed create)" && scripts/bench-dapr.sh --smoke
