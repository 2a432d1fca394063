#!/usr/bin/env bash
# Fidelity proof for aliyun-mq-emulator: the unmodified official Aliyun MQ HTTP SDKs
# (PyPI mq-http-sdk 1.0.3, npm @aliyunmq/mq-http-sdk 1.0.4) run their whole flow against it:
# publish with tag/key/properties, consume with instance + tag filter, ack (and ack errors),
# redelivery after the invisibility time, empty long poll, ordered consume, timer messages,
# a transactional commit (Python) and a wrong secret rejected.
#
# Installs the SDKs into project-local folders (.tools/py, .tools/node; skipped when already
# present), builds and starts the emulator on a free 127.0.0.1 port, runs
# scripts/sdk-fidelity/*.{py,js}, stops the emulator on exit. Prints one PASS/FAIL line per
# step and a summary; exits non-zero on any failure.
#
# Environment: EMULATOR_BIN (use this binary instead of building), INVISIBILITY_SECONDS (2).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
PY_DIR="$TOOLS/py"
NODE_DIR="$TOOLS/node"
INVIS="${INVISIBILITY_SECONDS:-2}"
AK="FIDELITY_AK_$$"
SK="fidelity-secret-$RANDOM$RANDOM"
LOG_DIR="$(mktemp -d)"
EMU_PID=""
pass=0
fail=0

cleanup() {
  if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill "$EMU_PID" 2>/dev/null
    wait "$EMU_PID" 2>/dev/null
  fi
  rm -rf "$LOG_DIR"
}
trap cleanup EXIT

result() { # result PASS|FAIL text
  echo "$1 $2"
  if [[ "$1" == PASS ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
}

finish() {
  echo "http-sdk-fidelity: $pass passed, $fail failed"
  [[ "$fail" -eq 0 ]]
  exit $?
}

# --- the official SDKs, unmodified, project-local ---
py_ok() { "$PY_DIR/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mq-http-sdk") != "1.0.3")' 2>/dev/null; }
if ! py_ok; then
  python3 -m venv "$PY_DIR" && "$PY_DIR/bin/pip" install --quiet --disable-pip-version-check "mq-http-sdk==1.0.3" >"$LOG_DIR/pip.log" 2>&1
fi
if py_ok; then result PASS "setup python SDK mq-http-sdk 1.0.3"; else cat "$LOG_DIR/pip.log" 2>/dev/null; result FAIL "setup python SDK mq-http-sdk 1.0.3"; finish; fi

NODE_PKG="$NODE_DIR/node_modules/@aliyunmq/mq-http-sdk/package.json"
node_ok() { [[ "$(node -p 'require(process.argv[1]).version' "$NODE_PKG" 2>/dev/null)" == "1.0.4" ]]; }
if ! node_ok; then
  mkdir -p "$NODE_DIR" && npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "@aliyunmq/mq-http-sdk@1.0.4" >"$LOG_DIR/npm.log" 2>&1
fi
if node_ok; then result PASS "setup node SDK @aliyunmq/mq-http-sdk 1.0.4"; else cat "$LOG_DIR/npm.log" 2>/dev/null; result FAIL "setup node SDK @aliyunmq/mq-http-sdk 1.0.4"; finish; fi

# --- the emulator on a free loopback port ---
BIN="${EMULATOR_BIN:-}"
if [[ -z "$BIN" ]]; then
  if ! (cd "$ROOT" && cargo build --quiet --bin aliyun-mq-emulator); then
    result FAIL "build aliyun-mq-emulator"; finish
  fi
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/aliyun-mq-emulator"
fi
"$BIN" --listen 127.0.0.1:0 --access-key "$AK" --secret-key "$SK" \
  --invisibility-seconds "$INVIS" --order-invisibility-seconds "$INVIS" \
  >"$LOG_DIR/emu.out" 2>"$LOG_DIR/emu.err" &
EMU_PID=$!
ADDR=""
for _ in $(seq 1 100); do
  ADDR="$(sed -n 's/^aliyun-mq-emulator listening on //p' "$LOG_DIR/emu.out")"
  [[ -n "$ADDR" ]] && break
  kill -0 "$EMU_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ADDR" ]]; then
  cat "$LOG_DIR/emu.err"
  result FAIL "start aliyun-mq-emulator"; finish
fi
result PASS "start aliyun-mq-emulator on $ADDR"
ENDPOINT="http://$ADDR"

# --- the SDK programs (each prints PASS/FAIL lines) ---
# Steps each program must report: a program that stops early (or skips a step) fails here
# even if every line it printed was PASS.
EXPECTED_PYTHON=11
EXPECTED_NODE=8
run_program() { # name expected-steps command...
  local name="$1" expected="$2"; shift 2
  local out="$LOG_DIR/$name.out"
  "$@" >"$out" 2>"$LOG_DIR/$name.err"
  local rc=$?
  local lines
  lines="$(grep -E '^(PASS|FAIL) ' "$out")"
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    result "${line%% *}" "${line#* }"
  done <<<"$lines"
  if [[ $rc -ne 0 ]]; then
    if ! grep -q '^FAIL ' "$out"; then result FAIL "$name program exited with $rc"; fi
    echo "--- $name stderr (last 40 lines) ---"
    tail -n 40 "$LOG_DIR/$name.err"
  fi
  local reported
  reported="$(grep -cE '^(PASS|FAIL) ' "$out")"
  if [[ "$reported" -eq "$expected" ]]; then
    result PASS "$name reported all $expected steps"
  else
    result FAIL "$name reported $reported of $expected steps"
  fi
}

run_program python "$EXPECTED_PYTHON" timeout 300 "$PY_DIR/bin/python" "$ROOT/scripts/sdk-fidelity/python_sdk.py" "$ENDPOINT" "$AK" "$SK" "$INVIS"
NODE_PATH="$NODE_DIR/node_modules" run_program node "$EXPECTED_NODE" timeout 300 node "$ROOT/scripts/sdk-fidelity/node_sdk.js" "$ENDPOINT" "$AK" "$SK" "$INVIS"

if kill -0 "$EMU_PID" 2>/dev/null; then
  result PASS "emulator still running after both SDK runs"
else
  result FAIL "emulator still running after both SDK runs"
fi
finish
