//! The orderly input (the push consumer and its listener) and the delivery metadata both
//! input paths share ([`inbound`]). The concurrent input is `pull.rs`.
//!
//! The crate's listeners are synchronous and run on the client runtime's blocking lane (sized
//! in [`super::host`]). Each call hands its messages to the Dapr layer as [`Delivery`]s and
//! blocks on their settle handles; nothing needs a timer, so the wait is a plain
//! `futures::executor::block_on` over the sink sends, the outcomes and the transport's close
//! token. Only `consumeOrderly` uses this path: it holds one message per queue, so the
//! threads it parks are bounded by the queues it owns (and by `consumerThreadNums`).
//!
//! The orderly listener delivers one message at a time, in order, and stops at the first
//! failure (suspend the queue a moment, then the same message again).

use std::{collections::HashMap, sync::Arc};

use crate::transport::contract;
use rocketmq_client_rust::{
    ClientResult, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQPushConsumer,
    MessageListenerOrderly,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_client_id_setter::MessageClientIDSetter;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_transport::api::RPCHook;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::host::ClientHost;
use super::output::is_system_property;
use crate::metadata::{ConsumerModel, FromWhere, Settings};
use crate::transport::{Delivery, InboundMessage, Outcome, keys, outcome};

/// Delivery metadata keys (beyond the shared [`keys`]).
pub mod md {
    pub const MESSAGE_ID: &str = crate::transport::contract::RECEIPT_MESSAGE_ID;
    pub const KEYS: &str = crate::transport::keys::MESSAGE_KEYS;
    pub const QUEUE_ID: &str = "rocketmq-queue-id";
    pub const QUEUE_OFFSET: &str = "rocketmq-queue-offset";
    pub const RECONSUME_TIMES: &str = crate::transport::keys::RECONSUME_TIMES;
    pub const BORN_TIMESTAMP: &str = "rocketmq-born-timestamp";
    pub const CONSUMER_GROUP: &str = "rocketmq-consumer-group";
    pub const BROKER_NAME: &str = "rocketmq-broker-name";
}

/// Header-safe value (the shared delivery encoding, [`contract::delivery_value`]).
pub fn header_value(v: &str) -> String {
    contract::delivery_value(v)
}

fn header_name(v: &str) -> String {
    contract::delivery_name(v)
}

/// `a || b` → `a||b`: the crate hashes untrimmed tags, so spaces would deliver nothing.
pub fn normalize_expression(expr: &str) -> String {
    let parts: Vec<&str> = expr
        .split("||")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() || parts.contains(&"*") {
        "*".into()
    } else {
        parts.join("||")
    }
}

/// The consumer group (RocketMQ's reserved names are rejected when metadata is decoded).
pub fn consumer_group(settings: &Settings) -> String {
    settings.consumer_group.clone()
}

/// Where a new group starts (`fromWhere`), and the `consumeTimestamp` that goes with it; one
/// mapping for the push and the pull consumer.
pub(super) fn consume_from(settings: &Settings) -> (ConsumeFromWhere, Option<String>) {
    match &settings.from_where {
        FromWhere::LastOffset => (ConsumeFromWhere::ConsumeFromLastOffset, None),
        FromWhere::FirstOffset => (ConsumeFromWhere::ConsumeFromFirstOffset, None),
        FromWhere::Timestamp(ts) => (ConsumeFromWhere::ConsumeFromTimestamp, Some(ts.clone())),
    }
}

/// Builds the push consumer (not subscribed, not started).
pub fn build_consumer(
    host: &ClientHost,
    config: rocketmq_client_rust::ClientConfig,
    settings: &Settings,
    hook: Option<Arc<dyn RPCHook>>,
) -> DefaultMQPushConsumer {
    let threads = settings.consumer_thread_nums.max(1);
    let mut b = DefaultMQPushConsumer::builder(host.client_runtime())
        .client_config(config)
        .consumer_group(consumer_group(settings))
        .message_model(match settings.consumer_model {
            ConsumerModel::Clustering => MessageModel::Clustering,
            ConsumerModel::Broadcasting => MessageModel::Broadcasting,
        })
        .consume_thread_min(threads)
        .consume_thread_max(threads)
        .consume_message_batch_max_size(settings.consume_batch_max_size.max(1))
        .pull_batch_size(settings.consumer_batch_size.unwrap_or(32).max(1))
        // The same cache bounds as the pull input: the push consumer's own defaults
        // (100 MiB per queue) let a backlog of large messages fill the daemon.
        .pull_threshold_for_queue(settings.pull_threshold_for_queue)
        .pull_threshold_size_for_queue(settings.pull_threshold_size_for_queue)
        .pull_threshold_for_topic(
            i32::try_from(settings.pull_threshold_for_all).unwrap_or(i32::MAX),
        )
        .max_reconsume_times(i32::try_from(settings.max_reconsume_times).unwrap_or(16))
        .rpc_hook(hook);
    let (from, timestamp) = consume_from(settings);
    b = b.consume_from_where(from);
    if let Some(ts) = timestamp {
        b = b.consume_timestamp(ts);
    }
    b.build()
}

/// What both listeners share.
pub struct ListenerShared {
    /// Where deliveries go (the instance's queue).
    pub sink: mpsc::Sender<Delivery>,
    /// Cancelled by `close`: every waiting listener gives its message back.
    pub closed: CancellationToken,
    /// The effective consumer group (no namespace).
    pub group: String,
    /// Component instance name (logs).
    pub instance: String,
    /// Listener calls currently running; `close` waits until it reads 0 (every released call
    /// handed its verdict back), woken by the change instead of polling.
    pub inflight: watch::Sender<usize>,
}

/// Counts one running listener call.
struct InflightGuard<'a>(&'a watch::Sender<usize>);

