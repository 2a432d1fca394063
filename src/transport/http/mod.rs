//! `accessProto: http`: Alibaba Cloud RocketMQ 4.x through the Aliyun MQ HTTP API.
//!
//! Every request is signed (HMAC-SHA1, spec §2, see [`protocol`]); `instanceId` becomes the
//! `ns` query parameter. The output side publishes with `POST /topics/{topic}/messages`; the
//! input side long-polls `GET` (up to 30 s per request, so an idle consumer costs nothing)
//! and acks with `DELETE` only after the app confirmed a delivery.
//!
//! `consumerModel: broadcasting` is refused for input bindings: the HTTP API has no broadcast
//! consumption. Redelivery limits and dead-lettering are the broker's (`maxReconsumeTimes`
//! does not apply over HTTP).
//!
//! # Output request metadata
//!
//! | key | effect |
//! |---|---|
//! | `rocketmq-topic` | target topic; when absent, the message goes to every configured topic |
//! | `rocketmq-tag` | `<MessageTag>` (at most 64 characters, no `\|`) |
//! | `rocketmq-key` | comma list → property `KEYS` (space separated, RocketMQ's convention) |
//! | `rocketmq-shardingkey` | property `__SHARDINGKEY` (partition order) |
//! | `rocketmq-deliver-at` | epoch milliseconds → `__STARTDELIVERTIME` |
//! | `rocketmq-deliver-after` | a duration (`90s`, `1m30s`, bare ms) → `__STARTDELIVERTIME` = now + it |
//! | `rocketmq-delaylevel` | rejected: the HTTP API has no delay levels (use `rocketmq-deliver-after`) |
//! | `rocketmq-property-<name>` | user property `<name>` |
//! | `traceparent`, `tracestate`, `baggage` | stored as properties of the same name (best effort, see below) |
//!
//! Other keys (`user-agent`, `content-type`, …) are not copied. The properties format has no
//! escaping, so a name or value containing `' " < > & : |` (or a control character) is
//! rejected with `InvalidRequest` naming the key; nothing is silently altered. Names that
//! collide with system properties (`KEYS`, `TAGS`, anything starting with `__`,
//! `dapr-body-encoding` and `dapr-trace-encoding`) are rejected too.
//!
//! Trace context never fails a send: W3C `tracestate` and `baggage` values may legally
//! contain `:` (and a misbehaving tracer anything else). When any trace value holds a
//! character the format cannot carry, every trace value of that message is percent-encoded
//! (`%`, the forbidden characters, control and non-ASCII characters become `%XX`) and the
//! property `dapr-trace-encoding:percent` is added; the input side decodes them back to the
//! exact values and strips the marker. Trace values that need no encoding go as-is, so other
//! consumers read them unchanged.
//!
//! The send receipt ([`crate::transport::SendReceipt`]) holds `rocketmq-message-id`,
//! `rocketmq-topic`, `rocketmq-send-status` (`SEND_OK`) and `rocketmq-body-md5` (the server's
//! `MessageBodyMD5`). When one send fans out to several topics, each key holds a comma list
//! in topic order.
//!
//! # Bodies
//!
//! The API carries a text `<MessageBody>`. A body that is non-empty valid UTF-8 made only of
//! characters XML 1.0 can carry goes as-is, so other consumers (official SDKs, the console)
//! read it unchanged. Any other body (non-UTF-8 bytes, control characters, or an empty body,
//! which the API refuses) is sent as standard base64 text with the property
//! `dapr-body-encoding:base64` (or `dapr-body-encoding:empty` with the placeholder text
//! `(empty)`). The input side decodes marked bodies back to the exact bytes and strips the
//! marker; a marked body that is not valid base64 is delivered as its raw text, with a warning.
//!
//! # Delivery metadata
//!
//! `rocketmq-topic`, `rocketmq-message-id`, `rocketmq-tag`, `rocketmq-keys` (comma list),
//! `rocketmq-shardingkey`, `rocketmq-reconsume-times` (`ConsumedTimes - 1`),
//! `rocketmq-born-timestamp` (`PublishTime`), `rocketmq-first-consume-time`,
//! `rocketmq-next-consume-time`, `rocketmq-deliver-at` (timer messages),
//! `rocketmq-consumer-group`, user properties as `rocketmq-property-<name>` and the trace
//! keys as themselves. Values and property names are encoded as on tcp
//! ([`super::contract::delivery_value`]: control and non-ASCII characters and `%` itself
//! become `%XX`, reversibly), so every value is safe as an HTTP header.

