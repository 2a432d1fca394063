#!/usr/bin/env python3
"""The two halves of scripts/symbol-order.sh, on one reading of the binary's text symbols.

  symbol-order.py write EXE OUT DIR...         every function callgrind saw (in the out.* files
                                               of the DIRs) that is a text symbol of EXE, one
                                               name per line: first those every DIR saw, then
                                               those of the first DIR only, then of the second
                                               …, each group by address
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


def seen(cg_dir):
    """Every function name in the callgrind outputs of `cg_dir`."""
    ran = set()
    for f in pathlib.Path(cg_dir).glob("out.*"):
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"c?fn=\(\d+\) (.+)$", line)
            if m:
                ran.add(m.group(1).strip())
    return ran


def write(exe, out, *cg_dirs):
    # One group per run shape (TCP, HTTP), so that a daemon of one transport touches the shared
    # code and its own group, not pages interleaved with the other transport's functions.
    text = text_symbols(exe)
    runs = [{n for n in seen(d) if n in text} for d in cg_dirs]
    common = set.intersection(*runs)
    groups, done = [common], set(common)
    for r in runs:
        groups.append(r - done)
        done |= r
    hot = [n for g in groups for n in sorted(g, key=lambda n: text[n][0])]
    if not hot:
        sys.exit("symbol-order.sh: callgrind saw no function of the binary")
    pathlib.Path(out).write_text("".join(n + "\n" for n in hot))
    size = sum(text[n][1] for n in hot)
    total = sum(s for _, s in text.values())
    parts = " + ".join(f"{len(g)}" for g in groups)
    print(f"symbol-order.sh: {len(hot)} functions ({parts}: shared, then each run's own), "
          f"{size / 1e6:.2f} of {total / 1e6:.2f} MB of text, in {out}")


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
    if len(sys.argv) >= 5 and sys.argv[1] == "write":
        write(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
