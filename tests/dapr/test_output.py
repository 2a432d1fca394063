"""Output through the real daprd: its HTTP API and the Python SDK's gRPC `invoke_binding`.

Each test sends through daprd and reads the messages back through daprd into an HTTP app, so
what is checked is what a Dapr app really sees on both ends.
"""

from __future__ import annotations

import json
import time


from harness import unique

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def start_pair(ws, transport, **extra):
    """Daemon, one Component (input + output) on a fresh topic, an HTTP app subscribed to it,
    and daprd. Returns (daprd, app, component name)."""
    name = unique("orders")
    ws.daemon().start()
    ws.component(name, transport.metadata(**extra))
    app = ws.http_app(subscribed={name})
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    return daprd, app, name


def test_http_api_send_with_metadata_round_trip(ws, transport):
    daprd, app, name = start_pair(ws, transport)
    md = {
        "rocketmq-tag": "TagA",
        "rocketmq-key": "k1,k2",
        "rocketmq-shardingkey": "customer-7",
        "rocketmq-property-region": "eu-west",
        "rocketmq-property-Order-No": "A-17",
    }
    r = daprd.invoke(name, {"order": 1}, md,
                     headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert r.status == 200, (r.status, r.body)
    receipt_id = r.headers.get("metadata.rocketmq-message-id")
    assert receipt_id, f"no metadata.rocketmq-message-id header in {r.headers}"
    assert r.headers.get("metadata.rocketmq-topic") == transport.topic

    [d] = app.wait_count(name, 1, 60)
    # daprd re-marshals `data` as JSON: the message body is the JSON text.
    assert json.loads(d.body) == {"order": 1}
    assert d.message_id == receipt_id
    assert d.headers["rocketmq-tag"] == "TagA"
    assert d.headers["rocketmq-keys"] == "k1,k2"
    assert d.headers["rocketmq-shardingkey"] == "customer-7"
    assert d.prop("region") == "eu-west"
    assert d.prop("order-no") == "A-17"  # HTTP headers are case-insensitive: daprd lower-cases
    assert d.headers["rocketmq-topic"] == transport.topic
    assert d.reconsume == 0
    # daprd continues the caller's trace: the stored traceparent has the caller's trace id.
    assert TRACE_ID in d.headers.get("traceparent", ""), d.headers
    assert not app.quiet(name, 2), "delivered more than once"


def test_grpc_sdk_invoke_binding_bytes_and_receipt(ws, transport):
    daprd, app, name = start_pair(ws, transport)
    body = bytes(range(256)) * 4  # not UTF-8: must arrive byte for byte
    with daprd.client() as c:
        resp = c.invoke_binding(name, "create", data=body,
                                binding_metadata={"rocketmq-tag": "bin",
                                                  "rocketmq-property-kind": "raw"})
    receipt = dict(resp.binding_metadata)
    assert receipt.get("rocketmq-message-id"), receipt
    [d] = app.wait_count(name, 1, 60)
    assert d.body == body
    assert d.message_id == receipt["rocketmq-message-id"]
    assert d.headers["rocketmq-tag"] == "bin"
    assert d.prop("kind") == "raw"
    # The SDK's own gRPC metadata (user-agent, …) is not copied onto the message.
    assert not [k for k in d.headers if k.startswith("rocketmq-property-") and k != "rocketmq-property-kind"]


def test_send_receipt_id_and_none(ws, transport):
    """`sendReceipt`: `id` answers with the message id alone, `none` with nothing (what Dapr's
    Go binding answers), over daprd's HTTP API and gRPC; the message is sent all the same."""
    name_id, name_none = unique("rcpt_id"), unique("rcpt_none")
    ws.daemon().start()
    ws.component(name_id, transport.metadata(sendReceipt="id"))
    ws.component(name_none, transport.metadata(sendReceipt="None"))
    app = ws.http_app(subscribed={name_id})
    daprd = ws.daprd(app_port=app.port).start(ready="all")

    r = daprd.invoke(name_id, "by-http", {"rocketmq-tag": "t"})
    assert r.status == 200, (r.status, r.body)
    got = {k: v for k, v in r.headers.items() if k.lower().startswith("metadata.")}
    assert list(got) == ["metadata.rocketmq-message-id"], got
    [d] = app.wait_count(name_id, 1, 60)
    assert d.message_id == got["metadata.rocketmq-message-id"]

    r = daprd.invoke(name_none, "by-http", {"rocketmq-tag": "t"})
    assert r.status == 200, (r.status, r.body)
    got = [k for k in r.headers if k.lower().startswith("metadata.")]
    assert got == [], got

    with daprd.client() as c:
        one = c.invoke_binding(name_id, "create", data=b"by-grpc")
        none = c.invoke_binding(name_none, "create", data=b"by-grpc")
    assert list(dict(one.binding_metadata)) == ["rocketmq-message-id"], one.binding_metadata
    assert dict(none.binding_metadata) == {}, none.binding_metadata
    by_id = {d.message_id: d for d in app.wait_count(name_id, 2, 60)}
    assert by_id[dict(one.binding_metadata)["rocketmq-message-id"]].body == b"by-grpc"


def test_delayed_delivery(ws, transport):
    daprd, app, name = start_pair(ws, transport)
    sent = time.monotonic()
    r = daprd.invoke(name, "later", {"rocketmq-deliver-after": "4s"})
    assert r.status == 200, r.body
    [d] = app.wait_count(name, 1, 70)
    waited = d.at - sent
    # 5.x timers may fire up to 1 s early (the wheel's granularity).
    assert waited >= 2.9, f"delivered after {waited:.2f}s, asked for 4s"
    if transport.kind == "tcp":
        sent = time.monotonic()
        r = daprd.invoke(name, "level2", {"rocketmq-delaylevel": "2"})
        assert r.status == 200, r.body
        ds = app.wait_count(name, 2, 70)
        waited = ds[1].at - sent
        assert waited >= 4.0, f"delay level 2 (5 s) delivered after {waited:.2f}s"


def test_errors_reach_the_app_with_the_problem_named(ws, transport):
    daprd, app, name = start_pair(ws, transport)
    r = daprd.invoke(name, "x", {"rocketmq-deliver-after": "soon"})
    assert r.status == 500, r.body
    err = r.json()
    assert err["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "rocketmq-deliver-after" in err["message"] and "soon" in err["message"], err
    assert "InvalidArgument" in err["message"] or "invalid" in err["message"].lower(), err

    if transport.kind == "http":
        r = daprd.invoke(name, "x", {"rocketmq-delaylevel": "3"})
        assert r.status == 500
        assert "rocketmq-delaylevel" in r.json()["message"]

    # The broker's own topics are refused on both transports: no caller writes into another
    # group's retry or dead-letter queue.
    for topic in ("%DLQ%" + transport.group, "%RETRY%" + transport.group, "TBW102",
                  "rmq_sys_wheel_timer"):
        r = daprd.invoke(name, "x", {"rocketmq-topic": topic})
        assert r.status == 500, (topic, r.body)
        msg = r.json()["message"]
        assert "InvalidArgument" in msg and "rocketmq-topic" in msg and topic in msg, msg

    r = daprd.invoke(name, "x", {}, operation="delete")
    assert r.status == 500 or r.status == 400, r
    assert "delete" in r.json()["message"]
    # None of it reached the topic.
    assert not app.quiet(name, 2)


def test_unknown_topic_with_auto_create_off(ws, private_pair_factory):
    pair = private_pair_factory("--no-auto-create")
    name = unique("strict")
    ws.daemon().start()
    ws.component(name, {"accessProto": "tcp", "nameServer": pair.namesrv,
                        "topics": "never-created-topic"})
    daprd = ws.daprd().start()
    r = daprd.invoke(name, "x", {"rocketmq-topic": "never-created-topic"})
    assert r.status == 500, r.body
    msg = r.json()["message"]
    assert "never-created-topic" in msg, msg
    assert "NotFound" in msg or "not found" in msg.lower() or "does not exist" in msg.lower(), msg


def test_broker_down_reaches_the_app(ws, transport, private_pair_factory):
    if transport.kind == "tcp":
        pair = private_pair_factory()
        conn = {"accessProto": "tcp", "nameServer": pair.namesrv, "sendTimeout": "2s",
                "retries": "0"}
        md = dict(conn, topics=transport.topic)
    else:
        md = transport.metadata()
    name = unique("down")
    ws.daemon().start()
    ws.component(name, md)
    daprd = ws.daprd().start()
    assert daprd.invoke(name, "before").status == 200
    if transport.kind == "tcp":
        pair.broker_stop(kill=True)
        target = pair.namesrv
    else:
        transport.emulator.kill()
        target = transport.emulator.endpoint
    t = time.monotonic()
    r = daprd.invoke(name, "while down")
    took = time.monotonic() - t
    assert r.status == 500, r.body
    msg = r.json()["message"]
    assert "Unavailable" in msg or "unavailable" in msg.lower(), msg
    assert took < 15, f"the failing send took {took:.1f}s"
    if transport.kind == "http":
        assert target.split("//")[1] in msg, msg