pub mod client;
pub mod config;
mod consumer;
pub mod protocol;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    client::{ApiError, Client, Credentials},
    protocol::{PROP_BODY_ENCODING, PROP_TRACE_ENCODING, PublishMessage},
};
use super::contract::{self, RequestKeys};
use super::{Delivery, OutboundMessage, SendReceipt, Transport, TransportError, keys, limits};
use crate::metadata::{Role, Settings};
use crate::text::shown;

/// Receipt key: the broker's `MessageBodyMD5` (HTTP only).
pub const RECEIPT_BODY_MD5: &str = "rocketmq-body-md5";
/// Receipt key: message id(s).
pub use contract::RECEIPT_MESSAGE_ID;
/// Receipt key: send status.
pub const RECEIPT_SEND_STATUS: &str = "rocketmq-send-status";

/// Topic named by `ping` when no topic is configured.
const PING_TOPIC: &str = "rocketmq-binding-ping";
/// Cap of `ping`'s one request (less when its deadline is nearer).
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Body placeholder for an empty body (the API refuses empty bodies).
pub const EMPTY_BODY_TEXT: &str = "(empty)";

/// Counters of one HTTP transport (for tests and diagnostics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handed to the sink.
    pub delivered: AtomicU64,
    /// Receipt handles acked successfully.
    pub acked: AtomicU64,
    /// Receipt handles the server refused (`<Errors>`) or whose ack request failed.
    pub ack_failures: AtomicU64,
    /// Deliveries released (not acked; redelivered after the invisibility time).
    pub released: AtomicU64,
    /// Failed consume requests (not counting "no message").
    pub poll_errors: AtomicU64,
}

/// The HTTP transport of one component instance.
#[derive(Debug)]
pub struct HttpTransport {
    instance: String,
    settings: Arc<Settings>,
    role: Role,
    client: Arc<Client>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    subscribed: AtomicBool,
    stats: Arc<Stats>,
}

/// Opens an HTTP transport for one instance and role (no I/O).
pub fn open(
    instance: &str,
    settings: Arc<Settings>,
    role: Role,
) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(open_http(instance, settings, role)?)
}

/// Like [`open`], returning the concrete type (tests read [`HttpTransport::stats`]).
pub fn open_http(
    instance: &str,
    settings: Arc<Settings>,
    role: Role,
) -> Result<Arc<HttpTransport>, TransportError> {
    // `config::decode` accepted these settings for accessProto http: endpoint and both keys
    // are set, the model is clustering.
    let (Some(endpoint), Some(access_key), Some(secret_key)) = (
        settings.endpoint.clone(),
        settings.access_key.clone(),
        settings.secret_key.clone(),
    ) else {
        return Err(TransportError::Config {
            key: "accessProto".into(),
            reason: "settings not decoded for http (no endpoint or keys)".into(),
        });
    };
    let creds = Credentials {
        access_key,
        secret_key,
        security_token: settings.security_token.clone(),
    };
    let client = Client::new(&endpoint, creds, settings.instance_id.clone())?;
    Ok(Arc::new(HttpTransport {
        instance: instance.to_string(),
        settings,
        role,
        client: Arc::new(client),
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
        subscribed: AtomicBool::new(false),
        stats: Arc::new(Stats::default()),
    }))
}

