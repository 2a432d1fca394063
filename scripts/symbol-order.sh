#!/usr/bin/env bash
# Regenerates link/symbol-order.txt, the code layout of release builds (build.rs passes it to
# LLD as --symbol-ordering-file): every function of the daemon binary that ran while
# scripts/bench-dapr.sh drove it through daprd (output over HTTP and gRPC at C = 1 and 16, the
# four input rows), in the order of their old addresses. Those functions then sit together at
# the start of .text, so the pages that run are few and adjacent instead of spread over the
# whole text (see README, "Code layout" under Benchmark).
#
# Usage: scripts/symbol-order.sh          (~8 min with the release builds; needs valgrind)
#        scripts/symbol-order.sh --check  how many of the file's functions the release daemon
#                                         (cargo build --release --bins) has, and whether they
#                                         lead its .text; exits 1 below 90 %: time to regenerate
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
command -v valgrind >/dev/null || { echo "symbol-order.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
work="$(pwd)/$target/symbol-order"
rm -rf "$work"
mkdir -p "$work/cg"

cat >"$work/daemon-callgrind.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/cg/out.%p $exe "\$@"
EOF
chmod +x "$work/daemon-callgrind.sh"

# The daemon runs ~20-50x slower under callgrind: small counts, generous limits.
scripts/bench-dapr.sh --daemon "$work/daemon-callgrind.sh" --rounds 1 --concurrency 1,16 \
  --messages 1600 --backlog 1000 --limit-secs 300 >"$work/bench.txt"

python3 scripts/symbol-order.py write "$exe" "$work/cg" link/symbol-order.txt
