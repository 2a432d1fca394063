"""Dapr's own Go `bindings.rocketmq` (rocketmq-client-go) and ours in the same daprd, on the
same broker and topic: messages cross in both directions with body, tag and keys intact.

Also records what the app sees from each binding for the same message, for the README table
(`E2E_REPORT=path` writes it as JSON).
"""

from __future__ import annotations

import json
import os

from harness import unique


def components(ws, namesrv, topic):
    go_in, go_out, rs_in, rs_out = (unique(p) for p in ("goin", "goout", "rsin", "rsout"))
    common = {"accessProto": "tcp", "nameServer": namesrv, "topics": topic}
    ws.component(go_out, dict(common, direction="output"), type_="bindings.rocketmq")
    ws.component(go_in, dict(common, direction="input", consumerGroup="GID_" + unique("go"),
                             backOffMaxRetries="0"),
                 type_="bindings.rocketmq")
    ws.component(rs_out, dict(common, direction="output"))
    ws.component(rs_in, dict(common, direction="input", consumerGroup="GID_" + unique("rs"),
                             fromWhere="ConsumeFromFirstOffset"))
    return go_in, go_out, rs_in, rs_out


def test_go_binding_and_ours_interoperate_in_one_daprd(ws, namesrv):
    topic = unique("sbs")
    ws.daemon().start()
    go_in, go_out, rs_in, rs_out = components(ws, namesrv, topic)
    app = ws.http_app()
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    comps = daprd.components()
    assert comps[go_out]["type"] == "bindings.rocketmq" and comps[rs_out]["type"] == \
        "bindings.rocketmq-pluggable"

    # Go producer -> our consumer.
    r = daprd.invoke(go_out, {"from": "go"}, {"rocketmq-tag": "TagGo", "rocketmq-key": "kgo"})
    assert r.status in (200, 204), r.body
    # Our producer -> the Go consumer.
    r2 = daprd.invoke(rs_out, {"from": "rust"}, {"rocketmq-tag": "TagRs", "rocketmq-key": "krs"})
    assert r2.status == 200, r2.body

    def by_body(route, body):
        return app.wait_for(route, lambda ds: any(json.loads(d.body) == body for d in ds), 60,
                            f"{body} on {route}")

    ours = [d for d in by_body(rs_in, {"from": "go"}) if json.loads(d.body) == {"from": "go"}][0]
    assert ours.headers["rocketmq-tag"] == "TagGo"
    assert ours.headers["rocketmq-keys"] == "kgo"
    theirs = [d for d in by_body(go_in, {"from": "rust"}) if json.loads(d.body) == {"from": "rust"}][0]
    # Both consumers see both messages (one topic, two groups).
    by_body(rs_in, {"from": "rust"})
    by_body(go_in, {"from": "go"})

    report = {
        "go_send_response_headers": sorted(k for k in r.headers if k.startswith("metadata.")),
        "ours_send_response_headers": sorted(k for k in r2.headers if k.startswith("metadata.")),
        "go_delivery_headers": {k: v for k, v in theirs.headers.items()
                                if k not in ("host", "content-length", "accept-encoding",
                                             "user-agent", "connection")},
        "ours_delivery_headers": {k: v for k, v in ours.headers.items()
                                  if k not in ("host", "content-length", "accept-encoding",
                                               "user-agent", "connection")},
    }
    if os.environ.get("E2E_REPORT"):
        with open(os.environ["E2E_REPORT"], "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    print(json.dumps(report, indent=2, sort_keys=True))
