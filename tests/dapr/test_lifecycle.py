"""Discovery, Init, secrets, isolation, hot reload and faults under the real daprd."""

from __future__ import annotations

import threading
import time

from harness import COMPONENT_TYPE, unique, wait_until


def test_discovery_and_init_listed_by_daprd(ws, transport):
    name = unique("disc")
    ws.daemon().start()
    ws.component(name, transport.metadata())
    daprd = ws.daprd().start()
    log = daprd.log()
    for svc in ("InputBinding", "OutputBinding"):
        assert (f"pluggable component 'rocketmq-pluggable' was successfully registered for "
                f"'dapr.proto.components.v1.{svc}'") in log, log[-3000:]
    comps = daprd.components()
    assert name in comps, comps
    assert comps[name]["type"] == COMPONENT_TYPE
    assert comps[name]["version"] == "v1"
    # Output works right away (daprd called Init and ListOperations).
    assert daprd.invoke(name, "hello").status == 200


def test_daemon_missing_or_started_after_daprd_fails_as_documented(ws, transport):
    name = unique("late")
    ws.component(name, transport.metadata())
    daprd = ws.daprd()
    daprd.spawn()
    code = daprd.wait_exit(timeout=60)
    log = daprd.log()
    assert code != 0
    # daprd 1.18: "couldn't find binding <name> (bindings.rocketmq-pluggable/v1)", fatal.
    assert f"couldn't find binding {name} ({COMPONENT_TYPE}/v1)" in log, log[-3000:]
    # Starting the daemon afterwards does not help this daprd (discovery runs once at start);
    # a restarted daprd finds it.
    ws.daemon().start()
    daprd2 = ws.daprd(app_id="late2").start()
    assert name in daprd2.components()


def test_bad_component_metadata_fails_init_naming_the_key(ws, transport):
    name = unique("bad")
    ws.daemon().start()
    ws.component(name, transport.metadata(consumerBatchSize="lots"))
    daprd = ws.daprd()
    daprd.spawn()
    code = daprd.wait_exit(timeout=60)
    log = daprd.log()
    assert code != 0
    assert "consumerBatchSize" in log and "lots" in log, log[-3000:]
    # With ignoreErrors the sidecar starts without it.
    ws.component(name, transport.metadata(consumerBatchSize="lots"), ignore_errors=True)
    daprd2 = ws.daprd(app_id="bad2").start()
    assert name not in daprd2.components()


def test_secret_key_ref_resolved_by_daprd_against_the_acl_broker(ws, acl_broker):
    ns, ak, sk = acl_broker
    topic = unique("acl")
    ws.write("secrets.yaml", """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: envstore
spec:
  type: secretstores.local.env
  version: v1
  metadata: []
""")
    good, bad = unique("good"), unique("bad")
    for n, var in ((good, "E2E_RMQ_SK"), (bad, "E2E_RMQ_WRONG_SK")):
        ws.component(n, {"accessProto": "tcp", "nameServer": ns, "accessKey": ak,
                         "secretKey": {"secretKeyRef": {"name": var, "key": var}},
                         "topics": topic, "consumerGroup": "GID_" + unique("g"),
                         "fromWhere": "ConsumeFromFirstOffset",
                         "direction": "output" if n == bad else "input,output"},
                     secret_store="envstore", ignore_errors=(n == bad))
    ws.daemon().start()
    app = ws.http_app(subscribed={good})
    daprd = ws.daprd(app_port=app.port, env={"E2E_RMQ_SK": sk, "E2E_RMQ_WRONG_SK": sk + "x"})
    daprd.start(ready="all")
    r = daprd.invoke(good, "signed")
    assert r.status == 200, r.body
    [d] = app.wait_count(good, 1, 60)
    assert d.body == b'"signed"'
    # The wrong secret: the Java 5.3 name server authenticates nothing, so Init (which starts
    # the producer) passes; the broker refuses the send, and the app is told why.
    r = daprd.invoke(bad, "wrongly signed")
    assert r.status == 500, r.body
    msg = r.json()["message"]
    assert "Unauthenticated" in msg or "PermissionDenied" in msg, msg
    # The secret never shows up in any log or error.
    for text in (ws.the_daemon.log(), daprd.log(), msg):
        assert sk not in text


def test_two_components_of_our_type_stay_isolated(ws, transport):
    a, b = unique("a"), unique("b")
    ws.daemon().start()
    ta, tb = unique("ta"), unique("tb")
    ws.component(a, transport.metadata(topics=ta, consumerGroup="GID_" + unique("ga")))
    ws.component(b, transport.metadata(topics=tb, consumerGroup="GID_" + unique("gb")))
    app = ws.http_app(subscribed={a, b})
    # b's app fails everything: a's deliveries must not wait for b's.
    app.policy = lambda d: d.route == a
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    for i in range(5):
        assert daprd.invoke(a, f"a{i}").status == 200
        assert daprd.invoke(b, f"b{i}").status == 200
    da = app.wait_count(a, 5, 60)
    app.wait_count(b, 5, 60)
    assert {d.body for d in da} == {f'"a{i}"'.encode() for i in range(5)}
    assert all(d.headers["rocketmq-topic"] == ta for d in da)
    assert all(d.headers["rocketmq-topic"] == tb for d in app.on(b))
    daemon_log = ws.the_daemon.log()
    for n in (a, b):
        assert f'component instance initialised instance="{n}" role=input' in daemon_log


