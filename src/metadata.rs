//! Component metadata: decoding a Dapr `MetadataRequest.properties` map into [`Settings`].
//!
//! Decoding follows Dapr's semantics (`dapr/kit/metadata`): keys are case-insensitive, two keys
//! that are equal after lower-casing are an error, unknown keys (`direction`, `route`, …) are
//! ignored, booleans are "truthy" strings, durations are Go durations (a bare integer is
//! milliseconds) and lists are comma separated.
//!
//! Settings by owner: [`KEYS`] names every key with its [`Owner`] and default. This module
//! decodes the common keys and the Dapr-level ones (`maxInFlight`, `backOff*`); each
//! transport's `config` module (`transport::tcp::config`, `transport::http::config`) decodes
//! the keys only it reads and its rules for shared keys, through [`Settings::decode_with`].
//! [`Settings::decode`], in [`crate::transport`], joins them. The decoded values are plain
//! fields of [`Settings`], so this module never imports a transport.
//!
//! Decoding is pure: no I/O, no logging of values. Every rejection is a [`MetadataError`] whose
//! message names the key, the bad value (never for secrets) and what is accepted; the error
//! layer maps it to `INVALID_ARGUMENT`. Secrets (`secretKey`, `securityToken`) are wrapped in
//! [`SecretString`] the moment they are read, so `Debug` output of [`Settings`] redacts them.

use std::{collections::HashMap, fmt, time::Duration};

use secrecy::SecretString;

/// Which side of the binding a component instance serves; required keys differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `dapr.proto.components.v1.InputBinding` (consumer).
    Input,
    /// `dapr.proto.components.v1.OutputBinding` (producer).
    Output,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Input => "input",
            Role::Output => "output",
        })
    }
}

/// Why a metadata map was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A key holds a value outside its accepted set.
    #[error("metadata key `{key}`: invalid value {value}; expected {expected}")]
    Invalid {
        key: &'static str,
        /// The value as [`crate::text::shown`] renders it (quoted, cut, credentials redacted).
        value: String,
        expected: String,
    },
    /// A secret key holds an invalid value (the value itself is never printed).
    #[error("metadata key `{key}`: invalid value (secret, not shown); expected {expected}")]
    InvalidSecret {
        key: &'static str,
        expected: &'static str,
    },
    /// A required key is absent or empty.
    #[error("metadata key `{key}` is required {why}")]
    Missing { key: &'static str, why: String },
    /// Two keys collide after lower-casing (Dapr: "key … is duplicate").
    #[error("metadata keys `{first}` and `{second}` are duplicates (keys are case-insensitive)")]
    Duplicate { first: String, second: String },
}

/// `accessProto`: which transport carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessProto {
    /// Native RocketMQ remoting protocol (name server + brokers).
    Tcp,
    /// Aliyun MQ HTTP REST API.
    Http,
}

impl AccessProto {
    /// `tcp` or `http` (also the `transport` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessProto::Tcp => "tcp",
            AccessProto::Http => "http",
        }
    }
}

/// `consumerModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerModel {
    /// Each message goes to one consumer of the group.
    Clustering,
    /// Each message goes to every consumer of the group.
    Broadcasting,
}

/// `sendReceipt`: which send receipt a `create` returns to the app.
///
/// daprd copies every receipt key into the caller's answer (`metadata.<key>` headers over
/// HTTP and gRPC, and the gRPC reply's `metadata`), so a smaller receipt is cheaper for daprd
/// and for the caller; Dapr's Go binding returns none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMode {
    /// Every receipt key the transport reports (message id, topic, queue, offset, broker,
    /// send status).
    Full,
    /// Only `rocketmq-message-id`.
    Id,
    /// Nothing: an empty answer, as Dapr's Go binding gives.
    None,
}

impl ReceiptMode {
    /// `full`, `id` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptMode::Full => "full",
            ReceiptMode::Id => "id",
            ReceiptMode::None => "none",
        }
    }
}

/// `deliveryMetadata`: which metadata keys a delivery carries to the app.
///
/// daprd turns every key into an HTTP header of the app's request (or an entry of the gRPC
/// app's `BindingEventRequest.metadata`), so fewer keys cost daprd less per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMetadata {
    /// Every key the transport reports: the message's own (topic, message id, tag, keys,
    /// sharding key, delivery time, user properties, trace context) and the broker's
    /// bookkeeping (queue id and offset, reconsume times, born timestamp, consumer group,
    /// broker name; http: first and next consume time).
    Full,
    /// The message's own keys only: what its producer set and its id.
    Basic,
}

impl DeliveryMetadata {
    /// `full` or `basic`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMetadata::Full => "full",
            DeliveryMetadata::Basic => "basic",
        }
    }
}

/// `fromWhere`: where a new consumer group starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromWhere {
    /// Only messages sent after the group first started (RocketMQ default).
    LastOffset,
    /// Everything still stored.
    FirstOffset,
    /// From `consumeTimestamp` (`yyyyMMddHHmmss`).
    Timestamp(String),
}

/// The Go binding's `backOff*` keys, accepted for compatibility.
///
/// The Go binding retried the app in-process with this policy, blocking the consumer. This
/// binding hands a failed delivery back to the broker instead (RocketMQ retry topic with its
/// growing delay, `maxReconsumeTimes`, then the DLQ), so the policy is validated and reported
/// but does not delay deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct BackOff {
    /// `backOffPolicy`: `constant` or `exponential`.
    pub policy: String,
    /// `backOffDuration` (constant policy).
    pub duration: Duration,
    /// `backOffMaxRetries` (-1 = forever).
    pub max_retries: i64,
    /// Whether any `backOff*` key was present.
    pub configured: bool,
}

impl Default for BackOff {
    fn default() -> Self {
        BackOff {
            policy: "constant".into(),
            duration: Duration::from_secs(5),
            max_retries: -1,
            configured: false,
        }
    }
}

/// One `topics` entry: `topic` or `topic||tagA||tagB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic name (without namespace).
    pub topic: String,
    /// Tag expression, normalised: tags trimmed and joined with `||`; `*` for all.
    pub expression: String,
}

impl Subscription {
    /// The tags of the expression, or `None` for `*` (all tags).
    pub fn tags(&self) -> Option<Vec<&str>> {
        if self.expression == "*" {
            None
        } else {
            Some(self.expression.split("||").collect())
        }
    }
}

/// Default consumer group when `consumerGroup` is not set. (The Go binding fell back to the Go
/// client's `DEFAULT_CONSUMER`, a name RocketMQ reserves and the Rust client refuses.)
pub const DEFAULT_CONSUMER_GROUP: &str = "rocketmq-binding-consumer";
/// Default producer group when `producerGroup` is not set.
pub const DEFAULT_PRODUCER_GROUP: &str = "rocketmq-binding-producer";
/// Group names RocketMQ reserves for its own clients and tools.
pub const RESERVED_GROUPS: &[&str] = &[
    "DEFAULT_CONSUMER",
    "DEFAULT_PRODUCER",
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS",
];

