#!/usr/bin/env node
// Drives the unmodified official Node SDK (npm @aliyunmq/mq-http-sdk 1.0.4) against
// aliyun-mq-emulator.
//
// Usage: NODE_PATH=<folder with node_modules> node node_sdk.js ENDPOINT ACCESS_KEY SECRET_KEY INVISIBILITY_SECONDS
//
// Prints one line per step: "PASS node <step>" or "FAIL node <step>: <reason>".
// Exits non-zero if any step failed. Every topic and group name is unique to this run.
'use strict';

const { MQClient, MessageProperties } = require('@aliyunmq/mq-http-sdk');

const [ENDPOINT, AK, SK, INVIS_S] = process.argv.slice(2);
const INVIS = Number(INVIS_S);
const RUN = Math.random().toString(16).slice(2, 10);
const INSTANCE = `MQ_INST_node_${RUN}`;
const failed = [];
const state = {};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function step(name, fn) {
  try {
    await fn();
    console.log(`PASS node ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`FAIL node ${name}: ${e && e.message ? e.message : e}`);
    console.error(e);
  }
}

const client = (secret = SK) => new MQClient(ENDPOINT, AK, secret);

async function expectCode(fn, code) {
  try {
    await fn();
  } catch (e) {
    check(e.Code === code, `expected ${code}, got ${e.Code}: ${e.message}`);
    return e;
  }
  throw new Error(`expected error ${code}, got success`);
}

async function consumeUntil(consumer, want, { wait = 3, orderly = false, rounds = 5 } = {}) {
  let got = [];
  for (let i = 0; i < rounds && got.length < want; i++) {
    try {
      const res = orderly
        ? await consumer.consumeMessageOrderly(16, wait)
        : await consumer.consumeMessage(16, wait);
      check(res.code === 200, `consume status ${res.code}`);
      got = got.concat(res.body);
    } catch (e) {
      if (e.Code !== 'MessageNotExist') throw e;
    }
  }
  return got;
}

const TOPIC = `node_main_${RUN}`;

async function main() {
  await step('publish with tag, key and properties', async () => {
    const p = client().getProducer(INSTANCE, TOPIC);
    await p.publishMessage('not for TagA', 'TagB');
    const props = new MessageProperties();
    props.messageKey('order-123');
    props.putProperty('color', 'red');
    props.putProperty('size', 'L');
    const r = await p.publishMessage('hello <rocketmq> & "friends"', 'TagA', props);
    check(r.code === 201, `status ${r.code}`);
    check(r.body.MessageId && r.body.MessageId.length === 32, `id ${r.body.MessageId}`);
    check(r.body.MessageBodyMD5 && r.body.MessageBodyMD5.length === 32, 'md5');
    check(typeof r.requestId === 'string' && r.requestId.length > 0, 'x-mq-request-id');
    state.id = r.body.MessageId;
  });

  await step('consume with instance and tag filter', async () => {
    const c = client().getConsumer(INSTANCE, TOPIC, `GID_node_${RUN}`, 'TagA');
    const msgs = await consumeUntil(c, 1);
    check(msgs.length === 1, `expected 1 TagA message, got ${msgs.length}`);
    const m = msgs[0];
    check(m.MessageId === state.id, `id ${m.MessageId}`);
    check(m.MessageBody === 'hello <rocketmq> & "friends"', `body ${m.MessageBody}`);
    check(m.MessageTag === 'TagA', `tag ${m.MessageTag}`);
    check(m.MessageKey === 'order-123', `key ${m.MessageKey}`);
    check(m.Properties.color === 'red' && m.Properties.size === 'L', `props ${JSON.stringify(m.Properties)}`);
    check(Number(m.ConsumedTimes) === 1, `consumed times ${m.ConsumedTimes}`);
    state.handle = m.ReceiptHandle;
    state.consumer = c;
  });

  await step('ack', async () => {
    const r = await state.consumer.ackMessage([state.handle]);
    check(r.code === 204, `ack status ${r.code}`);
    // The Node SDK does not throw on a partial failure: it resolves 404 with the list.
    const again = await state.consumer.ackMessage([state.handle, 'bogus-handle']);
    check(again.code === 404, `re-ack status ${again.code}`);
    const errs = [].concat(again.body);
    check(errs.length === 2 && errs.every((e) => e.ErrorCode === 'ReceiptHandleError'), JSON.stringify(errs));
  });

  await step('redelivery after the invisibility time', async () => {
    const topic = `node_redeliver_${RUN}`;
    await client().getProducer(INSTANCE, topic).publishMessage('again', '');
    const c = client().getConsumer(INSTANCE, topic, `GID_node_${RUN}`);
    const first = await consumeUntil(c, 1);
    check(first.length === 1, 'first delivery');
    await expectCode(() => c.consumeMessage(16, 1), 'MessageNotExist');
    await sleep(INVIS * 1000 + 500);
    const second = await consumeUntil(c, 1);
    check(second.length === 1, 'redelivery');
    const [a, b] = [first[0], second[0]];
    check(a.MessageId === b.MessageId, 'same message id');
    check(a.ReceiptHandle !== b.ReceiptHandle, 'new receipt handle');
    check(Number(b.ConsumedTimes) === 2, `consumed times ${b.ConsumedTimes}`);
    const old = await c.ackMessage([a.ReceiptHandle]);
    check(old.code === 404 && [].concat(old.body)[0].ErrorCode === 'MessageNotExist', JSON.stringify(old.body));
    const ok = await c.ackMessage([b.ReceiptHandle]);
    check(ok.code === 204, `ack status ${ok.code}`);
  });

  await step('empty long poll', async () => {
    const c = client().getConsumer(INSTANCE, `node_empty_${RUN}`, `GID_node_${RUN}`);
    const t0 = Date.now();
    await expectCode(() => c.consumeMessage(16, 2), 'MessageNotExist');
    const took = (Date.now() - t0) / 1000;
    check(took >= 1.8 && took < 5, `long poll took ${took}s, expected about 2s`);
  });

  await step('ordered consume', async () => {
    const topic = `node_order_${RUN}`;
    const p = client().getProducer(INSTANCE, topic);
    for (let i = 0; i < 4; i++) {
      const props = new MessageProperties();
      props.shardingKey('shard-1');
      await p.publishMessage(`o${i}`, '', props);
    }
    const c = client().getConsumer(INSTANCE, topic, `GID_node_${RUN}`);
    const msgs = await consumeUntil(c, 4, { orderly: true });
    const bodies = msgs.map((m) => m.MessageBody);
    check(JSON.stringify(bodies) === JSON.stringify(['o0', 'o1', 'o2', 'o3']), `order ${bodies}`);
    await expectCode(() => c.consumeMessageOrderly(16, 1), 'MessageNotExist');
    const r = await c.ackMessage(msgs.map((m) => m.ReceiptHandle));
    check(r.code === 204, `ack status ${r.code}`);
  });

  await step('timer message', async () => {
    const topic = `node_timer_${RUN}`;
    const at = Date.now() + 2000;
    const props = new MessageProperties();
    props.startDeliverTime(at);
    await client().getProducer('', topic).publishMessage('timed', '', props);
    const c = client().getConsumer('', topic, `GID_node_${RUN}`);
    await expectCode(() => c.consumeMessage(16, 1), 'MessageNotExist');
    const r = await c.consumeMessage(16, 5);
    check(r.body.length === 1 && Date.now() >= at - 50, 'timer delivery');
    await c.ackMessage([r.body[0].ReceiptHandle]);
  });

  await step('wrong secret rejected', async () => {
    const p = client('not-the-secret').getProducer(INSTANCE, TOPIC);
    await expectCode(() => p.publishMessage('x', ''), 'SignatureDoesNotMatch');
  });

  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL node (unexpected): ${e && e.message ? e.message : e}`);
  process.exit(1);
});
