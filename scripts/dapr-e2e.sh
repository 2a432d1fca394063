#!/usr/bin/env bash
# The end-to-end suite under the real daprd (tests/dapr, pytest): daprd built from Go modules
# (scripts/daprd-local.sh) discovers the daemon's socket and drives it with real apps, an HTTP
# app and a gRPC app made with the official Dapr Python SDK, against the RocketMQ broker
# (tcp) and the Aliyun MQ HTTP emulator (http), beside Dapr's own Go bindings.rocketmq.
#
#   scripts/dapr-e2e.sh [pytest args]     e.g. -k http  or  -k "side" -x
#
# 1. installs the Python side (tests/dapr/requirements.txt) into .tools/dapr-py when missing;
# 2. builds daprd once per version (cold: ~5 min on 2 cores, then cached) and the binaries;
# 3. needs the brokers' addresses in the environment (ROCKETMQ_NAMESRV, ROCKETMQ_ACL_*), as
#    scripts/test.sh exports them; starts them itself when they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.tools/dapr-py
REQ=tests/dapr/requirements.txt
stamp="$VENV/.requirements"
if ! cmp -s "$REQ" "$stamp" 2>/dev/null; then
  echo "dapr-e2e: installing $(grep -v '^#' "$REQ" | xargs) into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$stamp"
fi

scripts/daprd-local.sh install >/dev/null
cargo build --quiet --locked --bins

started=0
if [[ -z "${ROCKETMQ_NAMESRV:-}" || -z "${ROCKETMQ_ACL_NAMESRV:-}" ]]; then
  scripts/rocketmq-local.sh install
  scripts/rocketmq-local.sh start
  scripts/rocketmq-local.sh start-acl
  started=1
  set -a
  # shellcheck disable=SC1090
  eval "$(scripts/rocketmq-local.sh env)"
  set +a
fi
cleanup() { if [[ $started == 1 ]]; then scripts/rocketmq-local.sh stop >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

echo "dapr-e2e: daprd $(scripts/daprd-local.sh version), broker ${ROCKETMQ_SERVER:-?} at $ROCKETMQ_NAMESRV" >&2
"$VENV/bin/python" -m pytest tests/dapr -p no:cacheprovider -q -rfE --durations=10 "$@"