/// Decoded, validated settings of one component instance.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `accessProto` (default `tcp`).
    pub access_proto: AccessProto,
    /// `nameServer`: name server addresses (`;` or `,` separated, `http://` stripped).
    pub name_servers: Vec<String>,
    /// `nameServerDomain`: URL of an address server returning `host:port;host:port`.
    pub name_server_domain: Option<String>,
    /// `endpoint`: Aliyun MQ HTTP endpoint (http).
    pub endpoint: Option<String>,
    /// `accessKey`.
    pub access_key: Option<String>,
    /// `secretKey` (redacted).
    pub secret_key: Option<SecretString>,
    /// `securityToken`: STS token (redacted).
    pub security_token: Option<SecretString>,
    /// `instanceId`: namespace (tcp) / instance (http).
    pub instance_id: Option<String>,
    /// `consumerGroup`.
    pub consumer_group: String,
    /// `producerGroup`.
    pub producer_group: String,
    /// `consumerBatchSize`: messages per pull/poll (http: 1–16; tcp: pull batch size).
    pub consumer_batch_size: Option<u32>,
    /// `consumerThreadNums`: concurrent deliveries the consumer works on.
    pub consumer_thread_nums: u32,
    /// `consumeMessageBatchMaxSize` (tcp): messages one listener call hands to the app
    /// together; the call confirms them only when every one is acked, otherwise the whole
    /// batch is redelivered (the semantics of Dapr's RocketMQ pub/sub component).
    pub consume_batch_max_size: u32,
    /// `retries`: producer send retries.
    pub retries: u32,
    /// `topics`.
    pub topics: Vec<Subscription>,
    /// `sendTimeout` (default 3 s).
    pub send_timeout: Duration,
    /// `timerMaxDelay`: how far ahead a delivery time may be (default 72 h, the Java broker's
    /// `timerMaxDelaySec`); checked before a send on both transports.
    pub timer_max_delay: Duration,
    /// `consumerModel`.
    pub consumer_model: ConsumerModel,
    /// `fromWhere` (+ `consumeTimestamp`).
    pub from_where: FromWhere,
    /// `consumeOrderly`: one message in flight per queue.
    pub consume_orderly: bool,
    /// `rocketmq-sub-type: sql92` with `rocketmq-sub-expression` (tcp input): an SQL92
    /// filter on message properties for every topic, evaluated by the broker (Dapr's
    /// `pubsub.rocketmq` subscription metadata names).
    pub sql_filter: Option<String>,
    /// `maxReconsumeTimes`: redeliveries before the message goes to `%DLQ%<group>`.
    pub max_reconsume_times: u32,
    /// `maxInFlight`: unacknowledged deliveries per Read stream (tcp, concurrent: also per
    /// instance, the consumer's credits).
    pub max_in_flight: usize,
    /// `pullThresholdForQueue` (tcp): messages the consumer caches per queue before it stops
    /// pulling that queue.
    pub pull_threshold_for_queue: u32,
    /// `pullThresholdSizeForQueue` (tcp): MiB of message bodies cached per queue before it
    /// stops pulling that queue.
    pub pull_threshold_size_for_queue: u32,
    /// `pullThresholdForTopic` (tcp): messages cached over all queues before pulling pauses.
    pub pull_threshold_for_all: u32,
    /// `maxSendBatch` (tcp output): messages per batch when concurrent `create`s of one topic
    /// are coalesced; 1 sends every `create` alone.
    pub max_send_batch: u32,
    /// `sendReceipt` (output): which receipt keys a `create` answers with.
    pub send_receipt: ReceiptMode,
    /// `deliveryMetadata` (input): which metadata keys a delivery carries to the app.
    pub delivery_metadata: DeliveryMetadata,
    /// `backOff*` (accepted, see [`BackOff`]).
    pub back_off: BackOff,
    /// Keys present but not known to this binding (names only), e.g. `direction`, `route`.
    pub ignored_keys: Vec<String>,
}

/// Default of `pullThresholdForQueue` (RocketMQ's own).
pub const DEFAULT_PULL_THRESHOLD_FOR_QUEUE: u32 = 1000;
/// Default of `pullThresholdSizeForQueue` in MiB (RocketMQ's is 100; small here so that a
/// backlog of large messages does not fill the daemon's memory).
pub const DEFAULT_PULL_THRESHOLD_SIZE_FOR_QUEUE: u32 = 2;
/// Default of `pullThresholdForTopic` (messages over all queues).
pub const DEFAULT_PULL_THRESHOLD_FOR_TOPIC: u32 = 1000;
/// Default of `maxSendBatch` (messages per coalesced batch send).
pub const DEFAULT_MAX_SEND_BATCH: u32 = 64;

/// Who decodes a key: this module (common and Dapr-level keys) or a transport's config
/// module (`src/transport/<name>/config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Used by every transport; decoded here.
    Common,
    /// Read by the Dapr layer (flow control, the Go binding's retry keys); decoded here.
    Dapr,
    /// `accessProto: tcp` only; decoded by `transport::tcp::config`.
    Tcp,
    /// `accessProto: http` only; decoded by `transport::http::config`.
    Http,
    /// A shared key whose accepted range the selected transport decides; decoded by both
    /// transports' config modules.
    Transports,
}

/// One metadata key of the binding.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Canonical spelling (keys match case-insensitively).
    pub name: &'static str,
    /// Who decodes it.
    pub owner: Owner,
    /// The default as `metadata.yaml` writes it (the decoder's [`Settings::effective`]
    /// renders the same), or `None` when the key has no fixed default.
    pub default: Option<&'static str>,
    /// A secret: never logged or shown, `sensitive` in `metadata.yaml`.
    pub sensitive: bool,
}

const fn key(name: &'static str, owner: Owner, default: Option<&'static str>) -> Key {
    Key {
        name,
        owner,
        default,
        sensitive: false,
    }
}

const fn secret(name: &'static str) -> Key {
    Key {
        name,
        owner: Owner::Common,
        default: None,
        sensitive: true,
    }
}

