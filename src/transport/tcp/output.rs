//! The output side: request metadata → messages, the producer, the send receipt.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rocketmq_client_rust::{ClientError, ClientResult, DefaultMQProducer, SendResult};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::{STRING_HASH_SET, message_queue::MessageQueue};
use rocketmq_transport::api::RPCHook;

use super::host::ClientHost;
use crate::metadata::{Settings, parse_duration};
use crate::text::shown;
use crate::transport::contract::{self, RequestKeys};
use crate::transport::{OutboundMessage, SendReceipt, TransportError, keys, limits};

/// Receipt key: message id (`UNIQ_KEY`, the id consumers see).
pub use contract::RECEIPT_MESSAGE_ID;
/// Receipt key: queue id.
pub const RECEIPT_QUEUE_ID: &str = "rocketmq-queue-id";
/// Receipt key: queue offset.
pub const RECEIPT_QUEUE_OFFSET: &str = "rocketmq-queue-offset";
/// Receipt key: broker name.
pub const RECEIPT_BROKER_NAME: &str = "rocketmq-broker-name";
/// Receipt key: send status (`SEND_OK`, …).
pub const RECEIPT_SEND_STATUS: &str = "rocketmq-send-status";

/// One message to send.
pub struct PlannedSend {
    pub topic: String,
    pub message: Message,
    pub sharding_key: Option<String>,
    /// Carries a delay level or a delivery time (never batched).
    pub delayed: bool,
}

impl std::fmt::Debug for PlannedSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedSend")
            .field("topic", &self.topic)
            .field("sharding_key", &self.sharding_key)
            .finish_non_exhaustive()
    }
}

/// Why one send failed (shared by the members of a failed batch).
#[derive(Clone)]
pub enum SendFailure {
    Client(Arc<ClientError>),
    TimedOut,
    NoResult,
}