impl<'a> InflightGuard<'a> {
    fn enter(count: &'a watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        InflightGuard(count)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl ListenerShared {
    /// Hands one message to the app and waits for the verdict. `true` = confirmed.
    fn deliver(&self, msg: &MessageExt, broker_name: &str) -> bool {
        self.deliver_all(std::slice::from_ref(&msg), broker_name)
    }

    /// Hands every message to the app at once and waits for all verdicts. `true` = every
    /// one confirmed. Returns false at the first release (in delivery order) or when the
    /// transport closes: the batch is redelivered as a whole anyway, and the unsettled rest
    /// is released when the Dapr layer drops its handles.
    fn deliver_all(&self, msgs: &[&MessageExt], broker_name: &str) -> bool {
        let _running = InflightGuard::enter(&self.inflight);
        if self.closed.is_cancelled() {
            return false;
        }
        let fut = async {
            let mut outcomes = Vec::with_capacity(msgs.len());
            for m in msgs {
                let (delivery, rx) = Delivery::new(inbound(m, &self.group, broker_name));
                if !self.hand_over(delivery).await {
                    return false;
                }
                outcomes.push(outcome(rx));
            }
            // Every outcome must be a confirm; awaiting them in order gives the same verdict
            // as any other order (the batch is confirmed or redelivered as a whole).
            let all = async {
                for o in outcomes {
                    if let Outcome::Release { reason } = o.await {
                        tracing::debug!(instance = %self.instance, %reason, "delivery released");
                        return false;
                    }
                }
                true
            };
            tokio::select! {
                biased;
                ok = all => ok,
                _ = self.closed.cancelled() => false,
            }
        };
        futures::executor::block_on(fut)
    }

    /// Queues one delivery for the Dapr layer; `false` if the Dapr layer or the transport
    /// closed first.
    async fn hand_over(&self, delivery: Delivery) -> bool {
        // Room in the queue (the usual case): no need to register on the close token.
        let delivery = match self.sink.try_send(delivery) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(d)) => d,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        };
        tokio::select! {
            biased;
            _ = self.closed.cancelled() => false,
            r = self.sink.send(delivery) => r.is_ok(),
        }
    }
}

/// Orderly listener: one message in flight per queue; a failure suspends the queue a moment
/// and retries the same message (order kept).
pub struct OrderlyListener(pub Arc<ListenerShared>);