/// Every key this binding reads: the one list behind the ignored keys, `metadata.yaml`'s keys,
/// defaults and secrets (`tests/metadata_yaml.rs`) and the README's table.
pub const KEYS: &[Key] = {
    use Owner::*;
    &[
        key("accessProto", Common, Some("\"tcp\"")),
        key("nameServer", Tcp, None),
        key("nameServerDomain", Tcp, None),
        key("endpoint", Http, None),
        key("accessKey", Common, None),
        secret("secretKey"),
        secret("securityToken"),
        key("instanceId", Common, None),
        key(
            "consumerGroup",
            Common,
            Some("\"rocketmq-binding-consumer\""),
        ),
        key(
            "producerGroup",
            Common,
            Some("\"rocketmq-binding-producer\""),
        ),
        key("consumerBatchSize", Transports, None),
        key("consumerThreadNums", Common, Some("16")),
        key("consumeMessageBatchMaxSize", Tcp, Some("1")),
        key("retries", Common, Some("2")),
        key("topics", Common, None),
        key("sendTimeout", Common, Some("\"3s\"")),
        key("timerMaxDelay", Common, Some("\"72h\"")),
        key("consumerModel", Common, Some("\"clustering\"")),
        key("fromWhere", Common, Some("\"ConsumeFromLastOffset\"")),
        key("consumeTimestamp", Common, None),
        key("consumeOrderly", Common, Some("false")),
        key("rocketmq-sub-type", Tcp, Some("\"tag\"")),
        key("rocketmq-sub-expression", Tcp, None),
        key("maxReconsumeTimes", Common, Some("16")),
        key("maxInFlight", Dapr, Some("64")),
        key("pullThresholdForQueue", Tcp, Some("1000")),
        key("pullThresholdSizeForQueue", Tcp, Some("2")),
        key("pullThresholdForTopic", Tcp, Some("1000")),
        key("maxSendBatch", Tcp, Some("64")),
        key("sendReceipt", Dapr, Some("\"full\"")),
        key("deliveryMetadata", Dapr, Some("\"full\"")),
        key("backOffPolicy", Dapr, Some("\"constant\"")),
        key("backOffDuration", Dapr, Some("\"5s\"")),
        key("backOffInitialInterval", Dapr, None),
        key("backOffRandomizationFactor", Dapr, None),
        key("backOffMultiplier", Dapr, None),
        key("backOffMaxInterval", Dapr, None),
        key("backOffMaxElapsedTime", Dapr, None),
        key("backOffMaxRetries", Dapr, Some("-1")),
    ]
};

/// The keys `owner` decodes.
pub fn keys_of(owner: Owner) -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(move |k| k.owner == owner)
}

/// Case-insensitive view of the properties map (duplicates after lower-casing rejected).
pub struct Props<'a> {
    map: HashMap<String, (&'a str, &'a str)>,
}

impl<'a> Props<'a> {
    /// The view of `raw`; two keys equal after lower-casing are [`MetadataError::Duplicate`].
    pub fn new(raw: &'a HashMap<String, String>) -> Result<Self, MetadataError> {
        let mut map: HashMap<String, (&str, &str)> = HashMap::with_capacity(raw.len());
        // Sort so the duplicate error is deterministic.
        let mut keys: Vec<&String> = raw.keys().collect();
        keys.sort();
        for k in keys {
            let lower = k.to_ascii_lowercase();
            if let Some((first, _)) = map.get(&lower) {
                return Err(MetadataError::Duplicate {
                    first: (*first).to_string(),
                    second: k.clone(),
                });
            }
            map.insert(lower, (k.as_str(), raw[k].as_str()));
        }
        Ok(Props { map })
    }

    /// Trimmed value; empty counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(&key.to_ascii_lowercase())
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// A [`MetadataError::Invalid`] for `key` showing `value` (quoted, cut, credentials redacted).
pub fn invalid(key: &'static str, value: &str, expected: impl Into<String>) -> MetadataError {
    MetadataError::Invalid {
        key,
        value: crate::text::shown(value).to_string(),
        expected: expected.into(),
    }
}

/// Dapr's truthy strings (`kit/utils.IsTruthy`) and their false counterparts.
pub fn parse_bool(key: &'static str, v: &str) -> Result<bool, MetadataError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "t" | "on" | "1" => Ok(true),
        "n" | "no" | "false" | "f" | "off" | "0" => Ok(false),
        _ => Err(invalid(
            key,
            v,
            "a boolean (true/false, yes/no, on/off, 1/0, t/f, y/n)",
        )),
    }
}

/// `v` when it is an `http://` or `https://` URL with something after the scheme, else
/// [`invalid`] for `key` with `expected`.
pub fn parse_http_url<'v>(
    key: &'static str,
    v: &'v str,
    expected: &str,
) -> Result<&'v str, MetadataError> {
    let ok = (v.starts_with("http://") || v.starts_with("https://")) && v.len() > "https://".len();
    if ok {
        Ok(v)
    } else {
        Err(invalid(key, v, expected))
    }
}

/// An integer within `min..=max`.
pub fn parse_int(key: &'static str, v: &str, min: i64, max: i64) -> Result<i64, MetadataError> {
    match v.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(key, v, format!("an integer from {min} to {max}"))),
    }
}

/// A Go duration (`300ms`, `1.5s`, `2m30s`, `1h`) or a bare integer of milliseconds (Dapr kit).
pub fn parse_duration(key: &'static str, v: &str) -> Result<Duration, MetadataError> {
    let err = || {
        invalid(
            key,
            v,
            "a duration such as 500ms, 3s, 1m30s (a bare integer is milliseconds)",
        )
    };
    let s = v.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Splits a name server list on `;` or `,`, trims, strips `http://`, validates `host:port`.
pub fn parse_name_servers(key: &'static str, v: &str) -> Result<Vec<String>, MetadataError> {
    let mut out = Vec::new();
    for part in v.split([';', ',']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let addr = part
            .strip_prefix("http://")
            .unwrap_or(part)
            .trim_end_matches('/');
        let valid = match addr.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && !host.contains('/')
                    && port.parse::<u16>().map(|p| p > 0).unwrap_or(false)
            }
            None => false,
        };
        if !valid {
            return Err(invalid(
                key,
                v,
                "host:port entries separated by ';' or ',' (an http:// prefix is allowed)",
            ));
        }
        out.push(addr.to_string());
    }
    if out.is_empty() {
        return Err(invalid(key, v, "at least one host:port"));
    }
    Ok(out)
}

