"""Private RocketMQ name server + broker pairs for tests that stop or kill a broker.

Started with `scripts/rocketmq-local.sh start --name … --namesrv-port … --broker-port …` on free
random ports (whichever server `RMQ_SERVER` selects), stopped and removed at close.
"""

from __future__ import annotations

import random
import socket
import subprocess

from harness import ROOT, unique

SCRIPT = ROOT / "scripts" / "rocketmq-local.sh"


def run(*args: str) -> str:
    out = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"rocketmq-local.sh {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block() -> tuple[int, int]:
    # Name server P; broker B with B-2 (fast port) and B+1 (HA).
    for _ in range(200):
        np = random.randint(30000, 55000)
        bp = np + 10
        if all(_free(p) for p in (np, bp, bp - 2, bp + 1)):
            return np, bp
    raise RuntimeError("no free port block")


class PrivatePair:
    def __init__(self, name: str, np: int):
        self.name = name
        self.namesrv = f"127.0.0.1:{np}"

    @classmethod
    def start(cls, extra: list[str]) -> "PrivatePair":
        name = unique("e2e").replace("-", "_")
        np, bp = free_block()
        run("start", "--name", name, "--namesrv-port", str(np), "--broker-port", str(bp), *extra)
        return cls(name, np)

    def broker_stop(self, kill: bool = False):
        run("broker-stop", self.name, *(["--kill"] if kill else []))

    def broker_start(self):
        run("broker-start", self.name)

    def close(self):
        try:
            run("stop", "--name", self.name)
        except RuntimeError:
            pass
