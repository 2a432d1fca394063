"""Dapr's own Go `bindings.rocketmq` (rocketmq-client-go underneath) beside ours, same daprd
build, same broker and topic: messages cross in both directions with body, tag and keys intact.

Found here: the Go binding keeps global clients, so a daprd can hold only **one** Go
`bindings.rocketmq` instance: a second one (another Component, or the input half of the same
Component) fails Init with "producer group has been created" and daprd exits. So the Go output
runs in the daprd that also runs ours, and the Go input in a second daprd.

`E2E_REPORT=path` writes what the app saw from each binding as JSON (the README table).
"""

from __future__ import annotations

import json
import os
import time

from harness import unique

NOISE = ("host", "content-length", "accept-encoding", "user-agent", "connection")


def headers(d):
    return {k: v for k, v in sorted(d.headers.items()) if k not in NOISE}


def test_go_binding_and_ours_interoperate(ws, namesrv):
    topic = unique("sbs")
    common = {"accessProto": "tcp", "nameServer": namesrv, "topics": topic}
    ws.daemon().start()
    go_out, go_in, rs_out, rs_in = unique("goout"), unique("goin"), unique("rsout"), unique("rsin")
    # daprd A: the Go output and both of ours.
    ws.component(go_out, dict(common, direction="output"), type_="bindings.rocketmq")
    ws.component(rs_out, dict(common, direction="output"))
    ws.component(rs_in, dict(common, direction="input", consumerGroup="GID_" + unique("rs"),
                             fromWhere="ConsumeFromFirstOffset"))
    # daprd B: the Go input (the Go binding always starts from the last offset).
    res_b = ws.folder("res-b")
    ws.component(go_in, dict(common, direction="input", consumerGroup="GID_" + unique("go"),
                             backOffDuration="1s"),
                 folder=res_b, type_="bindings.rocketmq")
    app_a, app_b = ws.http_app(), ws.http_app()
    def fail_first():  # an app that fails the first delivery of the "retry" message
        failed: set[bytes] = set()

        def policy(d):
            if json.loads(d.body).get("retry") and d.body not in failed:
                failed.add(d.body)
                return False
            return True

        return policy

    app_a.policy = fail_first()
    app_b.policy = fail_first()
    a = ws.daprd(app_id="side-a", app_port=app_a.port).start(ready="all")
    # The Go consumer fails for good if its topic has no route yet (no retry): create it.
    assert a.invoke(rs_out, {"warm": "up"}).status == 200
    ws.daprd(app_id="side-b", resources=res_b, app_port=app_b.port).start(ready="all")
    comps = a.components()
    assert comps[go_out]["type"] == "bindings.rocketmq"
    assert comps[rs_out]["type"] == "bindings.rocketmq-pluggable"
    time.sleep(3)  # let the Go consumer's rebalance take its queues

    # Go producer -> our consumer. The Go binding honours rocketmq-tag only together with
    # rocketmq-topic.
    go_md = {"rocketmq-topic": topic, "rocketmq-tag": "TagGo", "rocketmq-key": "kgo"}
    r_go = a.invoke(go_out, {"from": "go"}, go_md)
    assert r_go.status in (200, 204), r_go.body
    # Our producer -> the Go consumer.
    r_rs = a.invoke(rs_out, {"from": "rust"}, {"rocketmq-tag": "TagRs", "rocketmq-key": "krs"})
    assert r_rs.status == 200, r_rs.body

    def first(app, route, body):
        ds = app.wait_for(route, lambda ds: any(json.loads(d.body) == body for d in ds), 60,
                          f"{body} on {route}")
        return next(d for d in ds if json.loads(d.body) == body)

    ours = first(app_a, rs_in, {"from": "go"})
    assert ours.headers["rocketmq-tag"] == "TagGo"
    assert ours.headers["rocketmq-keys"] == "kgo"
    theirs = first(app_b, go_in, {"from": "rust"})
    # The Go binding hands the app no tag or keys: only its subscription and group.
    first(app_a, rs_in, {"from": "rust"})
    first(app_b, go_in, {"from": "go"})

    # Redelivery after one app error, on each side.
    for md in ({"rocketmq-topic": topic},):
        assert a.invoke(go_out, {"retry": True}, md).status in (200, 204)
    t0 = time.monotonic()

    def twice(app, route):
        ds = app.wait_for(route, lambda ds: sum(1 for d in ds if b'"retry"' in d.body) >= 2,
                          90, "the retried message twice")
        rs = [d for d in ds if b'"retry"' in d.body]
        return rs[0], rs[1]

    o1, o2 = twice(app_a, rs_in)
    g1, g2 = twice(app_b, go_in)
    assert not o1.ok and o2.ok and o2.reconsume == o1.reconsume + 1
    assert not g1.ok and g2.ok

    report = {
        "send_response_headers": {
            "go": sorted(k for k in r_go.headers if k.startswith("metadata.")),
            "ours": sorted(k for k in r_rs.headers if k.startswith("metadata.")),
        },
        "delivery_headers": {"go": headers(theirs), "ours": headers(ours)},
        "redelivery_after_app_error": {
            "go": {"seconds": round(g2.at - g1.at, 2), "second_headers": headers(g2)},
            "ours": {"seconds": round(o2.at - o1.at, 2), "second_headers": headers(o2)},
        },
        "after_send": round(time.monotonic() - t0, 2),
    }
    errors = {
        "go": a.invoke(go_out, "x", {}, operation="delete").json()["message"],
        "ours": a.invoke(rs_out, "x", {}, operation="delete").json()["message"],
        "go_bad_tag_request": None,
    }
    report["errors"] = errors
    if os.environ.get("E2E_REPORT"):
        with open(os.environ["E2E_REPORT"], "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    print(json.dumps(report, indent=2, sort_keys=True))