/// Parses `topics`: comma-separated entries `topic` or `topic||tagA||tagB`.
pub fn parse_topics(v: &str) -> Result<Vec<Subscription>, MetadataError> {
    let mut out: Vec<Subscription> = Vec::new();
    for entry in v.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let mut parts = entry.split("||").map(str::trim);
        let topic = parts.next().unwrap_or_default();
        if !valid_topic(topic) {
            return Err(invalid(
                "topics",
                v,
                "comma-separated entries `topic` or `topic||tagA||tagB`; topic names use \
                 letters, digits, '%', '-', '_' and '|' only, up to 127 characters",
            ));
        }
        let tags: Vec<&str> = parts.collect();
        let expression = if tags.is_empty() || tags.contains(&"*") {
            if tags.len() > 1 {
                return Err(invalid(
                    "topics",
                    v,
                    "`*` alone (all tags) or a list of tags, not both",
                ));
            }
            "*".to_string()
        } else {
            if tags
                .iter()
                .any(|t| t.is_empty() || t.contains(char::is_whitespace))
            {
                return Err(invalid(
                    "topics",
                    v,
                    "non-empty tags without spaces between `||` separators",
                ));
            }
            tags.join("||")
        };
        if out.iter().any(|s| s.topic == topic) {
            return Err(invalid(
                "topics",
                v,
                "each topic at most once (join its tags with `||`)",
            ));
        }
        out.push(Subscription {
            topic: topic.to_string(),
            expression,
        });
    }
    if out.is_empty() {
        return Err(invalid("topics", v, "at least one topic"));
    }
    Ok(out)
}

/// RocketMQ topic name rule: `^[%|a-zA-Z0-9_-]+$`, at most 127 characters.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 127
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
}

/// Why a topic may not be sent to by a request, if it is one the broker keeps for itself:
/// retry and dead-letter queues of consumer groups, the auto-create template, the timer,
/// transaction and trace topics. (A Component may still subscribe to them, e.g. to read a
/// dead-letter queue.)
pub fn reserved_topic(t: &str) -> Option<&'static str> {
    const PREFIXES: [(&str, &str); 5] = [
        ("%RETRY%", "a consumer group's retry topic"),
        ("%DLQ%", "a consumer group's dead-letter topic"),
        ("%SYS%", "a broker system topic"),
        ("rmq_sys_", "a broker system topic"),
        ("RMQ_SYS_", "a broker system topic"),
    ];
    const NAMES: [&str; 6] = [
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "BenchmarkTest",
    ];
    for (p, why) in PREFIXES {
        if t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p) {
            return Some(why);
        }
    }
    NAMES
        .iter()
        .any(|n| n.eq_ignore_ascii_case(t))
        .then_some("a broker system topic")
}

/// Checks a topic a request asks to send to: a valid name and not reserved by the broker.
/// The error text names the value and the rule; `key` is the metadata key it came from.
pub fn check_send_topic(t: &str) -> Result<(), String> {
    if !valid_topic(t) {
        return Err(format!(
            "{} is not a topic name (letters, digits, '%', '-', '_', '|'; at most 127 characters)",
            crate::text::shown(t)
        ));
    }
    if let Some(why) = reserved_topic(t) {
        return Err(format!("{t:?} is {why}; sending to it is refused"));
    }
    Ok(())
}

fn valid_group(g: &str) -> bool {
    g.len() <= 255
        && g.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-' | '.'))
}