impl MessageListenerOrderly for OrderlyListener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        ctx: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        let broker = ctx.get_message_queue().broker_name().to_string();
        for m in msgs {
            if !self.0.deliver(m, &broker) {
                return Ok(ConsumeOrderlyStatus::SuspendCurrentQueueAMoment);
            }
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

/// The message as the app sees it.
pub fn inbound(msg: &MessageExt, group: &str, queue_broker: &str) -> InboundMessage {
    // The fixed keys below plus the message's properties: one allocation, no rehash.
    let mut m: HashMap<String, String> = HashMap::with_capacity(12 + msg.properties().len());
    let mut put = |k: &str, v: &str| {
        m.insert(k.to_string(), header_value(v));
    };
    put(keys::TOPIC, msg.topic().as_str());
    let id = MessageClientIDSetter::get_uniq_id(msg)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| msg.msg_id().to_string());
    put(md::MESSAGE_ID, &id);
    if let Some(t) = msg.get_tags().filter(|t| !t.is_empty()) {
        put(keys::TAG, t.as_str());
    }
    if let Some(k) = MessageTrait::property(msg, &"KEYS".into()).filter(|k| !k.is_empty()) {
        let list: Vec<&str> = k.as_str().split(' ').filter(|s| !s.is_empty()).collect();
        put(md::KEYS, &list.join(","));
    }
    if let Some(k) = MessageTrait::property(msg, &"__SHARDINGKEY".into()).filter(|k| !k.is_empty())
    {
        put(keys::SHARDING_KEY, k.as_str());
    }
    put(md::QUEUE_ID, &msg.queue_id().to_string());
    put(md::QUEUE_OFFSET, &msg.queue_offset().to_string());
    put(md::RECONSUME_TIMES, &msg.reconsume_times().to_string());
    put(md::BORN_TIMESTAMP, &msg.born_timestamp().to_string());
    put(md::CONSUMER_GROUP, group);
    let broker = if msg.broker_name().is_empty() {
        queue_broker
    } else {
        msg.broker_name()
    };
    if !broker.is_empty() {
        put(md::BROKER_NAME, broker);
    }
    let mut trace = Vec::new();
    for (k, v) in msg.properties() {
        let name = k.as_str();
        if keys::TRACE_KEYS.contains(&name) {
            // W3C trace context: verbatim when printable (see `contract`).
            trace.push((name.to_string(), contract::delivery_trace_value(v.as_str())));
        } else if !is_system_property(name) {
            let key = format!("{}{}", keys::PROPERTY_PREFIX, header_name(name));
            put(&key, v.as_str());
        }
    }
    m.extend(trace);
    InboundMessage {
        data: msg.body().unwrap_or_default(),
        metadata: m,
        content_type: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_normalised() {
        assert_eq!(normalize_expression("TagA || TagB"), "TagA||TagB");
        assert_eq!(normalize_expression(" * "), "*");
        assert_eq!(normalize_expression(""), "*");
        assert_eq!(normalize_expression("a||*"), "*");
        assert_eq!(normalize_expression("a"), "a");
    }

    #[test]
    fn values_and_names_are_header_safe() {
        assert_eq!(header_value("plain value-1"), "plain value-1");
        assert_eq!(header_value("a\r\nb"), "a%0D%0Ab");
        assert_eq!(header_value("50%"), "50%25");
        assert_eq!(header_value("grüß"), "gr%C3%BC%C3%9F");
        assert_eq!(header_name("my prop:x"), "my%20prop%3Ax");
        assert_eq!(header_name("ok-name_1.x"), "ok-name_1.x");
    }

    #[test]
    fn metadata_of_a_message() {
        let mut ext = MessageExt::default();
        let msg = rocketmq_model::common::message::message_single::Message::builder()
            .topic("T")
            .body_slice(b"b")
            .tags("TagA")
            .keys(vec!["k1".into(), "k2".into()])
            .raw_property("color", "blue\nish")
            .unwrap()
            .raw_property("traceparent", "00-1-2-01")
            .unwrap()
            .build()
            .unwrap();
        ext.set_message_inner(msg);
        ext.set_queue_id(3);
        ext.set_queue_offset(42);
        ext.set_reconsume_times(2);
        ext.set_born_timestamp(1_700_000_000_000);
        ext.set_msg_id("OFFSETID".into());
        let m = inbound(&ext, "g1", "broker-a").metadata;
        assert_eq!(m["rocketmq-topic"], "T");
        assert_eq!(m["rocketmq-message-id"], "OFFSETID");
        assert_eq!(m["rocketmq-tag"], "TagA");
        assert_eq!(m["rocketmq-keys"], "k1,k2");
        assert_eq!(m["rocketmq-queue-id"], "3");
        assert_eq!(m["rocketmq-queue-offset"], "42");
        assert_eq!(m["rocketmq-reconsume-times"], "2");
        assert_eq!(m["rocketmq-born-timestamp"], "1700000000000");
        assert_eq!(m["rocketmq-consumer-group"], "g1");
        assert_eq!(m["rocketmq-broker-name"], "broker-a");
        assert_eq!(m["rocketmq-property-color"], "blue%0Aish");
        assert_eq!(m["traceparent"], "00-1-2-01");
        assert!(!m.contains_key("rocketmq-property-WAIT"));
        assert!(!m.contains_key("rocketmq-property-TAGS"));
    }
}
