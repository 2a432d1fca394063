//! The HTTP consumer: long-poll loops feeding the Dapr layer, acks after confirmation.
//!
//! Per subscription (topic + tag expression) there are `consumerThreadNums` poll loops and
//! one acker. A loop long-polls (`waitseconds=30`, `numOfMessages=consumerBatchSize`), hands
//! each message to the sink as a [`Delivery`] and waits until the whole batch is settled
//! before polling again, so at most `threads × batch` messages are in flight per topic.
//! Confirmed handles go to the acker, which batches up to 16 per `DELETE`. A released
//! delivery is simply not acked: the broker redelivers it after its invisibility time.
//!
//! With `consumeOrderly`, loops poll with `trans=order`, deliver a batch one message at a
//! time, ack each before delivering the next, and stop at the first release (the rest of the
//! batch comes back, in order, with it).
//!
//! `MessageNotExist` just means "poll again". Other errors are logged and counted and the
//! loop backs off exponentially (200 ms doubling to 10 s); the sink is never closed by the
//! transport. Cancellation (`close`) aborts in-flight long polls at once; deliveries not yet
//! confirmed are released, i.e. never acked, and return after their invisibility time.
//! Confirmations already queued are still acked, briefly, on the way out.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Stats,
    client::{Client, ConsumeParams},
    decode_body, decode_trace_value,
    protocol::{self, ReceivedMessage},
};
use crate::{
    metadata::{Settings, Subscription},
    telemetry::metrics,
    transport::{Delivery, InboundMessage, Outcome, keys, outcome},
};

/// Long-poll duration per request.
const WAIT_SECONDS: u32 = 30;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the consumer needs from the transport.
pub(super) struct Ctx {
    pub instance: String,
    pub settings: Arc<Settings>,
    pub client: Arc<Client>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub stats: Arc<Stats>,
    pub sink: mpsc::Sender<Delivery>,
}