/// Decodes the keys of one transport into [`Settings`] (its config module's `decode`), after
/// the common keys. Runs for every Component, so a bad value of a key a transport owns is an
/// error whatever `accessProto` says; rules for the selected transport only check
/// [`Settings::access_proto`].
pub type OwnerDecoder = fn(&Props<'_>, &mut Settings) -> Result<(), MetadataError>;

impl Settings {
    /// Decodes and validates the Init properties of an instance serving `role`: the common
    /// and Dapr-level keys here, then each transport's keys by the decoders `owners` gives for
    /// the decoded `accessProto`, in that order. [`Settings::decode`] (in
    /// [`crate::transport`]) passes the transports' config modules.
    pub fn decode_with(
        raw: &HashMap<String, String>,
        role: Role,
        owners: fn(AccessProto) -> &'static [OwnerDecoder],
    ) -> Result<Settings, MetadataError> {
        let p = Props::new(raw)?;
        let mut s = Settings::decode_common(&p, role)?;
        for decode in owners(s.access_proto) {
            decode(&p, &mut s)?;
        }
        Ok(s)
    }

    /// The common and Dapr-level keys; transport-owned fields keep their defaults.
    fn decode_common(p: &Props<'_>, role: Role) -> Result<Settings, MetadataError> {
        let access_proto = match p.get("accessProto") {
            None => AccessProto::Tcp,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "tcp" => AccessProto::Tcp,
                "http" => AccessProto::Http,
                _ => return Err(invalid("accessProto", v, "`tcp` (default) or `http`")),
            },
        };

        let access_key = p.get("accessKey").map(str::to_string);
        let secret_key = p
            .get("secretKey")
            .map(|s| SecretString::from(s.to_string()));
        let security_token = p
            .get("securityToken")
            .map(|s| SecretString::from(s.to_string()));
        if access_key.is_some() != secret_key.is_some() {
            return Err(MetadataError::Missing {
                key: if access_key.is_some() {
                    "secretKey"
                } else {
                    "accessKey"
                },
                why: "when the other of accessKey/secretKey is set".into(),
            });
        }
        if security_token.is_some() && access_key.is_none() {
            return Err(MetadataError::Missing {
                key: "accessKey",
                why: "when securityToken is set".into(),
            });
        }
        let instance_id = match p.get("instanceId") {
            Some(v) if !valid_group(v) => {
                return Err(invalid(
                    "instanceId",
                    v,
                    "an instance id such as MQ_INST_1234567890_BXXXXXXX (letters, digits, '_', '-', '.')",
                ));
            }
            v => v.map(str::to_string),
        };
        for key in ["consumerGroup", "producerGroup"] {
            if let Some(v) = p.get(key).filter(|v| RESERVED_GROUPS.contains(v)) {
                return Err(invalid(
                    if key == "consumerGroup" {
                        "consumerGroup"
                    } else {
                        "producerGroup"
                    },
                    v,
                    "a group name of your own: RocketMQ reserves this one for its own clients",
                ));
            }
        }
        let consumer_group = match p.get("consumerGroup") {
            Some(v) if !valid_group(v) => {
                return Err(invalid(
                    "consumerGroup",
                    v,
                    "a group name of letters, digits, '%', '|', '_', '-', '.' (at most 255)",
                ));
            }
            Some(v) => v.to_string(),
            None => DEFAULT_CONSUMER_GROUP.to_string(),
        };
        let producer_group = match p.get("producerGroup") {
            Some(v) if !valid_group(v) => {
                return Err(invalid(
                    "producerGroup",
                    v,
                    "a group name of letters, digits, '%', '|', '_', '-', '.' (at most 255)",
                ));
            }
            Some(v) => v.to_string(),
            None => DEFAULT_PRODUCER_GROUP.to_string(),
        };

        let consumer_thread_nums = match p.get("consumerThreadNums") {
            Some(v) => parse_int("consumerThreadNums", v, 1, 256)? as u32,
            None => 16,
        };
        let retries = match p.get("retries") {
            Some(v) => Some(parse_int("retries", v, 0, 64)? as u32),
            None => None,
        };
        let topics = match p.get("topics") {
            Some(v) => {
                let topics = parse_topics(v)?;
                // An output sends to its `topics` by default: the same rule as a request's
                // `rocketmq-topic`. An input may still read them (e.g. a dead-letter queue).
                let reserved = topics
                    .iter()
                    .find_map(|s| reserved_topic(&s.topic).map(|why| (&s.topic, why)));
                if let (Role::Output, Some((t, why))) = (role, reserved) {
                    return Err(invalid(
                        "topics",
                        v,
                        format!("topics an output may send to ({t:?} is {why})"),
                    ));
                }
                topics
            }
            None if role == Role::Input => {
                return Err(MetadataError::Missing {
                    key: "topics",
                    why: "for an input binding (comma-separated `topic` or `topic||tagA||tagB`)"
                        .into(),
                });
            }
            None => Vec::new(),
        };
        let send_timeout = match p.get("sendTimeout") {
            Some(v) => {
                let d = parse_duration("sendTimeout", v)?;
                if d < Duration::from_millis(10) || d > Duration::from_secs(300) {
                    return Err(invalid("sendTimeout", v, "a duration from 10ms to 5m"));
                }
                d
            }
            None => Duration::from_secs(3),
        };
        let timer_max_delay = match p.get("timerMaxDelay") {
            Some(v) => {
                let d = parse_duration("timerMaxDelay", v)?;
                if d < Duration::from_secs(1) || d > Duration::from_secs(400 * 86_400) {
                    return Err(invalid("timerMaxDelay", v, "a duration from 1s to 9600h"));
                }
                d
            }
            None => Duration::from_secs(259_200),
        };
        let consumer_model = match p.get("consumerModel") {
            None => ConsumerModel::Clustering,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "clustering" => ConsumerModel::Clustering,
                "broadcasting" => ConsumerModel::Broadcasting,
                _ => {
                    return Err(invalid(
                        "consumerModel",
                        v,
                        "`clustering` (default) or `broadcasting`",
                    ));
                }
            },
        };
        let from_where = match p.get("fromWhere") {
            None => FromWhere::LastOffset,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "consumefromlastoffset" | "lastoffset" | "last" => FromWhere::LastOffset,
                "consumefromfirstoffset" | "firstoffset" | "first" => FromWhere::FirstOffset,
                "consumefromtimestamp" | "timestamp" => {
                    let ts = p.get("consumeTimestamp").ok_or(MetadataError::Missing {
                        key: "consumeTimestamp",
                        why: "when fromWhere is ConsumeFromTimestamp (format yyyyMMddHHmmss)"
                            .into(),
                    })?;
                    if ts.len() != 14 || !ts.chars().all(|c| c.is_ascii_digit()) {
                        return Err(invalid(
                            "consumeTimestamp",
                            ts,
                            "a timestamp yyyyMMddHHmmss such as 20260101120000",
                        ));
                    }
                    FromWhere::Timestamp(ts.to_string())
                }
                _ => {
                    return Err(invalid(
                        "fromWhere",
                        v,
                        "ConsumeFromLastOffset (default), ConsumeFromFirstOffset or ConsumeFromTimestamp",
                    ));
                }
            },
        };
        let consume_orderly = match p.get("consumeOrderly") {
            Some(v) => parse_bool("consumeOrderly", v)?,
            None => false,
        };
        let max_reconsume_times = match p.get("maxReconsumeTimes") {
            // -1 is RocketMQ's "default" (16).
            Some(v) => match parse_int("maxReconsumeTimes", v, -1, 1000)? {
                -1 => 16,
                n => n as u32,
            },
            // The Go binding fed `retries` into WithMaxReconsumeTimes as well.
            None => retries.unwrap_or(16),
        };
        let max_in_flight = match p.get("maxInFlight") {
            Some(v) => parse_int("maxInFlight", v, 1, 100_000)? as usize,
            None => 64,
        };
        let send_receipt = match p.get("sendReceipt") {
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "full" => ReceiptMode::Full,
                "id" => ReceiptMode::Id,
                "none" => ReceiptMode::None,
                _ => {
                    return Err(invalid(
                        "sendReceipt",
                        v,
                        "`full` (default), `id` or `none`",
                    ));
                }
            },
            None => ReceiptMode::Full,
        };
        let delivery_metadata = match p.get("deliveryMetadata") {
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "full" => DeliveryMetadata::Full,
                "basic" => DeliveryMetadata::Basic,
                _ => {
                    return Err(invalid(
                        "deliveryMetadata",
                        v,
                        "`full` (default) or `basic`",
                    ));
                }
            },
            None => DeliveryMetadata::Full,
        };
        let back_off = decode_back_off(p)?;

        let mut ignored_keys: Vec<String> = p
            .map
            .iter()
            .filter(|(lower, _)| !KEYS.iter().any(|k| k.name.eq_ignore_ascii_case(lower)))
            .map(|(_, (orig, _))| (*orig).to_string())
            .collect();
        ignored_keys.sort();

        Ok(Settings {
            access_proto,
            name_servers: Vec::new(),
            name_server_domain: None,
            endpoint: None,
            access_key,
            secret_key,
            security_token,
            instance_id,
            consumer_group,
            producer_group,
            consumer_batch_size: None,
            consumer_thread_nums,
            consume_batch_max_size: 1,
            retries: retries.unwrap_or(2),
            topics,
            send_timeout,
            timer_max_delay,
            consumer_model,
            from_where,
            consume_orderly,
            sql_filter: None,
            max_reconsume_times,
            max_in_flight,
            pull_threshold_for_queue: DEFAULT_PULL_THRESHOLD_FOR_QUEUE,
            pull_threshold_size_for_queue: DEFAULT_PULL_THRESHOLD_SIZE_FOR_QUEUE,
            pull_threshold_for_all: DEFAULT_PULL_THRESHOLD_FOR_TOPIC,
            max_send_batch: DEFAULT_MAX_SEND_BATCH,
            send_receipt,
            delivery_metadata,
            back_off,
            ignored_keys,
        })
    }

    /// Where the transport connects, for messages (no credentials: URL user-info is
    /// redacted).
    pub fn target(&self) -> String {
        let t = match self.access_proto {
            AccessProto::Http => self.endpoint.clone().unwrap_or_default(),
            AccessProto::Tcp => match &self.name_server_domain {
                Some(d) => d.clone(),
                None => self.name_servers.join(";"),
            },
        };
        crate::text::redact_userinfo(&t).into_owned()
    }
}

