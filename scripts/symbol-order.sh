#!/usr/bin/env bash
# Regenerates link/symbol-order.txt, the code layout of release builds (build.rs passes it to
# LLD as --symbol-ordering-file): every function of the daemon binary that ran while
# scripts/bench-dapr.sh drove it through daprd (output over HTTP and gRPC at C = 1 and 16, the
# four input rows), in the order of their old addresses. Those functions then sit together at
# the start of .text, so the pages that run are few and adjacent instead of spread over the
# whole text (see README, "Memory").
#
# Usage: scripts/symbol-order.sh          (~5 min after the release build; needs valgrind)
#        scripts/symbol-order.sh --check  how many of the file's functions the release daemon
#                                         (cargo build --release --bins) has, and whether they
#                                         lead its .text; exits 1 below 90 %: time to regenerate
#
# How: the benchmark (which makes the release build) with the daemon run under
# `valgrind --tool=callgrind --demangle=no` (one output file per daemon process), then every
# function name callgrind saw that is a text symbol of the binary. Names are exact legacy-mangled
# symbols; rerun this after a compiler, dependency or release-profile change (a name that no
# longer exists is ignored by the linker, so a stale file only costs memory). Run it twice in a
# row and the second file differs only in functions that ran in one run and not the other.
set -euo pipefail

cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "symbol-order.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

target="${CARGO_TARGET_DIR:-target}"
exe="$(pwd)/$target/release/rocketmq-binding"

if [[ "${1:-}" == --check ]]; then
  cargo build --release --bins
  python3 - "$exe" link/symbol-order.txt <<'EOF'
import subprocess, sys

exe, order = sys.argv[1], sys.argv[2]
want = [n for n in open(order).read().split("\n") if n]
text = {}
for line in subprocess.check_output(["nm", "-S", "--defined-only", exe]).decode(errors="replace").splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        text.setdefault(p[3], (int(p[0], 16), int(p[1], 16)))
have = [n for n in want if n in text]
share = len(have) / len(want)
size = sum(text[n][1] for n in have)
span = max((text[n][0] + text[n][1] for n in have), default=0) - min(a for a, _ in text.values())
dense = size / span if span > 0 else 0
print(f"symbol-order.sh: the daemon has {len(have)} of {len(want)} listed functions ({share:.0%}); "
      f"they fill {dense:.0%} of the first {span / 1e6:.2f} MB of its text")
sys.exit(0 if share >= 0.9 and dense >= 0.9 else 1)
EOF
  exit
fi
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

python3 - "$exe" "$work/cg" link/symbol-order.txt <<'EOF'
import collections, pathlib, re, subprocess, sys

exe, cg_dir, out = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
ran = set()
for f in cg_dir.glob("out.*"):
    for line in f.read_text(errors="replace").splitlines():
        m = re.match(r"c?fn=\(\d+\) (.+)$", line)
        if m:
            ran.add(m.group(1).strip())
text = {}
for line in subprocess.check_output(["nm", "-S", "--defined-only", exe]).decode(errors="replace").splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        text.setdefault(p[3], (int(p[0], 16), int(p[1], 16)))
hot = sorted((n for n in ran if n in text), key=lambda n: text[n][0])
if not hot:
    sys.exit("symbol-order.sh: callgrind saw no function of the binary")
pathlib.Path(out).write_text("".join(n + "\n" for n in hot))
size = sum(text[n][1] for n in hot)
total = sum(s for _, s in text.values())
print(f"symbol-order.sh: {len(hot)} functions, {size / 1e6:.2f} of {total / 1e6:.2f} MB of text, in {out}")
EOF
