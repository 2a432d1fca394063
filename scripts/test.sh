#!/usr/bin/env bash
# The full test suite: what .ci/run calls and what the README tells users to run.
#
# 1. installs the Rust RocketMQ name server and broker when missing (first run: ~15 min on
#    2 cores, then cached in $RMQ_ROOT) and starts a plain pair and an authenticating pair on
#    127.0.0.1 with fresh temp stores;
# 2. runs the Aliyun MQ HTTP emulator fidelity proof with the official Python and Node SDKs
#    (installed into .tools/ on first run);
# 3. lints and validates the deploy/ manifests (yamllint, kubernetes-validate in .tools/);
# 4. runs `cargo test` (unit, integration and doc tests) with the servers' addresses exported;
# 5. runs the benchmark in smoke mode (seconds; numbers are not judged);
# 6. stops the servers, also on failure.
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

echo "== cargo test"
cargo test --locked "$@"

echo "== benchmark smoke (scripts/bench.sh --smoke: seconds-long, keeps the benchmark working)"
scripts/bench.sh --smoke