impl Settings {
    /// The effective value of a key after decoding, rendered the way `metadata.yaml` writes
    /// defaults (secrets are never rendered). `None` for keys without a value.
    pub fn effective(&self, key: &str) -> Option<String> {
        let q = |s: &str| format!("{s:?}");
        let dur = |d: Duration| {
            let ms = d.as_millis();
            if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
                q(&format!("{}h", ms / 3_600_000))
            } else if ms.is_multiple_of(1000) {
                q(&format!("{}s", ms / 1000))
            } else {
                q(&format!("{ms}ms"))
            }
        };
        Some(match key {
            "accessProto" => q(match self.access_proto {
                AccessProto::Tcp => "tcp",
                AccessProto::Http => "http",
            }),
            "consumerGroup" => q(&self.consumer_group),
            "producerGroup" => q(&self.producer_group),
            "consumerThreadNums" => self.consumer_thread_nums.to_string(),
            "consumeMessageBatchMaxSize" => self.consume_batch_max_size.to_string(),
            "retries" => self.retries.to_string(),
            "sendTimeout" => dur(self.send_timeout),
            "timerMaxDelay" => dur(self.timer_max_delay),
            "consumerModel" => q(match self.consumer_model {
                ConsumerModel::Clustering => "clustering",
                ConsumerModel::Broadcasting => "broadcasting",
            }),
            "fromWhere" => q(match self.from_where {
                FromWhere::LastOffset => "ConsumeFromLastOffset",
                FromWhere::FirstOffset => "ConsumeFromFirstOffset",
                FromWhere::Timestamp(_) => "ConsumeFromTimestamp",
            }),
            "consumeOrderly" => self.consume_orderly.to_string(),
            "rocketmq-sub-type" => q(if self.sql_filter.is_some() {
                "sql92"
            } else {
                "tag"
            }),
            "maxReconsumeTimes" => self.max_reconsume_times.to_string(),
            "maxInFlight" => self.max_in_flight.to_string(),
            "pullThresholdForQueue" => self.pull_threshold_for_queue.to_string(),
            "pullThresholdSizeForQueue" => self.pull_threshold_size_for_queue.to_string(),
            "pullThresholdForTopic" => self.pull_threshold_for_all.to_string(),
            "maxSendBatch" => self.max_send_batch.to_string(),
            "sendReceipt" => q(self.send_receipt.as_str()),
            "deliveryMetadata" => q(self.delivery_metadata.as_str()),
            "backOffPolicy" => q(&self.back_off.policy),
            "backOffDuration" => dur(self.back_off.duration),
            "backOffMaxRetries" => self.back_off.max_retries.to_string(),
            "consumerBatchSize" => self.consumer_batch_size?.to_string(),
            "instanceId" => q(self.instance_id.as_deref()?),
            "endpoint" => q(&crate::text::redact_userinfo(self.endpoint.as_deref()?)),
            "nameServerDomain" => q(&crate::text::redact_userinfo(
                self.name_server_domain.as_deref()?,
            )),
            "accessKey" => q(self.access_key.as_deref()?),
            _ => return None,
        })
    }
}

fn decode_back_off(p: &Props<'_>) -> Result<BackOff, MetadataError> {
    let mut b = BackOff::default();
    if let Some(v) = p.get("backOffPolicy") {
        b.configured = true;
        match v.to_ascii_lowercase().as_str() {
            "constant" | "exponential" => b.policy = v.to_ascii_lowercase(),
            _ => return Err(invalid("backOffPolicy", v, "`constant` or `exponential`")),
        }
    }
    if let Some(v) = p.get("backOffDuration") {
        b.configured = true;
        b.duration = parse_duration("backOffDuration", v)?;
    }
    for key in [
        "backOffInitialInterval",
        "backOffMaxInterval",
        "backOffMaxElapsedTime",
    ] {
        if let Some(v) = p.get(key) {
            b.configured = true;
            parse_duration(key, v)?;
        }
    }
    for key in ["backOffRandomizationFactor", "backOffMultiplier"] {
        if let Some(v) = p.get(key) {
            b.configured = true;
            match v.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => {}
                _ => return Err(invalid(key, v, "a non-negative number such as 1.5")),
            }
        }
    }
    if let Some(v) = p.get("backOffMaxRetries") {
        b.configured = true;
        b.max_retries = parse_int("backOffMaxRetries", v, -1, i64::from(i32::MAX))?;
    }
    Ok(b)
}

#[cfg(test)]
mod sql_filter_tests {
    use super::*;

    fn decode(kv: &[(&str, &str)]) -> Result<Settings, MetadataError> {
        let mut m: HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("topics".into()).or_insert_with(|| "t".into());
        Settings::decode(&m, Role::Input)
    }