def test_hot_reload_reinitialises_and_closes(ws, transport):
    """daprd's HotReload: a changed Component is re-Initialised with the new metadata; a
    removed one closes its clients (producer with its connection, consumer once idle)."""
    name = unique("hot")
    ws.daemon(extra=["--input-idle-timeout", "2s"]).start()
    t1, t2 = unique("t1"), unique("t2")
    ws.component(name, transport.metadata(topics=t1))
    app = ws.http_app(subscribed={name})
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    assert daprd.invoke(name, "one").status == 200
    [d] = app.wait_count(name, 1, 60)
    assert d.headers["rocketmq-topic"] == t1
    daemon = ws.the_daemon
    # Change the topic: daprd closes and re-Inits the component with the new metadata.
    ws.component(name, transport.metadata(topics=t2))
    for role in ("input", "output"):
        daemon.wait_log_count(rf'component instance initialised instance="{name}" role={role}',
                              2, 30)
    daemon.wait_log(rf're-initialised: closing the previous consumer instance="{name}"', 30)
    # The old producer closed, with its connection or by the re-Init, whichever came first.
    daemon.wait_log(rf'(re-initialised: closing the previous producer instance="{name}"|'
                    rf'daprd closed the output connection: producer closed instance={name})', 30)

    def sent_to_t2():
        r = daprd.invoke(name, "two")
        return r.status == 200 and r.headers.get("metadata.rocketmq-topic") == t2

    wait_until(sent_to_t2, 30, "sends to the new topic", every=0.5)
    ds = app.wait_for(name, lambda ds: any(x.headers["rocketmq-topic"] == t2 for x in ds), 60,
                      "a delivery from the new topic")
    assert all(x.headers["rocketmq-topic"] in (t1, t2) for x in ds)
    # Remove it: the daemon closes the instance's clients.
    (ws.resources / f"{name}.yaml").unlink()
    daemon.wait_log(rf'daprd closed the output connection: producer closed instance={name}', 30)
    daemon.wait_log(rf'no Read stream: consumer closed until the next Read instance="{name}"', 30)
    wait_until(lambda: name not in daprd.components(), 30, "component gone from metadata")
    assert daprd.invoke(name, "three").status == 500


def test_daprd_killed_and_restarted_while_daemon_runs(ws, transport):
    """No message is confirmed without the app's ack: deliveries in flight when daprd dies
    come back once a new daprd reads again."""
    name = unique("dk")
    ws.daemon().start()
    ws.component(name, transport.metadata())
    app = ws.http_app(subscribed={name})
    release = threading.Event()

    def hold(d):
        release.wait(30)  # daprd is SIGKILLed while the app works on these
        return False

    app.policy = hold
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    ids = {daprd.invoke(name, f"k{i}").headers["metadata.rocketmq-message-id"] for i in range(3)}
    app.wait_for(name, lambda ds: {d.message_id for d in ds} >= ids, 90, "all 3 in flight")
    daprd.kill()
    app.policy = lambda d: True
    release.set()
    # The daemon notices the stream end and hands the deliveries back to the broker.
    ws.the_daemon.wait_log(rf"read stream ended instance={name}", 20)
    phase2 = time.monotonic()
    ws.daprd(app_id="dk2", app_port=app.port).start(ready="all")

    def redelivered(ds):
        return {d.message_id for d in ds if d.at > phase2 and d.ok} >= ids

    app.wait_for(name, redelivered, transport.redelivery_timeout, "the 3 unacked again")
    late = [d for d in app.on(name) if d.at > phase2]
    assert all(d.reconsume >= 1 for d in late), [(d.message_id, d.reconsume) for d in late]
    assert not app.quiet(name, 4), "acked messages came back"


def test_daemon_killed_and_restarted_while_daprd_runs(ws, transport):
    """What daprd does when the daemon dies under it, and the documented way back.

    daprd (1.18) keeps its instances: Invoke answers FAILED_PRECONDITION from the new daemon
    (it was never Init'ed), the broken Read stream is never reopened, and /v1.0/healthz stays
    204, so nothing restarts by itself. A hot reload of the Component (any change to it, such
    as an annotation-like metadata key the binding ignores) makes daprd Init it again: output
    and input work again, and messages sent meanwhile are delivered."""
    name = unique("dmk")
    daemon = ws.daemon().start()
    md = transport.metadata()
    ws.component(name, md)
    app = ws.http_app(subscribed={name})
    daprd = ws.daprd(app_port=app.port).start(ready="all")
    assert daprd.invoke(name, "before").status == 200
    app.wait_count(name, 1, 60)
    daemon.kill()
    daemon.start()
    r = daprd.invoke(name, "after restart")
    assert r.status == 500
    msg = r.json()["message"]
    assert "FailedPrecondition" in msg and "not initialised" in msg, msg
    assert daprd.get("/v1.0/healthz").status == 204  # daprd does not notice
    # The way back without restarting daprd: touch the Component (hot reload).
    ws.component(name, dict(md, reloadedAt=str(time.time())))
    wait_until(lambda: daprd.invoke(name, "after reload").status == 200, 30,
               "Invoke to work after the hot reload", every=0.5)
    ds = app.wait_for(name, lambda ds: any(d.body == b'"after reload"' for d in ds), 60,
                      "a delivery after the hot reload")
    assert ds[0].body == b'"before"'
