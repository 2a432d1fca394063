#!/usr/bin/env python3
"""The two halves of scripts/symbol-order.sh, on one reading of the binary's text symbols.

  symbol-order.py write EXE CALLGRIND_DIR OUT  every function callgrind saw that is a text
                                               symbol of EXE, by address, one name per line
  symbol-order.py check EXE ORDER              how many of ORDER's names EXE has and whether
                                               they lead its .text; exit 1 below 90 %
"""
import pathlib
import re
import subprocess
import sys


def text_symbols(exe):
    """name -> (address, size) of every function symbol of `exe` (first definition wins)."""
    out = subprocess.check_output(["nm", "-S", "--defined-only", exe]).decode(errors="replace")
    text = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            text.setdefault(p[3], (int(p[0], 16), int(p[1], 16)))
    return text


def write(exe, cg_dir, out):
    ran = set()
    for f in pathlib.Path(cg_dir).glob("out.*"):
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"c?fn=\(\d+\) (.+)$", line)
            if m:
                ran.add(m.group(1).strip())
    text = text_symbols(exe)
    hot = sorted((n for n in ran if n in text), key=lambda n: text[n][0])
    if not hot:
        sys.exit("symbol-order.sh: callgrind saw no function of the binary")
    pathlib.Path(out).write_text("".join(n + "\n" for n in hot))
    size = sum(text[n][1] for n in hot)
    total = sum(s for _, s in text.values())
    print(f"symbol-order.sh: {len(hot)} functions, {size / 1e6:.2f} of {total / 1e6:.2f} MB of text, in {out}")


def check(exe, order):
    want = [n for n in pathlib.Path(order).read_text().splitlines() if n]
    text = text_symbols(exe)
    have = [n for n in want if n in text]
    share = len(have) / len(want) if want else 0
    size = sum(text[n][1] for n in have)
    span = max((text[n][0] + text[n][1] for n in have), default=0) - min(a for a, _ in text.values())
    dense = size / span if span > 0 else 0
    print(f"symbol-order.sh: the daemon has {len(have)} of {len(want)} listed functions ({share:.0%}); "
          f"they fill {dense:.0%} of the first {span / 1e6:.2f} MB of its text")
    return 0 if share >= 0.9 and dense >= 0.9 else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "write":
        write(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