/// Starts every loop and acker on the tracker.
pub(super) fn start(ctx: Ctx) {
    let ctx = Arc::new(ctx);
    let threads = ctx.settings.consumer_thread_nums.max(1);
    for sub in ctx.settings.topics.clone() {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<String>();
        ctx.tracker
            .spawn(acker(ctx.clone(), sub.topic.clone(), ack_rx));
        for n in 0..threads {
            ctx.tracker
                .spawn(poll_loop(ctx.clone(), sub.clone(), n, ack_tx.clone()));
        }
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn poll_loop(
    ctx: Arc<Ctx>,
    sub: Subscription,
    n: u32,
    ack_tx: mpsc::UnboundedSender<String>,
) {
    let group = ctx.settings.consumer_group.clone();
    let batch = ctx
        .settings
        .consumer_batch_size
        .unwrap_or(protocol::MAX_BATCH)
        .clamp(1, protocol::MAX_BATCH);
    let orderly = ctx.settings.consume_orderly;
    let tag = sub.tags().map(|_| sub.expression.clone());
    let mut backoff = BACKOFF_START;
    let mut failing = false;
    tracing::debug!(instance = %ctx.instance, topic = %sub.topic, loop_no = n, "http poll loop started");
    loop {
        let params = ConsumeParams {
            topic: &sub.topic,
            group: &group,
            batch,
            wait_seconds: WAIT_SECONDS,
            tag: tag.as_deref(),
            orderly,
        };
        let started = Instant::now();
        let r = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = ctx.client.consume(&params) => r,
        };
        if r.is_ok() && failing {
            failing = false;
            metrics::reconnected(&ctx.instance, "http");
            tracing::info!(instance = %ctx.instance, topic = %sub.topic, "endpoint answers again; consuming");
        }
        match r {
            Ok(msgs) if msgs.is_empty() => {
                backoff = BACKOFF_START;
                // A server that answers an empty long poll at once must not make us spin.
                if started.elapsed() < Duration::from_millis(500)
                    && !sleep_or_cancel(&ctx.cancel, Duration::from_millis(500)).await
                {
                    break;
                }
            }
            Ok(msgs) => {
                backoff = BACKOFF_START;
                let keep_going = if orderly {
                    deliver_orderly(&ctx, &sub.topic, &group, msgs).await
                } else {
                    deliver_batch(&ctx, &sub.topic, &group, msgs, &ack_tx).await
                };
                if !keep_going {
                    break;
                }
            }
            Err(e) => {
                failing = true;
                ctx.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    instance = %ctx.instance,
                    topic = %sub.topic,
                    error = %e,
                    retry_in = ?backoff,
                    "http consume failed"
                );
                if !sleep_or_cancel(&ctx.cancel, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    tracing::debug!(instance = %ctx.instance, topic = %sub.topic, loop_no = n, "http poll loop stopped");
}

/// Hands a batch to the sink; returns once every message is settled. `false`: stop.
async fn deliver_batch(
    ctx: &Ctx,
    topic: &str,
    group: &str,
    msgs: Vec<ReceivedMessage>,
    ack_tx: &mpsc::UnboundedSender<String>,
) -> bool {
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    for m in msgs {
        let handle = m.receipt_handle.clone();
        let (delivery, rx) = Delivery::new(inbound(&ctx.instance, topic, group, m));
        let sent = tokio::select! {
            _ = ctx.cancel.cancelled() => false,
            r = ctx.sink.send(delivery) => r.is_ok(),
        };
        if !sent {
            // Closed or shutting down: undelivered messages return after their timeout.
            open = false;
            break;
        }
        ctx.stats.delivered.fetch_add(1, Ordering::Relaxed);
        pending.push(async move { (handle, outcome(rx).await) });
    }
    loop {
        let next = tokio::select! {
            _ = ctx.cancel.cancelled() => return false,
            n = pending.next() => n,
        };
        let Some((handle, out)) = next else { break };
        match out {
            Outcome::Confirm => {
                let _ = ack_tx.send(handle);
            }
            Outcome::Release { reason } => {
                ctx.stats.released.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(instance = %ctx.instance, topic, %reason, "delivery released; redelivered after the invisibility time");
            }
        }
    }
    open && !ctx.cancel.is_cancelled()
}

/// Ordered: one message at a time, acked before the next; stops at the first release.
async fn deliver_orderly(ctx: &Ctx, topic: &str, group: &str, msgs: Vec<ReceivedMessage>) -> bool {
    for m in msgs {
        let handle = m.receipt_handle.clone();
        let (delivery, rx) = Delivery::new(inbound(&ctx.instance, topic, group, m));
        let sent = tokio::select! {
            _ = ctx.cancel.cancelled() => false,
            r = ctx.sink.send(delivery) => r.is_ok(),
        };
        if !sent {
            return false;
        }
        ctx.stats.delivered.fetch_add(1, Ordering::Relaxed);
        let out = tokio::select! {
            _ = ctx.cancel.cancelled() => return false,
            o = outcome(rx) => o,
        };
        match out {
            Outcome::Confirm => ack_now(ctx, topic, group, vec![handle]).await,
            Outcome::Release { reason } => {
                ctx.stats.released.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(instance = %ctx.instance, topic, %reason, "ordered delivery released; the rest of its batch returns with it");
                return true;
            }
        }
    }
    true
}

/// Acks handles now, with up to three attempts on request-level failures.
async fn ack_now(ctx: &Ctx, topic: &str, group: &str, handles: Vec<String>) {
    let mut delay = BACKOFF_START;
    for attempt in 1..=3 {
        match ctx.client.ack(topic, group, &handles, ACK_TIMEOUT).await {
            Ok(res) => {
                let failed = res.failed.len() as u64;
                ctx.stats.acked.fetch_add(
                    handles.len() as u64 - failed.min(handles.len() as u64),
                    Ordering::Relaxed,
                );
                if failed > 0 {
                    ctx.stats.ack_failures.fetch_add(failed, Ordering::Relaxed);
                    metrics::broker_ack_failed(&ctx.instance, "http", failed);
                    for f in &res.failed {
                        tracing::warn!(
                            instance = %ctx.instance,
                            topic,
                            code = %f.code,
                            message = %f.message,
                            receipt_handle = %f.receipt_handle,
                            "ack refused by the broker; the message will be redelivered"
                        );
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(instance = %ctx.instance, topic, attempt, error = %e, "ack request failed");
                if attempt == 3 {
                    ctx.stats
                        .ack_failures
                        .fetch_add(handles.len() as u64, Ordering::Relaxed);
                    metrics::broker_ack_failed(&ctx.instance, "http", handles.len() as u64);
                    return;
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Batches confirmed handles (up to 16 per request) until cancelled, then flushes.
async fn acker(ctx: Arc<Ctx>, topic: String, mut rx: mpsc::UnboundedReceiver<String>) {
    let group = ctx.settings.consumer_group.clone();
    loop {
        let first = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            h = rx.recv() => h,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < protocol::MAX_ACK_HANDLES {
            match rx.try_recv() {
                Ok(h) => batch.push(h),
                Err(_) => break,
            }
        }
        ack_now(&ctx, &topic, &group, batch).await;
    }
    // Shutting down: acks the app already confirmed are still worth sending, briefly.
    let mut rest = Vec::new();
    while let Ok(h) = rx.try_recv() {
        rest.push(h);
    }
    for chunk in rest.chunks(protocol::MAX_ACK_HANDLES) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            ack_now(&ctx, &topic, &group, chunk.to_vec()),
        )
        .await;
    }
}

fn header_safe(v: &str) -> String {
    crate::transport::contract::delivery_value(v)
}

/// Converts a received message into the Dapr-facing form (see the module docs of `http`).
pub(super) fn inbound(
    instance: &str,
    topic: &str,
    group: &str,
    m: ReceivedMessage,
) -> InboundMessage {
    let props = protocol::parse_properties(&m.properties);
    let prop = |k: &str| props.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    let marker = prop(protocol::PROP_BODY_ENCODING);
    let data = match decode_body(&m.body, marker) {
        Ok(d) => d,
        Err(reason) => {
            tracing::warn!(instance, topic, message_id = %m.message_id, %reason, "delivering the raw body text");
            m.body.clone().into_bytes()
        }
    };
    let mut md = std::collections::HashMap::new();
    let mut trace: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| {
        md.insert(k.to_string(), header_safe(v));
    };
    put(keys::TOPIC, topic);
    put(
        crate::transport::contract::RECEIPT_MESSAGE_ID,
        &m.message_id,
    );
    put("rocketmq-consumer-group", group);
    if let Some(tag) = &m.tag {
        put(keys::TAG, tag);
    }
    if let Some(k) = prop(protocol::PROP_KEYS) {
        let list: Vec<&str> = k.split_whitespace().collect();
        put(keys::MESSAGE_KEYS, &list.join(","));
    }
    if let Some(s) = prop(protocol::PROP_SHARDING_KEY) {
        put(keys::SHARDING_KEY, s);
    }
    if let Some(s) = prop(protocol::PROP_START_DELIVER_TIME) {
        put(keys::DELIVER_AT, s);
    }
    put(
        keys::RECONSUME_TIMES,
        &(m.consumed_times - 1).max(0).to_string(),
    );
    put("rocketmq-born-timestamp", &m.publish_time.to_string());
    put(
        "rocketmq-first-consume-time",
        &m.first_consume_time.to_string(),
    );
    put(
        "rocketmq-next-consume-time",
        &m.next_consume_time.to_string(),
    );
    let trace_encoded = prop(protocol::PROP_TRACE_ENCODING) == Some(super::TRACE_ENCODING_PERCENT);
    for (k, v) in &props {
        if keys::TRACE_KEYS.contains(&k.as_str()) {
            let value = match trace_encoded.then(|| decode_trace_value(v)) {
                Some(Some(decoded)) => decoded,
                Some(None) => {
                    tracing::warn!(instance, topic, message_id = %m.message_id, key = %k, "trace value marked percent-encoded does not decode; delivering it raw");
                    v.clone()
                }
                None => v.clone(),
            };
            trace.push((
                k.clone(),
                crate::transport::contract::delivery_trace_value(&value),
            ));
        } else if k == protocol::PROP_KEYS
            || k == protocol::PROP_TAGS
            || k.starts_with("__")
            || k == protocol::PROP_BODY_ENCODING
            || k == protocol::PROP_TRACE_ENCODING
        {
            continue;
        } else {
            put(
                &format!(
                    "{}{}",
                    keys::PROPERTY_PREFIX,
                    crate::transport::contract::delivery_name(k)
                ),
                v,
            );
        }
    }
    md.extend(trace);
    InboundMessage {
        data: bytes::Bytes::from(data),
        metadata: md,
        content_type: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_metadata_and_header_safety() {
        let m = ReceivedMessage {
            message_id: "ID1".into(),
            receipt_handle: "H".into(),
            body: "aGk=".into(),
            publish_time: 10,
            first_consume_time: 20,
            next_consume_time: 30,
            consumed_times: 3,
            tag: Some("TagA".into()),
            properties: "KEYS:a b|color:rød|dapr-body-encoding:base64|traceparent:00-x|".into(),
            ..Default::default()
        };
        let i = inbound("inst", "T", "G", m);
        assert_eq!(&i.data[..], b"hi");
        let md = &i.metadata;
        assert_eq!(md["rocketmq-keys"], "a,b");
        assert_eq!(md["rocketmq-reconsume-times"], "2");
        assert_eq!(md["rocketmq-tag"], "TagA");
        assert_eq!(md["rocketmq-property-color"], "r%C3%B8d");
        assert_eq!(md["traceparent"], "00-x");
        assert!(!md.contains_key("rocketmq-property-dapr-body-encoding"));
        assert!(!md.contains_key("rocketmq-property-KEYS"));
    }

    #[test]
    fn percent_encoded_trace_values_are_decoded_and_the_marker_stripped() {
        let mk = |props: &str| ReceivedMessage {
            message_id: "ID1".into(),
            receipt_handle: "H".into(),
            body: "x".into(),
            consumed_times: 1,
            properties: props.into(),
            ..Default::default()
        };
        let i = inbound(
            "inst",
            "T",
            "G",
            mk("tracestate:a=b%3Ac%7Cd|baggage:k=DF%252028|dapr-trace-encoding:percent|"),
        );
        assert_eq!(i.metadata["tracestate"], "a=b:c|d");
        assert_eq!(i.metadata["baggage"], "k=DF%2028");
        assert!(!i.metadata.keys().any(|k| k.contains("trace-encoding")));
        // Without the marker (another producer), values are delivered as they are.
        let i = inbound("inst", "T", "G", mk("baggage:k=DF%2028|"));
        assert_eq!(i.metadata["baggage"], "k=DF%2028");
    }
}