impl HttpTransport {
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    async fn publish_with_retries(
        &self,
        topic: &str,
        msg: &PublishMessage,
    ) -> Result<protocol::PublishResult, TransportError> {
        let mut attempt = 0u32;
        loop {
            let r = tokio::select! {
                _ = self.cancel.cancelled() => return Err(TransportError::Closed),
                r = self.client.publish(topic, msg, self.settings.send_timeout) => r,
            };
            match r {
                Ok(res) => return Ok(res),
                // Only retry when nothing reached the server: a publish is not idempotent.
                Err(ApiError::Connect(reason)) if attempt < self.settings.retries => {
                    attempt += 1;
                    tracing::debug!(instance = %self.instance, topic, attempt, %reason, "publish: connect failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into_transport("publish", self.client.endpoint())),
            }
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn ping(&self, deadline: Instant) -> Result<(), TransportError> {
        if self.cancel.is_cancelled() {
            return Err(TransportError::Closed);
        }
        // A signed ack of a handle that cannot exist: harmless, proves the endpoint answers
        // and the credentials are accepted, and (for a configured topic) that it exists.
        let configured = self.settings.topics.first().map(|s| s.topic.as_str());
        let topic = configured.unwrap_or(PING_TOPIC);
        let group = match self.role {
            Role::Input => self.settings.consumer_group.as_str(),
            Role::Output => self.settings.producer_group.as_str(),
        };
        let timeout = super::within(PING_TIMEOUT, deadline);
        let r = self
            .client
            .ack(
                topic,
                group,
                &["rocketmq-binding-ping".to_string()],
                timeout,
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(ApiError::Server { ref code, .. })
                if matches!(
                    code.as_str(),
                    "ReceiptHandleError" | "MessageNotExist" | "InvalidArgument"
                ) =>
            {
                Ok(())
            }
            // No topic configured (output binding): the placeholder need not exist.
            Err(ApiError::Server { ref code, .. })
                if code == "TopicNotExist" && configured.is_none() =>
            {
                Ok(())
            }
            Err(ApiError::Timeout(after)) => Err(TransportError::Unavailable {
                address: self.client.endpoint().to_string(),
                reason: format!("no answer within {after:?}"),
            }),
            Err(e) => Err(e.into_transport("ping", self.client.endpoint())),
        }
    }

    async fn send(&self, msg: OutboundMessage) -> Result<SendReceipt, TransportError> {
        if self.cancel.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let topics = target_topics(&msg.metadata, &self.settings)?;
        let publish = build_publish(&msg, now_ms(), self.settings.timer_max_delay)?;
        let mut ids = Vec::with_capacity(topics.len());
        let mut md5s = Vec::with_capacity(topics.len());
        for topic in &topics {
            // No tag in the request: the topic's single-tag `topics` entry gives one.
            let tagged;
            let one = match (&publish.tag, contract::default_tag(&self.settings, topic)) {
                (None, Some(tag)) => {
                    tagged = PublishMessage {
                        tag: Some(tag),
                        ..publish.clone()
                    };
                    &tagged
                }
                _ => &publish,
            };
            match self.publish_with_retries(topic, one).await {
                Ok(res) => {
                    tracing::debug!(instance = %self.instance, topic, message_id = %res.message_id, "published");
                    ids.push(res.message_id);
                    md5s.push(res.body_md5);
                }
                Err(e) => {
                    if !ids.is_empty() {
                        tracing::warn!(
                            instance = %self.instance,
                            topic,
                            already_sent = ?topics[..ids.len()].iter().zip(&ids).collect::<Vec<_>>(),
                            error = %e,
                            "publish to one of several topics failed"
                        );
                    }
                    return Err(e);
                }
            }
        }
        let mut receipt = SendReceipt::new();
        receipt.insert(RECEIPT_MESSAGE_ID.into(), ids.join(","));
        receipt.insert(keys::TOPIC.into(), topics.join(","));
        receipt.insert(RECEIPT_SEND_STATUS.into(), "SEND_OK".into());
        receipt.insert(RECEIPT_BODY_MD5.into(), md5s.join(","));
        Ok(receipt)
    }

    async fn subscribe(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        if self.cancel.is_cancelled() {
            return Err(TransportError::Closed);
        }
        if self.role != Role::Input {
            return Err(TransportError::Unsupported(
                "subscribe on an output binding instance".into(),
            ));
        }
        if self.settings.topics.is_empty() {
            return Err(TransportError::InvalidRequest {
                key: "topics".into(),
                reason: "an input binding needs at least one topic".into(),
            });
        }
        if self.subscribed.swap(true, Ordering::SeqCst) {
            return Err(TransportError::Unsupported(
                "subscribe called twice on one transport".into(),
            ));
        }
        consumer::start(consumer::Ctx {
            instance: self.instance.clone(),
            settings: self.settings.clone(),
            client: self.client.clone(),
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
            stats: self.stats.clone(),
            sink,
        });
        Ok(())
    }

    async fn close(&self, deadline: Instant) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(instance = %self.instance, "http consumer tasks still running at the close deadline");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn invalid(key: &str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidRequest {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn target_topics(
    md: &HashMap<String, String>,
    settings: &Settings,
) -> Result<Vec<String>, TransportError> {
    match RequestKeys::new(md).get(keys::TOPIC) {
        // Valid names are also safe in the request path without escaping.
        Some(t) => crate::metadata::check_send_topic(t)
            .map(|()| vec![t.to_string()])
            .map_err(|e| invalid(keys::TOPIC, e)),
        None if settings.topics.is_empty() => Err(invalid(
            keys::TOPIC,
            "no topic: set this key or configure `topics` on the component",
        )),
        None => Ok(settings.topics.iter().map(|s| s.topic.clone()).collect()),
    }
}

/// Encodes a body per the module docs: `(text, marker)`.
pub fn encode_body(data: &[u8]) -> (String, Option<&'static str>) {
    if data.is_empty() {
        return (EMPTY_BODY_TEXT.to_string(), Some("empty"));
    }
    match std::str::from_utf8(data) {
        Ok(s) if protocol::xml_text_ok(s) => (s.to_string(), None),
        _ => (B64.encode(data), Some("base64")),
    }
}

/// Decodes a received body given its `dapr-body-encoding` marker; `Err` keeps the raw text.
pub fn decode_body(text: &str, marker: Option<&str>) -> Result<Vec<u8>, String> {
    match marker {
        None => Ok(text.as_bytes().to_vec()),
        Some("empty") => Ok(Vec::new()),
        Some("base64") => B64
            .decode(text.trim())
            .map_err(|e| format!("body marked base64 does not decode: {e}")),
        Some(other) => Err(format!("unknown body encoding {other:?}")),
    }
}

fn reserved_property(name: &str) -> bool {
    name == protocol::PROP_KEYS
        || name == protocol::PROP_TAGS
        || name.starts_with("__")
        || name == PROP_BODY_ENCODING
        || name == PROP_TRACE_ENCODING
}

/// Marker value of [`PROP_TRACE_ENCODING`]: the trace values are percent-encoded.
pub const TRACE_ENCODING_PERCENT: &str = "percent";

/// What a percent-encoded trace value escapes: controls, `%` and the characters the
/// properties format cannot carry (non-ASCII is always escaped by `utf8_percent_encode`).
const TRACE_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b'%')
    .add(b'\'')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'&')
    .add(b':')
    .add(b'|');

/// Percent-encodes one trace value (reversible with [`decode_trace_value`]).
pub fn encode_trace_value(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, TRACE_ESCAPED).to_string()
}

/// Decodes a value written by [`encode_trace_value`]; `None` if it is not valid UTF-8.
pub fn decode_trace_value(v: &str) -> Option<String> {
    percent_encoding::percent_decode_str(v)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Builds the publish request from an outbound message (validation included).
///
/// `now` is the current Unix time in milliseconds; delivery times beyond `timer_max_delay`
/// from it are refused ([`limits::check_deliver_time`]).
pub fn build_publish(
    msg: &OutboundMessage,
    now: i64,
    timer_max_delay: Duration,
) -> Result<PublishMessage, TransportError> {
    let md = RequestKeys::new(&msg.metadata);
    let get = |k: &str| md.get(k);
    let mut props: Vec<(String, String)> = Vec::new();

    let tag = match get(keys::TAG) {
        Some(t) => {
            if t.chars().count() > protocol::MAX_TAG_LEN {
                return Err(invalid(keys::TAG, "a tag has at most 64 characters"));
            }
            if t.contains('|') || !protocol::xml_text_ok(t) || t.chars().any(char::is_control) {
                return Err(invalid(
                    keys::TAG,
                    format!(
                        "{}: a tag may not contain '|' or control characters",
                        shown(t)
                    ),
                ));
            }
            Some(t.to_string())
        }
        None => None,
    };

    if let Some(k) = get(keys::KEY) {
        let list: Vec<&str> = k
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for one in &list {
            if one.contains(char::is_whitespace) {
                return Err(invalid(
                    keys::KEY,
                    format!(
                        "key {} contains whitespace (keys are space separated on the wire)",
                        shown(one)
                    ),
                ));
            }
        }
        if !list.is_empty() {
            props.push((protocol::PROP_KEYS.into(), list.join(" ")));
        }
    }
    if let Some(s) = get(keys::SHARDING_KEY) {
        props.push((protocol::PROP_SHARDING_KEY.into(), s.to_string()));
    }
    if get(keys::DELAY_LEVEL).is_some() {
        return Err(invalid(
            keys::DELAY_LEVEL,
            "the Aliyun MQ HTTP API has no delay levels; use rocketmq-deliver-after (a duration) \
             or rocketmq-deliver-at (epoch milliseconds) instead",
        ));
    }
    match (get(keys::DELIVER_AT), get(keys::DELIVER_AFTER)) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                keys::DELIVER_AT,
                "set either rocketmq-deliver-at or rocketmq-deliver-after, not both",
            ));
        }
        (Some(at), None) => {
            let ms: i64 = at.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                invalid(
                    keys::DELIVER_AT,
                    format!("{} is not a Unix time in milliseconds", shown(at)),
                )
            })?;
            limits::check_deliver_time(
                keys::DELIVER_AT,
                ms as u64,
                now.max(0) as u64,
                timer_max_delay,
            )?;
            props.push((protocol::PROP_START_DELIVER_TIME.into(), ms.to_string()));
        }
        (None, Some(after)) => {
            let d = crate::metadata::parse_duration(keys::DELIVER_AFTER, after)
                .map_err(|e| invalid(keys::DELIVER_AFTER, e.to_string()))?;
            let at = now + d.as_millis() as i64;
            limits::check_deliver_time(
                keys::DELIVER_AFTER,
                at.max(0) as u64,
                now.max(0) as u64,
                timer_max_delay,
            )?;
            props.push((protocol::PROP_START_DELIVER_TIME.into(), at.to_string()));
        }
        (None, None) => {}
    }

    for (k, name, v) in md.properties() {
        if name.is_empty() {
            return Err(invalid(k, "the property name after the prefix is empty"));
        }
        if reserved_property(name) {
            return Err(invalid(
                k,
                format!(
                    "{} is reserved (KEYS, TAGS, names starting with __ and \
                     {PROP_BODY_ENCODING}); use the dedicated metadata keys",
                    shown(name)
                ),
            ));
        }
        protocol::check_property_part(name, name, "name").map_err(|e| invalid(k, e.to_string()))?;
        protocol::check_property_part(name, v, "value").map_err(|e| invalid(k, e.to_string()))?;
        props.push((name.to_string(), v.to_string()));
    }
    // Trace context is best effort and never fails a send (see the module docs).
    let trace: Vec<(&str, &str)> = keys::TRACE_KEYS
        .iter()
        .filter_map(|tk| get(tk).map(|v| (*tk, v)))
        .collect();
    let encode_trace = trace
        .iter()
        .any(|(tk, v)| protocol::check_property_part(tk, v, "value").is_err());
    for (tk, v) in &trace {
        let v = if encode_trace {
            encode_trace_value(v)
        } else {
            v.to_string()
        };
        props.push((tk.to_string(), v));
    }
    if encode_trace {
        props.push((
            PROP_TRACE_ENCODING.into(),
            TRACE_ENCODING_PERCENT.to_string(),
        ));
    }

    limits::check_properties(
        tag.iter()
            .map(|t| (protocol::PROP_TAGS, t.as_str()))
            .chain(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    )?;
    let (body, marker) = encode_body(&msg.data);
    if let Some(m) = marker {
        props.push((PROP_BODY_ENCODING.into(), m.into()));
    }
    // Every part was checked above with the key that carried it; this cannot fail, but map
    // it anyway rather than unwrap.
    let properties =
        protocol::encode_properties(&props).map_err(|e| invalid("properties", e.to_string()))?;
    Ok(PublishMessage {
        body,
        tag,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_DELAY: Duration = Duration::from_secs(259_200);

    fn out(md: &[(&str, &str)], data: &[u8]) -> OutboundMessage {
        OutboundMessage {
            data: bytes::Bytes::copy_from_slice(data),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn metadata_maps_to_tag_keys_and_properties() {
        let m = build_publish(
            &out(
                &[
                    ("rocketmq-tag", "TagA"),
                    ("rocketmq-key", "k1, k2"),
                    ("rocketmq-shardingkey", "s1"),
                    ("rocketmq-deliver-at", "1705314600000"),
                    ("rocketmq-property-color", "red"),
                    (
                        "traceparent",
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    ),
                    ("user-agent", "curl"),
                    ("content-type", "text/plain"),
                ],
                b"hello",
            ),
            1_705_314_000_000,
            MAX_DELAY,
        )
        .unwrap();
        assert_eq!(m.body, "hello");
        assert_eq!(m.tag.as_deref(), Some("TagA"));
        let p = protocol::parse_properties(&m.properties);
        let get = |k: &str| p.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KEYS"), Some("k1 k2"));
        assert_eq!(get("__SHARDINGKEY"), Some("s1"));
        assert_eq!(get("__STARTDELIVERTIME"), Some("1705314600000"));
        assert_eq!(get("color"), Some("red"));
        assert!(get("traceparent").is_some());
        assert_eq!(get("user-agent"), None);
        assert_eq!(get("content-type"), None);
        assert_eq!(get(PROP_BODY_ENCODING), None);
    }

    #[test]
    fn rejections_name_the_key() {
        for (md, key) in [
            (vec![("rocketmq-delaylevel", "3")], "rocketmq-delaylevel"),
            (vec![("rocketmq-property-a", "x|y")], "rocketmq-property-a"),
            (
                vec![("rocketmq-property-a:b", "x")],
                "rocketmq-property-a:b",
            ),
            (
                vec![("rocketmq-property-KEYS", "x")],
                "rocketmq-property-KEYS",
            ),
            (
                vec![("rocketmq-property-__X", "x")],
                "rocketmq-property-__X",
            ),
            (vec![("rocketmq-tag", "a||b")], "rocketmq-tag"),
            (vec![("rocketmq-deliver-at", "soon")], "rocketmq-deliver-at"),
            (
                vec![("rocketmq-deliver-after", "soon")],
                "rocketmq-deliver-after",
            ),
            (vec![("rocketmq-key", "a b")], "rocketmq-key"),
            (
                vec![("rocketmq-property-dapr-trace-encoding", "x")],
                "rocketmq-property-dapr-trace-encoding",
            ),
        ] {
            let e = build_publish(&out(&md, b"x"), 0, MAX_DELAY).unwrap_err();
            match &e {
                TransportError::InvalidRequest { key: k, .. } => assert_eq!(k, key, "{e}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn trace_values_never_fail_a_send_and_round_trip() {
        let plain = build_publish(
            &out(
                &[
                    ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                    ("baggage", "userId=alice,serverNode=DF%2028"),
                ],
                b"x",
            ),
            0,
            MAX_DELAY,
        )
        .unwrap();
        let p = protocol::parse_properties(&plain.properties);
        let get = |p: &[(String, String)], k: &str| {
            p.iter().find(|(a, _)| a == k).map(|(_, v)| v.to_string())
        };
        // Nothing to escape: sent as-is, no marker.
        assert_eq!(
            get(&p, "baggage").as_deref(),
            Some("userId=alice,serverNode=DF%2028")
        );
        assert_eq!(get(&p, PROP_TRACE_ENCODING), None);

        let tricky = [
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "vendor=a:b|c,x=<&>'\"q\",y=ü"),
            ("baggage", "userId=alice,serverNode=DF%2028,ctl=a\u{1}b"),
        ];
        let m = build_publish(&out(&tricky, b"x"), 0, MAX_DELAY).unwrap();
        let p = protocol::parse_properties(&m.properties);
        assert_eq!(
            get(&p, PROP_TRACE_ENCODING).as_deref(),
            Some(TRACE_ENCODING_PERCENT)
        );
        for (k, v) in tricky {
            let wire = get(&p, k).unwrap();
            protocol::check_property_part(k, &wire, "value").unwrap();
            assert_eq!(decode_trace_value(&wire).as_deref(), Some(v), "{k}");
        }
    }

    #[test]
    fn bodies_round_trip() {
        for data in [
            &b"plain text"[..],
            b"",
            &[0xff, 0xfe, 0x00, 0x80],
            b"ctrl\x01char",
            "üñí <&> \r\n".as_bytes(),
        ] {
            let (text, marker) = encode_body(data);
            assert_eq!(decode_body(&text, marker).unwrap(), data);
        }
        assert_eq!(encode_body(b"abc").1, None);
        assert_eq!(encode_body(&[0xff]).1, Some("base64"));
    }
}
