"""Fixtures of the real-daprd suite (run by scripts/test.sh through scripts/dapr-e2e.sh).

The broker addresses come from the environment `scripts/rocketmq-local.sh env` prints
(`ROCKETMQ_NAMESRV`, `ROCKETMQ_ACL_NAMESRV`, `ROCKETMQ_ACL_ACCESS_KEY`,
`ROCKETMQ_ACL_SECRET_KEY`); the emulator is started per test (milliseconds).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Workspace, unique  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def ws(request):
    w = Workspace(request.node.name)
    yield w
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        print(f"\n===== logs of {request.node.name} (kept in {w.dir})\n{w.logs()}")
    w.close(keep=failed)


def _need(var: str) -> str:
    v = os.environ.get(var, "")
    if not v:
        pytest.fail(
            f"{var} is not set: start the brokers with `scripts/rocketmq-local.sh start && "
            f"scripts/rocketmq-local.sh start-acl` and export `scripts/rocketmq-local.sh env`"
        )
    return v


@pytest.fixture(scope="session")
def namesrv() -> str:
    return _need("ROCKETMQ_NAMESRV")


@pytest.fixture(scope="session")
def acl_broker() -> tuple[str, str, str]:
    return (
        _need("ROCKETMQ_ACL_NAMESRV"),
        os.environ.get("ROCKETMQ_ACL_ACCESS_KEY", "rocketmq"),
        os.environ.get("ROCKETMQ_ACL_SECRET_KEY", "12345678"),
    )


class Transport:
    """Connection metadata of one transport for a fresh topic and group."""

    def __init__(self, kind: str, ws: Workspace, namesrv: str):
        self.kind = kind
        self.topic = unique("e2e")
        self.group = "GID_" + unique("g")
        self.emulator = None
        if kind == "http":
            self.emulator = ws.emulator().start()
            self.conn = {
                "accessProto": "http",
                "endpoint": self.emulator.endpoint,
                "accessKey": self.emulator.ak,
                "secretKey": self.emulator.sk,
                "instanceId": "MQ_INST_e2e",
            }
        else:
            self.conn = {
                "accessProto": "tcp",
                "nameServer": namesrv,
                "fromWhere": "ConsumeFromFirstOffset",
            }

    def metadata(self, **extra) -> dict:
        md = dict(self.conn)
        md.update({"topics": self.topic, "consumerGroup": self.group})
        md.update(extra)
        return md

    # Redelivery after an app error: the emulator's invisibility (2 s) or the broker's retry
    # topic (Java: delay level 3 = 10 s with the default levels), after a first delivery that may itself wait for the consumer's second rebalance (20 s).
    redelivery_timeout = 90.0


@pytest.fixture(params=["tcp", "http"])
def transport(request, ws, namesrv) -> Transport:
    return Transport(request.param, ws, namesrv)


@pytest.fixture
def private_pair_factory():
    """Starts name server + broker pairs only this test uses; stops them afterwards."""
    from brokers import PrivatePair

    pairs = []

    def make(*extra: str) -> PrivatePair:
        p = PrivatePair.start(list(extra))
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.close()