    #[test]
    fn sql92_needs_an_expression_tcp_and_untagged_topics() {
        let tcp = [("nameServer", "h:1")];
        let ok = decode(&[
            tcp[0],
            ("rocketmq-sub-type", "SQL92"),
            ("rocketmq-sub-expression", " a > 1 "),
        ])
        .unwrap();
        assert_eq!(ok.sql_filter.as_deref(), Some("a > 1"));
        assert_eq!(decode(&[tcp[0]]).unwrap().sql_filter, None);
        let e = decode(&[tcp[0], ("rocketmq-sub-type", "sql92")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rocketmq-sub-expression"), "{e}");
        let e = decode(&[
            tcp[0],
            ("rocketmq-sub-type", "sql"),
            ("rocketmq-sub-expression", "a>1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rocketmq-sub-type") && e.contains("sql92"),
            "{e}"
        );
        let e = decode(&[tcp[0], ("rocketmq-sub-expression", "a > 1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("only with rocketmq-sub-type sql92"), "{e}");
        let e = decode(&[
            tcp[0],
            ("topics", "t||TagA"),
            ("rocketmq-sub-type", "sql92"),
            ("rocketmq-sub-expression", "a > 1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("topics without tags"), "{e}");
        let e = decode(&[
            ("accessProto", "http"),
            ("endpoint", "http://h.example:80"),
            ("accessKey", "a"),
            ("secretKey", "b"),
            ("rocketmq-sub-type", "sql92"),
            ("rocketmq-sub-expression", "a > 1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("no SQL92 filter"), "{e}");
    }
}

#[cfg(test)]
mod reserved_topic_tests {
    use super::*;

    #[test]
    fn broker_topics_are_refused_for_sends_and_named() {
        for t in [
            "%RETRY%orders-app",
            "%DLQ%orders-app",
            "%retry%x",
            "TBW102",
            "tbw102",
            "rmq_sys_wheel_timer",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "SCHEDULE_TOPIC_XXXX",
        ] {
            let e = check_send_topic(t).unwrap_err();
            assert!(e.contains(t) && e.contains("refused"), "{t}: {e}");
        }
        assert!(
            check_send_topic("%DLQ%g")
                .unwrap_err()
                .contains("dead-letter")
        );
        for t in ["orders", "MQ_INST_x%orders", "a|b", "RETRY"] {
            assert_eq!(check_send_topic(t), Ok(()), "{t}");
        }
        // Init: an output's `topics` follow the same rule; an input may read them (a DLQ).
        for t in ["%DLQ%x", "%RETRY%g", "TBW102"] {
            let m: HashMap<String, String> = [("nameServer", "127.0.0.1:9876"), ("topics", t)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let e = Settings::decode(&m, Role::Output).unwrap_err().to_string();
            assert!(
                e.contains("`topics`") && e.contains("output may send"),
                "{t}: {e}"
            );
            assert!(Settings::decode(&m, Role::Input).is_ok(), "{t}");
        }
        assert!(
            check_send_topic("has space")
                .unwrap_err()
                .contains("not a topic name")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn props(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tcp(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m = props(&[("nameServer", "127.0.0.1:9876"), ("topics", "t1")]);
        m.extend(props(extra));
        m
    }

    fn err(kv: HashMap<String, String>, role: Role) -> String {
        Settings::decode(&kv, role).unwrap_err().to_string()
    }

    #[test]
    fn send_receipt_values_in_any_case() {
        for (v, want) in [
            ("full", ReceiptMode::Full),
            ("ID", ReceiptMode::Id),
            ("None", ReceiptMode::None),
        ] {
            let s = Settings::decode(&tcp(&[("sendReceipt", v)]), Role::Output).unwrap();
            assert_eq!(s.send_receipt, want, "{v}");
            assert_eq!(
                s.effective("sendReceipt").unwrap(),
                format!("{:?}", want.as_str())
            );
        }
        let e = err(tcp(&[("sendReceipt", "offsets")]), Role::Output);
        assert!(e.contains("`sendReceipt`") && e.contains("`none`"), "{e}");
    }

    #[test]
    fn delivery_metadata_values_in_any_case() {
        for (v, want) in [
            ("full", DeliveryMetadata::Full),
            ("Basic", DeliveryMetadata::Basic),
        ] {
            let s = Settings::decode(&tcp(&[("deliveryMetadata", v)]), Role::Input).unwrap();
            assert_eq!(s.delivery_metadata, want, "{v}");
            assert_eq!(
                s.effective("deliveryMetadata").unwrap(),
                format!("{:?}", want.as_str())
            );
        }
        let e = err(tcp(&[("deliveryMetadata", "none")]), Role::Input);
        assert!(
            e.contains("`deliveryMetadata`") && e.contains("`basic`"),
            "{e}"
        );
    }

    #[test]
    fn defaults_for_minimal_tcp() {
        let s = Settings::decode(&tcp(&[]), Role::Input).unwrap();
        assert_eq!(s.access_proto, AccessProto::Tcp);
        assert_eq!(s.name_servers, vec!["127.0.0.1:9876"]);
        assert_eq!(s.consumer_group, DEFAULT_CONSUMER_GROUP);
        assert_eq!(s.producer_group, DEFAULT_PRODUCER_GROUP);
        assert_eq!(s.send_timeout, Duration::from_secs(3));
        assert_eq!(s.retries, 2);
        assert_eq!(s.max_reconsume_times, 16);
        assert_eq!(s.max_in_flight, 64);
        assert_eq!(s.send_receipt, ReceiptMode::Full);
        assert_eq!(s.delivery_metadata, DeliveryMetadata::Full);
        assert_eq!(s.consumer_model, ConsumerModel::Clustering);
        assert_eq!(s.from_where, FromWhere::LastOffset);
        assert!(!s.consume_orderly);
        assert_eq!(
            s.topics,
            vec![Subscription {
                topic: "t1".into(),
                expression: "*".into()
            }]
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_keys_ignored() {
        let kv = props(&[
            ("NAMESERVER", "127.0.0.1:9876"),
            ("Topics", "a"),
            ("direction", "input, output"),
            ("route", "/x"),
            ("consumergroup", "g1"),
        ]);
        let s = Settings::decode(&kv, Role::Input).unwrap();
        assert_eq!(s.consumer_group, "g1");
        assert_eq!(s.ignored_keys, vec!["direction", "route"]);
    }

    #[test]
    fn duplicate_keys_after_lowercasing_are_rejected() {
        let kv = tcp(&[("consumerGroup", "a"), ("CONSUMERGROUP", "b")]);
        let e = err(kv, Role::Input);
        assert!(
            e.contains("CONSUMERGROUP") && e.contains("consumerGroup"),
            "{e}"
        );
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn topics_with_tags_spaces_trimmed() {
        let s = Settings::decode(
            &tcp(&[("topics", " t1 || TagA || TagB , t2, t3||*")]),
            Role::Input,
        )
        .unwrap();
        assert_eq!(s.topics[0].topic, "t1");
        assert_eq!(s.topics[0].expression, "TagA||TagB");
        assert_eq!(s.topics[0].tags(), Some(vec!["TagA", "TagB"]));
        assert_eq!(s.topics[1].expression, "*");
        assert_eq!(s.topics[2].expression, "*");
        assert_eq!(s.topics[2].tags(), None);
    }

    #[test]
    fn topics_rejections_name_the_key_and_value() {
        for bad in ["bad topic", "t1||", "t1||a b", "t1,t1", "t1||*||a", "ü"] {
            let e = err(tcp(&[("topics", bad)]), Role::Input);
            assert!(e.contains("`topics`"), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn required_keys() {
        let e = err(props(&[("topics", "t")]), Role::Input);
        assert!(e.contains("`nameServer` is required"), "{e}");
        let e = err(props(&[("nameServer", "h:1")]), Role::Input);
        assert!(e.contains("`topics` is required"), "{e}");
        // Output does not need topics.
        Settings::decode(&props(&[("nameServer", "h:1")]), Role::Output).unwrap();
        // nameServerDomain replaces nameServer.
        Settings::decode(
            &props(&[("nameServerDomain", "http://127.0.0.1:8080/ns")]),
            Role::Output,
        )
        .unwrap();
        let e = err(props(&[("accessProto", "http")]), Role::Output);
        assert!(e.contains("`endpoint` is required"), "{e}");
        let e = err(
            props(&[
                ("accessProto", "http"),
                ("endpoint", "http://127.0.0.1:9880"),
            ]),
            Role::Output,
        );
        assert!(e.contains("`accessKey` is required"), "{e}");
    }

    #[test]
    fn name_server_forms() {
        let s = Settings::decode(
            &props(&[("nameServer", "http://a:9876; b:9877 ,c:1")]),
            Role::Output,
        )
        .unwrap();
        assert_eq!(s.name_servers, vec!["a:9876", "b:9877", "c:1"]);
        for bad in ["a", "a:", "a:0", "a:70000", "https://a:1/x"] {
            let e = err(props(&[("nameServer", bad)]), Role::Output);
            assert!(
                e.contains("`nameServer`") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_rejection_names_key_value_and_expectation() {
        let cases: &[(&str, &str)] = &[
            ("accessProto", "tcp-cgo"),
            ("consumerBatchSize", "0"),
            ("consumerBatchSize", "x"),
            ("consumerThreadNums", "-1"),
            ("consumeMessageBatchMaxSize", "0"),
            ("consumeMessageBatchMaxSize", "1025"),
            ("retries", "many"),
            ("sendTimeout", "3 parsecs"),
            ("sendTimeout", "0ms"),
            ("consumerModel", "fanout"),
            ("fromWhere", "yesterday"),
            ("consumeOrderly", "maybe"),
            ("maxReconsumeTimes", "-5"),
            ("maxInFlight", "0"),
            ("sendReceipt", "some"),
            ("deliveryMetadata", "all"),
            ("backOffPolicy", "linear"),
            ("backOffDuration", "soon"),
            ("backOffMaxRetries", "x"),
            ("backOffMultiplier", "-1"),
            ("nameServerDomain", "ftp://x"),
            ("consumerGroup", "has space"),
            ("instanceId", "bad/id"),
            ("consumerGroup", "DEFAULT_CONSUMER"),
            ("producerGroup", "DEFAULT_PRODUCER"),
        ];
        for (k, v) in cases {
            let e = err(tcp(&[(k, v)]), Role::Input);
            assert!(e.contains(&format!("`{k}`")), "{k}={v}: {e}");
            assert!(e.contains(&format!("{v:?}")), "{k}={v}: {e}");
            assert!(e.contains("expected"), "{k}={v}: {e}");
        }
    }

    #[test]
    fn http_batch_size_capped_at_16() {
        let base = [
            ("accessProto", "http"),
            ("endpoint", "http://127.0.0.1:9880"),
            ("accessKey", "ak"),
            ("secretKey", "sk"),
            ("topics", "t"),
        ];
        let mut kv = props(&base);
        kv.insert("consumerBatchSize".into(), "16".into());
        assert_eq!(
            Settings::decode(&kv, Role::Input)
                .unwrap()
                .consumer_batch_size,
            Some(16)
        );
        kv.insert("consumerBatchSize".into(), "17".into());
        let e = err(kv, Role::Input);
        assert!(e.contains("from 1 to 16"), "{e}");
    }

    #[test]
    fn http_has_no_broadcasting() {
        let kv = props(&[
            ("accessProto", "http"),
            ("endpoint", "http://127.0.0.1:9880"),
            ("accessKey", "ak"),
            ("secretKey", "sk"),
            ("topics", "t"),
            ("consumerModel", "broadcasting"),
        ]);
        let e = err(kv, Role::Input);
        assert!(
            e.contains("`consumerModel`") && e.contains("accessProto http"),
            "{e}"
        );
    }

    #[test]
    fn truthy_bools_and_durations() {
        for t in ["true", "TRUE", "yes", "on", "1", "t", "y"] {
            assert!(parse_bool("k", t).unwrap());
        }
        for f in ["false", "no", "off", "0", "f", "n"] {
            assert!(!parse_bool("k", f).unwrap());
        }
        assert_eq!(
            parse_duration("k", "1500").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("k", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("k", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("k", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("k", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        assert!(parse_duration("k", "5").is_ok());
        assert!(parse_duration("k", "s").is_err());
        assert!(parse_duration("k", "-1s").is_err());
        assert!(parse_duration("k", "1d").is_err());
    }

    #[test]
    fn from_where_timestamp_requires_consume_timestamp() {
        let e = err(tcp(&[("fromWhere", "ConsumeFromTimestamp")]), Role::Input);
        assert!(e.contains("`consumeTimestamp` is required"), "{e}");
        let e = err(
            tcp(&[
                ("fromWhere", "ConsumeFromTimestamp"),
                ("consumeTimestamp", "2026-01-01"),
            ]),
            Role::Input,
        );
        assert!(e.contains("`consumeTimestamp`"), "{e}");
        let s = Settings::decode(
            &tcp(&[
                ("fromWhere", "consumeFromTimestamp"),
                ("consumeTimestamp", "20260101120000"),
            ]),
            Role::Input,
        )
        .unwrap();
        assert_eq!(s.from_where, FromWhere::Timestamp("20260101120000".into()));
        let s = Settings::decode(
            &tcp(&[("fromWhere", "ConsumeFromFirstOffset")]),
            Role::Input,
        )
        .unwrap();
        assert_eq!(s.from_where, FromWhere::FirstOffset);
    }

    #[test]
    fn retries_feed_max_reconsume_times_like_the_go_binding() {
        let s = Settings::decode(&tcp(&[("retries", "3")]), Role::Input).unwrap();
        assert_eq!(s.retries, 3);
        assert_eq!(s.max_reconsume_times, 3);
        let s = Settings::decode(
            &tcp(&[("retries", "3"), ("maxReconsumeTimes", "-1")]),
            Role::Input,
        )
        .unwrap();
        assert_eq!(s.max_reconsume_times, 16);
    }

    #[test]
    fn back_off_keys_are_accepted() {
        let s = Settings::decode(
            &tcp(&[
                ("backOffPolicy", "exponential"),
                ("backOffDuration", "1s"),
                ("backOffInitialInterval", "500ms"),
                ("backOffMaxRetries", "3"),
                ("backOffMultiplier", "1.5"),
            ]),
            Role::Input,
        )
        .unwrap();
        assert!(s.back_off.configured);
        assert_eq!(s.back_off.policy, "exponential");
        assert_eq!(s.back_off.max_retries, 3);
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_errors() {
        let secret = "s3cr3t-VALUE-do-not-print";
        let s = Settings::decode(
            &tcp(&[
                ("accessKey", "ak"),
                ("secretKey", secret),
                ("securityToken", secret),
            ]),
            Role::Input,
        )
        .unwrap();
        assert_eq!(s.secret_key.as_ref().unwrap().expose_secret(), secret);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(secret), "{dbg}");
        assert!(dbg.contains("REDACTED"), "{dbg}");
        // A secret without its access key is an error that does not echo the secret.
        let e = err(tcp(&[("secretKey", secret)]), Role::Input);
        assert!(!e.contains(secret), "{e}");
        assert!(e.contains("`accessKey`"), "{e}");
    }
}