/// Builds the producer (not started).
pub fn build_producer(
    host: &ClientHost,
    config: rocketmq_client_rust::ClientConfig,
    settings: &Settings,
    hook: Option<Arc<dyn RPCHook>>,
) -> DefaultMQProducer {
    let timeout_ms = u32::try_from(settings.send_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut b = DefaultMQProducer::builder(host.client_runtime())
        .client_config(config)
        .producer_group(producer_group(settings))
        .send_msg_timeout(timeout_ms)
        .retry_times_when_send_failed(settings.retries)
        .retry_another_broker_when_not_store_ok(true);
    if let Some(h) = hook {
        b = b.rpc_hook(h);
    }
    let mut producer = b.build();
    // Latency fault tolerance (Java's sendLatencyFaultEnable, off by default in the crate): a
    // broker whose send failed or timed out is skipped for a while, so with a broker hung or
    // dead the next sends go to the others. Without it queues stay round robin and every other
    // send waits sendTimeout on a hung broker (tests/tcp_cluster.rs measured 8 sends instead of
    // hundreds reaching the healthy broker in 6 s). The crate never resends a request it has
    // written (it may have been stored), so a send in flight to the hung broker still fails.
    producer.set_send_latency_fault_enable(true);
    producer
}

/// The producer group (RocketMQ's reserved names are rejected when metadata is decoded).
/// It only matters for transactional messages.
pub fn producer_group(settings: &Settings) -> String {
    settings.producer_group.clone()
}

/// FNV-1a, 32 bit (Go's `hash/fnv` `New32a`), used to pick the queue of a sharding key.
pub fn fnv1a_32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The queue rocketmq-client-go's `NewHashQueueSelector` picks for `key`.
pub fn select_queue(mqs: &[MessageQueue], key: &str) -> Option<MessageQueue> {
    if mqs.is_empty() {
        return None;
    }
    let idx = fnv1a_32(key.as_bytes()) as usize % mqs.len();
    mqs.get(idx).cloned()
}

fn invalid(key: &str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidRequest {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether RocketMQ reserves a property name.
pub fn is_system_property(name: &str) -> bool {
    STRING_HASH_SET.contains(name)
        || name.starts_with("__")
        || matches!(
            name,
            "PROPERTY_FORWARD_QUEUE_ID"
                | "INNER_BASE"
                | "INNER_NUM"
                | "INNER_MULTI_DISPATCH"
                | "REDIRECT"
                | "TRACE_CONTEXT"
                | "TRANS_OFFSET"
                | "TRANSACTION_CHECK_TIMES"
                | "CHECK_IMMUNITY_TIME_IN_SECONDS"
                | "TIMER_ROLL_LABEL"
        )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Turns one `create` request into the messages to send. Pure: validates everything first.
pub fn plan(
    msg: &OutboundMessage,
    settings: &Settings,
) -> Result<Vec<PlannedSend>, TransportError> {
    // Keys are matched case-insensitively; property names keep their spelling.
    let md = RequestKeys::new(&msg.metadata);
    let get = |k: &str| md.get(k);

    // Targets: (topic, default tag from a single-tag `topics` entry).
    let targets: Vec<(String, Option<String>)> = match get(keys::TOPIC) {
        Some(t) => {
            crate::metadata::check_send_topic(t).map_err(|e| invalid(keys::TOPIC, e))?;
            vec![(t.to_string(), contract::default_tag(settings, t))]
        }
        None => {
            if settings.topics.is_empty() {
                return Err(invalid(
                    keys::TOPIC,
                    "required: the component configures no `topics` to send to",
                ));
            }
            settings
                .topics
                .iter()
                .map(|s| (s.topic.clone(), contract::single_tag(s)))
                .collect()
        }
    };

    let tag = match get(keys::TAG) {
        Some(t) => {
            if has_control(t) || t.contains("||") || t.contains(char::is_whitespace) {
                return Err(invalid(
                    keys::TAG,
                    "a tag may not contain whitespace, control characters or `||`",
                ));
            }
            Some(t.to_string())
        }
        None => None,
    };

    let message_keys: Vec<String> = match get(keys::KEY) {
        Some(v) => {
            let ks: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if ks
                .iter()
                .any(|k| k.contains(char::is_whitespace) || has_control(k))
            {
                return Err(invalid(
                    keys::KEY,
                    "keys are a comma list; a key may not contain whitespace (RocketMQ separates keys with a space)",
                ));
            }
            ks
        }
        None => Vec::new(),
    };

    let sharding_key = match get(keys::SHARDING_KEY) {
        Some(k) if has_control(k) => {
            return Err(invalid(
                keys::SHARDING_KEY,
                "may not contain control characters",
            ));
        }
        Some(k) => Some(k.to_string()),
        None => None,
    };

    enum Delay {
        Level(i32),
        At(u64),
    }
    let mut delay: Option<(&str, Delay)> = None;
    if let Some(v) = get(keys::DELAY_LEVEL) {
        let lvl = v
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=18).contains(l))
            .ok_or_else(|| {
                invalid(
                    keys::DELAY_LEVEL,
                    format!("{} is not a delay level from 1 to 18", shown(v)),
                )
            })?;
        delay = Some((keys::DELAY_LEVEL, Delay::Level(lvl)));
    }
    if let Some(v) = get(keys::DELIVER_AT) {
        let at = v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            invalid(
                keys::DELIVER_AT,
                format!("{} is not a Unix time in milliseconds", shown(v)),
            )
        })?;
        if let Some((other, _)) = delay {
            return Err(invalid(
                keys::DELIVER_AT,
                format!("cannot be combined with `{other}`"),
            ));
        }
        limits::check_deliver_time(keys::DELIVER_AT, at, now_ms(), settings.timer_max_delay)?;
        delay = Some((keys::DELIVER_AT, Delay::At(at)));
    }
    if let Some(v) = get(keys::DELIVER_AFTER) {
        let after = parse_duration("rocketmq-deliver-after", v).map_err(|_| {
            invalid(
                keys::DELIVER_AFTER,
                format!(
                    "{} is not a duration such as 500ms, 90s, 1m30s (bare integer = milliseconds)",
                    shown(v)
                ),
            )
        })?;
        if let Some((other, _)) = delay {
            return Err(invalid(
                keys::DELIVER_AFTER,
                format!("cannot be combined with `{other}`"),
            ));
        }
        let now = now_ms();
        let at = now.saturating_add(after.as_millis() as u64);
        limits::check_deliver_time(keys::DELIVER_AFTER, at, now, settings.timer_max_delay)?;
        delay = Some((keys::DELIVER_AFTER, Delay::At(at)));
    }

    // User properties and trace context.
    let mut props: Vec<(String, String)> = Vec::new();
    for (orig, v) in md.sorted() {
        let lower = orig.to_ascii_lowercase();
        if let Some(name) = lower
            .starts_with(keys::PROPERTY_PREFIX)
            .then(|| &orig[keys::PROPERTY_PREFIX.len()..])
        {
            if name.is_empty() || has_control(name) || name.contains(':') {
                return Err(invalid(
                    orig,
                    "property name is empty or has control characters",
                ));
            }
            if is_system_property(name) {
                return Err(invalid(
                    orig,
                    format!("`{name}` is a RocketMQ system property; choose another name"),
                ));
            }
            if has_control(v) {
                return Err(invalid(
                    orig,
                    "property values may not contain control characters",
                ));
            }
            if v.is_empty() {
                continue;
            }
            props.push((name.to_string(), v.to_string()));
        } else if keys::TRACE_KEYS.contains(&lower.as_str()) {
            if has_control(v) {
                return Err(invalid(orig, "may not contain control characters"));
            }
            if !v.is_empty() {
                props.push((lower.clone(), v.to_string()));
            }
        }
    }

    let mut out = Vec::with_capacity(targets.len());
    for (topic, default_tag) in targets {
        let mut b = Message::builder()
            .topic(topic.clone())
            .body(msg.data.clone());
        if let Some(t) = tag.clone().or(default_tag) {
            b = b.tags(t);
        }
        if !message_keys.is_empty() {
            b = b.keys(message_keys.clone());
        }
        if let Some(k) = &sharding_key {
            b = b.sharding_key(k.clone());
        }
        match &delay {
            Some((_, Delay::Level(l))) => b = b.delay_level(*l),
            Some((_, Delay::At(at))) => b = b.deliver_time_ms(*at),
            None => {}
        }
        for (k, v) in &props {
            b = b
                .raw_property(k.clone(), v.clone())
                .map_err(|e| invalid(&format!("{}{k}", keys::PROPERTY_PREFIX), e.to_string()))?;
        }
        let message = b
            .build()
            .map_err(|e| invalid(keys::TOPIC, format!("message rejected by the client: {e}")))?;
        limits::check_properties(
            message
                .get_properties()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        out.push(PlannedSend {
            topic,
            message,
            sharding_key: sharding_key.clone(),
            delayed: delay.is_some(),
        });
    }
    Ok(out)
}

/// A boxed send of the client. Its send futures are large (~16 KiB); boxed once, every future
/// around one (the timeout, the transport's, the gRPC handler's) holds a pointer instead of
/// being copied with that state inside at each layer.
type Sending<'p, T> = Pin<Box<dyn Future<Output = ClientResult<T>> + Send + 'p>>;

/// Awaits `send`, which the client bounds by `timeout` itself, at most `timeout` plus a margin.
async fn bounded<T>(send: Sending<'_, T>, timeout: Duration) -> Result<T, SendFailure> {
    match tokio::time::timeout(timeout + Duration::from_millis(500), send).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(SendFailure::Client(Arc::new(e))),
        Err(_) => Err(SendFailure::TimedOut),
    }
}

