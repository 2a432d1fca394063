#!/usr/bin/env python3
"""Drives the unmodified official Python SDK (PyPI mq-http-sdk 1.0.3) against aliyun-mq-emulator.

Usage: python_sdk.py ENDPOINT ACCESS_KEY SECRET_KEY INVISIBILITY_SECONDS

Prints one line per step: "PASS python <step>" or "FAIL python <step>: <reason>".
Exits non-zero if any step failed. Every topic and group name is unique to this run.
"""

import sys
import time
import traceback
import uuid

from mq_http_sdk.mq_client import MQClient
from mq_http_sdk.mq_exception import MQServerException
from mq_http_sdk.mq_producer import TopicMessage

ENDPOINT, AK, SK, INVIS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
RUN = uuid.uuid4().hex[:8]
INSTANCE = "MQ_INST_py_" + RUN
FAILED = []


def step(name):
    def wrap(fn):
        try:
            fn()
            print("PASS python %s" % name, flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            FAILED.append(name)
            print("FAIL python %s: %s" % (name, repr(e).strip()), flush=True)
            traceback.print_exc(file=sys.stderr)
        return fn

    return wrap


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client(secret=SK):
    return MQClient(ENDPOINT, AK, secret)


def expect_server_error(fn, code):
    try:
        fn()
    except MQServerException as e:
        check(e.type == code, "expected %s, got %s (%s)" % (code, e.type, e.message))
        return e
    raise AssertionError("expected MQServerException %s, got success" % code)


def consume_until(consumer, want, wait=3, orderly=False, rounds=5):
    got = []
    for _ in range(rounds):
        try:
            if orderly:
                got += consumer.consume_message_orderly(16, wait)
            else:
                got += consumer.consume_message(16, wait)
        except MQServerException as e:
            if e.type != "MessageNotExist":
                raise
        if len(got) >= want:
            break
    return got


TOPIC = "py_main_" + RUN
state = {}


@step("publish with tag, key and properties")
def _publish():
    p = client().get_producer(INSTANCE, TOPIC)
    other = TopicMessage("not for TagA", "TagB")
    p.publish_message(other)
    m = TopicMessage("hello <rocketmq> & \"friends\"", "TagA")
    m.set_message_key("order-123")
    m.put_property("color", "red")
    m.put_property("size", "L")
    r = p.publish_message(m)
    check(len(r.message_id) == 32, "message id %r" % r.message_id)
    check(len(r.message_body_md5) == 32, "md5 %r" % r.message_body_md5)
    state["id"] = r.message_id


@step("consume with instance and tag filter")
def _consume():
    c = client().get_consumer(INSTANCE, TOPIC, "GID_py_" + RUN, "TagA")
    msgs = consume_until(c, 1)
    check(len(msgs) == 1, "expected 1 TagA message, got %d" % len(msgs))
    m = msgs[0]
    check(m.message_id == state["id"], "id %s" % m.message_id)
    check(m.message_body == "hello <rocketmq> & \"friends\"", "body %r" % m.message_body)
    check(m.message_tag == "TagA", "tag %r" % m.message_tag)
    check(m.get_message_key() == "order-123", "key %r" % m.get_message_key())
    check(m.get_property("color") == "red", "props %r" % m.properties)
    check(m.get_property("size") == "L", "props %r" % m.properties)
    check(m.consumed_times == 1, "consumed_times %d" % m.consumed_times)
    check(m.publish_time > 0 and m.next_consume_time > m.first_consume_time, "times")
    state["handle"] = m.receipt_handle
    state["consumer"] = c


@step("ack")
def _ack():
    c = state["consumer"]
    c.ack_message([state["handle"]])
    # Acking the same handle again is a per-handle error in an <Errors> list.
    e = expect_server_error(lambda: c.ack_message([state["handle"], "bogus-handle"]), "ReceiptHandleError")
    check(e.sub_errors and len(e.sub_errors) == 2, "sub_errors %r" % e.sub_errors)


@step("independent consumer groups")
def _groups():
    c = client().get_consumer(INSTANCE, TOPIC, "GID_py_other_" + RUN)
    msgs = consume_until(c, 2)
    check(len(msgs) == 2, "a second group sees both messages, got %d" % len(msgs))
    c.ack_message([m.receipt_handle for m in msgs])


@step("redelivery after the invisibility time")
def _redelivery():
    topic = "py_redeliver_" + RUN
    client().get_producer(INSTANCE, topic).publish_message(TopicMessage("again", ""))
    c = client().get_consumer(INSTANCE, topic, "GID_py_" + RUN)
    first = consume_until(c, 1)
    check(len(first) == 1, "first delivery")
    expect_server_error(lambda: c.consume_message(16, 1), "MessageNotExist")
    time.sleep(INVIS + 0.5)
    second = consume_until(c, 1)
    check(len(second) == 1, "redelivery")
    a, b = first[0], second[0]
    check(a.message_id == b.message_id, "same message id")
    check(a.receipt_handle != b.receipt_handle, "new receipt handle")
    check(b.consumed_times == 2, "consumed_times %d" % b.consumed_times)
    check(b.first_consume_time == a.first_consume_time, "first consume time kept")
    e = expect_server_error(lambda: c.ack_message([a.receipt_handle]), "MessageNotExist")
    check(e.sub_errors[0]["ReceiptHandle"] == a.receipt_handle, "sub error names the handle")
    c.ack_message([b.receipt_handle])


@step("empty long poll")
def _empty():
    c = client().get_consumer(INSTANCE, "py_empty_" + RUN, "GID_py_" + RUN)
    t0 = time.time()
    expect_server_error(lambda: c.consume_message(16, 2), "MessageNotExist")
    took = time.time() - t0
    check(1.8 <= took < 5, "long poll took %.2fs, expected about 2s" % took)


@step("long poll returns early when a message arrives")
def _early():
    import threading

    topic = "py_early_" + RUN
    c = client().get_consumer(INSTANCE, topic, "GID_py_" + RUN)
    threading.Timer(1.0, lambda: client().get_producer(INSTANCE, topic).publish_message(TopicMessage("late", ""))).start()
    t0 = time.time()
    msgs = c.consume_message(16, 10)
    took = time.time() - t0
    check(len(msgs) == 1 and 0.8 < took < 5, "got %d after %.2fs" % (len(msgs), took))
    c.ack_message([msgs[0].receipt_handle])


@step("ordered consume")
def _ordered():
    topic = "py_order_" + RUN
    p = client().get_producer(INSTANCE, topic)
    for i in range(4):
        m = TopicMessage("o%d" % i, "")
        m.set_sharding_key("shard-1")
        p.publish_message(m)
    c = client().get_consumer(INSTANCE, topic, "GID_py_" + RUN)
    msgs = consume_until(c, 4, orderly=True)
    check([m.message_body for m in msgs] == ["o0", "o1", "o2", "o3"], "order %r" % [m.message_body for m in msgs])
    check(msgs[0].get_sharding_key() == "shard-1", "sharding key")
    # The partition is held while its messages are in flight.
    expect_server_error(lambda: c.consume_message_orderly(16, 1), "MessageNotExist")
    c.ack_message([m.receipt_handle for m in msgs])


@step("timer message")
def _timer():
    topic = "py_timer_" + RUN
    m = TopicMessage("timed", "")
    at = int(time.time() * 1000) + 2000
    m.set_start_deliver_time(at)
    client().get_producer("", topic).publish_message(m)
    c = client().get_consumer("", topic, "GID_py_" + RUN)
    expect_server_error(lambda: c.consume_message(16, 1), "MessageNotExist")
    msgs = c.consume_message(16, 5)
    check(len(msgs) == 1 and int(time.time() * 1000) >= at - 50, "timer delivery")
    check(msgs[0].get_start_deliver_time() == at, "deliver time property")
    c.ack_message([msgs[0].receipt_handle])


@step("transactional message commit")
def _trans():
    topic = "py_trans_" + RUN
    tp = client().get_trans_producer(INSTANCE, topic, "GID_py_tx_" + RUN)
    m = TopicMessage("half", "")
    m.set_trans_check_immunity_time(10)
    r = tp.publish_message(m)
    check(r.receipt_handle, "half message handle")
    c = client().get_consumer(INSTANCE, topic, "GID_py_" + RUN)
    expect_server_error(lambda: c.consume_message(16, 1), "MessageNotExist")
    tp.commit(r.receipt_handle)
    msgs = consume_until(c, 1)
    check(len(msgs) == 1 and msgs[0].message_body == "half", "committed message visible")
    c.ack_message([msgs[0].receipt_handle])


@step("wrong secret rejected")
def _wrong_secret():
    p = client("not-the-secret").get_producer(INSTANCE, TOPIC)
    e = expect_server_error(lambda: p.publish_message(TopicMessage("x", "")), "SignatureDoesNotMatch")
    check(e.req_id, "request id present")


sys.exit(1 if FAILED else 0)
