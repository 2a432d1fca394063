"""Input through the real daprd to an HTTP app and to a gRPC app (Dapr Python SDK)."""

from __future__ import annotations


from harness import unique


def send_all(daprd, name: str, n: int, prefix: str = "m") -> list[str]:
    ids = []
    for i in range(n):
        r = daprd.invoke(name, f"{prefix}-{i}", {"rocketmq-property-idx": str(i)})
        assert r.status == 200, r.body
        ids.append(r.headers["metadata.rocketmq-message-id"])
    return ids


def check_once_with_redelivery(app, route: str, ids: list[str], failing: set[int],
                               timeout: float):
    """Every message succeeded exactly once; the failing ones first failed, then came back with
    a higher reconsume count; nothing arrives after that."""
    n = len(ids)

    def done(ds):
        ok = {d.message_id for d in ds if d.ok}
        return len(ok) >= n

    ds = app.wait_for(route, done, timeout, f"{n} successful deliveries")
    ds += app.quiet(route, 4)
    ok = [d for d in ds if d.ok]
    assert sorted(d.message_id for d in ok) == sorted(ids), "successful deliveries != sent"
    by_idx: dict[int, list] = {}
    for d in ds:
        by_idx.setdefault(int(d.prop("idx")), []).append(d)
    for i in range(n):
        got = by_idx[i]
        if i in failing:
            assert not got[0].ok and got[0].reconsume == 0, got
            assert got[-1].ok and got[-1].reconsume >= 1, [(d.ok, d.reconsume) for d in got]
            assert [d.ok for d in got].count(True) == 1
        else:
            assert len(got) == 1 and got[0].ok, [(d.ok, d.reconsume) for d in got]


def fail_first_of(failing: set[int]):
    seen: set[str] = set()

    def policy(d):
        first = d.message_id not in seen
        seen.add(d.message_id)
        return not (first and int(d.prop("idx")) in failing)

    return policy


def test_http_app_every_message_once_and_redelivered_after_500(ws, transport):
    name = unique("in")
    ws.daemon().start()
    ws.component(name, transport.metadata())
    app = ws.http_app(subscribed={name})
    failing = {1, 4, 7}
    app.policy = fail_first_of(failing)
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    ids = send_all(daprd, name, 10)
    check_once_with_redelivery(app, name, ids, failing, transport.redelivery_timeout)
    # One POST per message, daprd's Content-Type, metadata as lower-cased headers.
    d = app.on(name)[0]
    assert d.headers["content-type"] == "application/json"
    for key in ("rocketmq-topic", "rocketmq-message-id", "rocketmq-reconsume-times",
                "rocketmq-consumer-group", "rocketmq-born-timestamp"):
        assert key in d.headers, (key, d.headers)
    assert d.headers["rocketmq-consumer-group"] == transport.group


def test_grpc_app_every_message_once_and_redelivered_after_exception(ws, transport):
    name = unique("gin")
    ws.daemon().start()
    ws.component(name, transport.metadata())
    app = ws.grpc_app([name])
    failing = {0, 5}
    app.policy = fail_first_of(failing)
    daprd = ws.daprd(app_port=app.port, app_protocol="grpc").start(ready="all")
    # Raw bytes through the SDK's gRPC client.
    ids = []
    with daprd.client() as c:
        for i in range(8):
            body = bytes([0, 255, i]) + b"\xfe\xff body"
            resp = c.invoke_binding(name, "create", data=body,
                                    binding_metadata={"rocketmq-property-idx": str(i)})
            ids.append(dict(resp.binding_metadata)["rocketmq-message-id"])
    check_once_with_redelivery(app, name, ids, failing, transport.redelivery_timeout)
    for d in app.on(name):
        i = int(d.prop("idx"))
        assert d.body == bytes([0, 255, i]) + b"\xfe\xff body"


def test_subscription_by_options_direction_and_route(ws, transport):
    ws.daemon().start()
    names = {k: unique(k) for k in ("opt", "dir", "rte", "none")}
    topics = {k: unique("t") for k in names}
    # One consumer group per Component: a group is one subscription.
    groups = {k: "GID_" + unique(k) for k in names}
    ws.component(names["opt"], transport.metadata(topics=topics["opt"], consumerGroup=groups["opt"]))
    ws.component(names["dir"], transport.metadata(topics=topics["dir"], consumerGroup=groups["dir"],
                                                  direction="input,output"))
    ws.component(names["rte"], transport.metadata(topics=topics["rte"], consumerGroup=groups["rte"],
                                                  route="/custom-route"))
    ws.component(names["none"], transport.metadata(topics=topics["none"],
                                                   consumerGroup=groups["none"]))
    # The app answers OPTIONS only for "opt" and the custom route; "dir" is subscribed by its
    # direction; "none" is not subscribed at all.
    app = ws.http_app(subscribed={names["opt"], "custom-route"})
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    for k in names:
        r = daprd.invoke(names[k], f"to-{k}")
        assert r.status == 200, (k, r.body)
    app.wait_count(names["opt"], 1, 60)
    app.wait_count(names["dir"], 1, 60)
    app.wait_count("custom-route", 1, 60)
    assert names["dir"] not in app.options_seen, "daprd asked OPTIONS despite direction: input"
    assert names["none"] in app.options_seen
    assert not app.on(names["none"]) and not app.quiet(names["none"], 3)
    opened = [l for l in ws.the_daemon.log().splitlines() if "read stream opened" in l]
    assert any(names["opt"] in l for l in opened), opened
    assert not any(names["none"] in l for l in opened), "daprd opened Read for an unsubscribed app"


def test_basic_delivery_metadata(ws, transport):
    """`deliveryMetadata: basic`: the app gets the message's own keys (topic, id, tag, keys,
    user properties) and none of the broker's bookkeeping; a failed delivery still comes back
    and still counts as a redelivery, although its reconsume count is not shown."""
    name = unique("inbasic")
    daemon = ws.daemon().start()
    ws.component(name, transport.metadata(deliveryMetadata="Basic"))
    app = ws.http_app(subscribed={name})
    seen: set[str] = set()

    def fail_first(d):
        first = d.message_id not in seen
        seen.add(d.message_id)
        return not first

    app.policy = fail_first
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    r = daprd.invoke(name, "basic", {"rocketmq-tag": "tb", "rocketmq-key": "k1, k2",
                                     "rocketmq-property-idx": "0"})
    assert r.status == 200, r.body
    sent_id = r.headers["metadata.rocketmq-message-id"]
    ds = app.wait_for(name, lambda ds: any(d.ok for d in ds), transport.redelivery_timeout,
                      "the redelivery")
    assert [d.ok for d in ds] == [False, True], [(d.ok, d.headers) for d in ds]
    for d in ds:
        got = sorted(k for k in d.headers if k.startswith("rocketmq-"))
        assert got == ["rocketmq-keys", "rocketmq-message-id", "rocketmq-property-idx",
                       "rocketmq-tag", "rocketmq-topic"], got
        assert d.message_id == sent_id
        assert d.headers["rocketmq-topic"] == transport.topic
        assert d.headers["rocketmq-tag"] == "tb"
        assert d.headers["rocketmq-keys"] == "k1,k2"
    assert daemon.metric("rocketmq_binding_redeliveries_total", instance=name) == 1