/// Sends one message within `timeout` (the client's own timeout plus a margin).
pub async fn send_one(
    producer: &DefaultMQProducer,
    one: PlannedSend,
    timeout: Duration,
) -> Result<SendResult, SendFailure> {
    let ms = timeout.as_millis() as u64;
    let send: Sending<'_, Option<SendResult>> = match one.sharding_key {
        Some(key) => Box::pin(producer.send_with_selector_timeout(
            one.message,
            |mqs: &[MessageQueue], _m: &Message, k: &String| select_queue(mqs, k),
            key,
            ms,
        )),
        None => Box::pin(producer.send_with_timeout(one.message, ms)),
    };
    bounded(send, timeout).await?.ok_or(SendFailure::NoResult)
}

/// Sends `messages` (one topic, none delayed) as one batch within `timeout`; the result is
/// the batch's (comma-joined ids, the first message's queue offset).
pub async fn send_many(
    producer: &DefaultMQProducer,
    messages: Vec<Message>,
    timeout: Duration,
) -> Result<SendResult, SendFailure> {
    let ms = timeout.as_millis() as u64;
    bounded(
        Box::pin(producer.send_batch_with_timeout(messages, ms)),
        timeout,
    )
    .await
}

/// The receipt of one request (comma lists when it fanned out to several topics).
pub fn receipt(results: &[(String, SendResult)]) -> SendReceipt {
    let join = |f: &dyn Fn(&(String, SendResult)) -> String| match results {
        [one] => f(one),
        _ => results.iter().map(f).collect::<Vec<_>>().join(","),
    };
    let mut r = SendReceipt::with_capacity(6);
    r.insert(
        RECEIPT_MESSAGE_ID.into(),
        join(&|(_, s)| s.msg_id.as_ref().map(|m| m.to_string()).unwrap_or_default()),
    );
    r.insert(keys::TOPIC.into(), join(&|(t, _)| t.clone()));
    r.insert(
        RECEIPT_QUEUE_ID.into(),
        join(&|(_, s)| {
            s.message_queue
                .as_ref()
                .map(|q| q.queue_id().to_string())
                .unwrap_or_default()
        }),
    );
    r.insert(
        RECEIPT_QUEUE_OFFSET.into(),
        join(&|(_, s)| s.queue_offset.to_string()),
    );
    r.insert(
        RECEIPT_BROKER_NAME.into(),
        join(&|(_, s)| {
            s.message_queue
                .as_ref()
                .map(|q| q.broker_name().to_string())
                .unwrap_or_default()
        }),
    );
    r.insert(
        RECEIPT_SEND_STATUS.into(),
        join(&|(_, s)| s.send_status.to_string()),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Role;
    use std::collections::HashMap;

    fn settings(topics: &str) -> Settings {
        let mut m: HashMap<String, String> = HashMap::new();
        m.insert("nameServer".into(), "127.0.0.1:9876".into());
        if !topics.is_empty() {
            m.insert("topics".into(), topics.into());
        }
        Settings::decode(&m, Role::Output).unwrap()
    }

    fn out(md: &[(&str, &str)]) -> OutboundMessage {
        OutboundMessage {
            data: bytes::Bytes::from_static(b"hello"),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn prop(m: &Message, k: &str) -> Option<String> {
        m.property(k).map(|v| v.to_string())
    }

    #[test]
    fn fnv_matches_go_hash_fnv() {
        assert_eq!(fnv1a_32(b""), 0x811c9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn same_key_same_queue() {
        let mqs: Vec<MessageQueue> = (0..4)
            .map(|i| MessageQueue::from_parts("t", "b", i))
            .collect();
        let a = select_queue(&mqs, "order-1").unwrap();
        let b = select_queue(&mqs, "order-1").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.queue_id() as u32,
            fnv1a_32(b"order-1") % 4,
            "Go: int(sum32) % len(queues)"
        );
        assert!(select_queue(&[], "k").is_none());
    }

    #[test]
    fn full_metadata_maps_onto_the_message() {
        let s = settings("");
        let p = plan(
            &out(&[
                ("rocketmq-topic", "T1"),
                ("rocketmq-tag", "TagA"),
                ("rocketmq-key", "k1, k2"),
                ("rocketmq-shardingkey", "order-7"),
                ("rocketmq-delaylevel", "3"),
                ("rocketmq-property-color", "blue"),
                ("Rocketmq-Property-Size", "XL"),
                ("traceparent", "00-abc-def-01"),
                ("user-agent", "daprd"),
                ("content-type", "text/plain"),
            ]),
            &s,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        let m = &p[0].message;
        assert_eq!(p[0].topic, "T1");
        assert_eq!(prop(m, "TAGS").as_deref(), Some("TagA"));
        assert_eq!(prop(m, "KEYS").as_deref(), Some("k1 k2"));
        assert_eq!(prop(m, "__SHARDINGKEY").as_deref(), Some("order-7"));
        assert_eq!(prop(m, "DELAY").as_deref(), Some("3"));
        assert_eq!(prop(m, "color").as_deref(), Some("blue"));
        assert_eq!(prop(m, "Size").as_deref(), Some("XL"));
        assert_eq!(prop(m, "traceparent").as_deref(), Some("00-abc-def-01"));
        assert_eq!(prop(m, "user-agent"), None);
        assert_eq!(prop(m, "content-type"), None);
        assert_eq!(p[0].sharding_key.as_deref(), Some("order-7"));
    }

    #[test]
    fn fan_out_to_configured_topics_with_tag() {
        let s = settings("a, b||OnlyTag, c||X||Y");
        let p = plan(&out(&[]), &s).unwrap();
        let topics: Vec<_> = p.iter().map(|x| x.topic.as_str()).collect();
        assert_eq!(topics, ["a", "b", "c"]);
        assert_eq!(prop(&p[0].message, "TAGS"), None);
        assert_eq!(prop(&p[1].message, "TAGS").as_deref(), Some("OnlyTag"));
        assert_eq!(prop(&p[2].message, "TAGS"), None);
        let p = plan(&out(&[("rocketmq-tag", "T")]), &s).unwrap();
        assert!(
            p.iter()
                .all(|x| prop(&x.message, "TAGS").as_deref() == Some("T"))
        );
    }

    #[test]
    fn deliver_forms() {
        let s = settings("t");
        let at = (now_ms() + 60_000).to_string();
        let p = plan(&out(&[("rocketmq-deliver-at", &at)]), &s).unwrap();
        assert_eq!(
            prop(&p[0].message, "TIMER_DELIVER_MS").as_deref(),
            Some(at.as_str())
        );
        // The past is accepted (the broker delivers at once); beyond the window is not.
        assert!(plan(&out(&[("rocketmq-deliver-at", "1000")]), &s).is_ok());
        let far = (now_ms() + 259_260_000).to_string();
        let e = plan(&out(&[("rocketmq-deliver-at", &far)]), &s).unwrap_err();
        assert!(e.to_string().contains("timer window is 259200 s"), "{e}");
        let e = plan(&out(&[("rocketmq-deliver-after", "73h")]), &s).unwrap_err();
        assert!(e.to_string().contains("`rocketmq-deliver-after`"), "{e}");
        let before = now_ms();
        let p = plan(&out(&[("rocketmq-deliver-after", "90s")]), &s).unwrap();
        let at: u64 = prop(&p[0].message, "TIMER_DELIVER_MS")
            .unwrap()
            .parse()
            .unwrap();
        assert!(at >= before + 90_000 && at < before + 95_000);
    }

    #[test]
    fn bad_values_name_the_key() {
        let s = settings("t");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("rocketmq-delaylevel", "0")], "rocketmq-delaylevel"),
            (&[("rocketmq-delaylevel", "19")], "rocketmq-delaylevel"),
            (&[("rocketmq-delaylevel", "x")], "rocketmq-delaylevel"),
            (&[("rocketmq-deliver-at", "soon")], "rocketmq-deliver-at"),
            (
                &[("rocketmq-deliver-after", "1 parsec")],
                "rocketmq-deliver-after",
            ),
            (
                &[
                    ("rocketmq-delaylevel", "2"),
                    ("rocketmq-deliver-after", "1s"),
                ],
                "rocketmq-deliver-after",
            ),
            (&[("rocketmq-topic", "bad topic")], "rocketmq-topic"),
            (&[("rocketmq-tag", "a||b")], "rocketmq-tag"),
            (&[("rocketmq-key", "a b")], "rocketmq-key"),
            (&[("rocketmq-property-KEYS", "x")], "rocketmq-property-KEYS"),
            (&[("rocketmq-property-__X", "x")], "rocketmq-property-__X"),
            (&[("rocketmq-property-a", "x\ny")], "rocketmq-property-a"),
            (&[("traceparent", "x\u{1}y")], "traceparent"),
        ];
        for (md, key) in cases {
            let e = plan(&out(md), &s)
                .err()
                .unwrap_or_else(|| panic!("{md:?} accepted"));
            let text = e.to_string();
            assert!(
                matches!(e, TransportError::InvalidRequest { .. }),
                "{md:?}: {text}"
            );
            assert!(text.contains(&format!("`{key}`")), "{md:?}: {text}");
        }
        // No topic anywhere.
        let e = plan(&out(&[]), &settings("")).unwrap_err().to_string();
        assert!(e.contains("`rocketmq-topic`"), "{e}");
    }
}
