//! The transport seam: what the Dapr layer needs from a RocketMQ client, nothing more.
//!
//! A [`Connector`] opens one [`Transport`] per component instance and role. The Dapr layer
//! calls [`Transport::send`] for output bindings and [`Transport::subscribe`] for input
//! bindings; it never knows whether TCP remoting or the Aliyun HTTP API sits below.
//!
//! Deliveries carry a [`Settle`] handle. The transport confirms a message to the broker only
//! when the Dapr layer calls [`Settle::confirm`] (after the app's successful ack). A
//! [`Settle::release`], or dropping the handle (stream ended, daemon stopped), hands the
//! message back to the broker for redelivery. Nothing is confirmed by default.
//!
//! `accessProto` chooses the implementation: [`tcp`] (native remoting) or [`http`] (Aliyun MQ
//! HTTP API). [`DefaultConnector`] does that choice.

pub mod contract;
pub mod http;
pub mod limits;
pub mod tcp;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::metadata::{AccessProto, MetadataError, Role, Settings};

impl Settings {
    /// Decodes and validates the Init properties of an instance serving `role`: the common
    /// and Dapr-level keys ([`Settings::decode_with`]), then each transport's own keys by its
    /// config module, the selected transport's first.
    pub fn decode(raw: &HashMap<String, String>, role: Role) -> Result<Settings, MetadataError> {
        Settings::decode_with(raw, role, |proto| match proto {
            AccessProto::Tcp => &[tcp::config::decode, http::config::decode],
            AccessProto::Http => &[http::config::decode, tcp::config::decode],
        })
    }
}

/// A message the app asked to send (`InvokeRequest` with operation `create`).
#[derive(Debug, Clone, Default)]
pub struct OutboundMessage {
    /// Body bytes, unchanged.
    pub data: Bytes,
    /// Request metadata as daprd passed it (the transport picks the keys it knows).
    pub metadata: HashMap<String, String>,
}

/// What the broker said about a send; returned as `InvokeResponse.metadata`.
pub type SendReceipt = HashMap<String, String>;

/// A message received from the broker, ready to be handed to the app.
#[derive(Debug, Clone, Default)]
pub struct InboundMessage {
    /// Body bytes, unchanged.
    pub data: Bytes,
    /// Delivery metadata (topic, message id, tags, keys, properties, …); values header-safe.
    pub metadata: HashMap<String, String>,
    /// Content type, when the message carries one.
    pub content_type: Option<String>,
}

/// How the Dapr layer settled a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The app processed the message: confirm it to the broker.
    Confirm,
    /// The app failed, or the delivery was abandoned: the broker must redeliver it.
    Release {
        /// Why (the app's error message, "stream closed", "shutdown", …).
        reason: String,
    },
}

/// Settles one delivery exactly once. Dropping it unsettled releases the message.
#[derive(Debug)]
pub struct Settle {
    tx: Option<oneshot::Sender<Outcome>>,
}

impl Settle {
    /// Confirm the message to the broker (the app acked it successfully).
    pub fn confirm(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Outcome::Confirm);
        }
    }

    /// Hand the message back to the broker for redelivery.
    pub fn release(mut self, reason: impl Into<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Outcome::Release {
                reason: reason.into(),
            });
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Outcome::Release {
                reason: "delivery abandoned".into(),
            });
        }
    }
}

/// One message on its way to the app, with the handle that settles it.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: InboundMessage,
    /// Confirms or releases it.
    pub settle: Settle,
}

/// The transport side of a delivery: resolves when the Dapr layer settles it.
pub type OutcomeReceiver = oneshot::Receiver<Outcome>;

impl Delivery {
    /// A new delivery and the receiver the transport awaits. A closed receiver
    /// (`Err(_)`) means the same as [`Outcome::Release`].
    pub fn new(message: InboundMessage) -> (Delivery, OutcomeReceiver) {
        let (tx, rx) = oneshot::channel();
        (
            Delivery {
                message,
                settle: Settle { tx: Some(tx) },
            },
            rx,
        )
    }
}

/// Resolves a settle receiver into an outcome (a dropped handle is a release).
pub async fn outcome(rx: OutcomeReceiver) -> Outcome {
    rx.await.unwrap_or(Outcome::Release {
        reason: "delivery abandoned".into(),
    })
}

/// How long one step of `ping` or `close` may wait: its own `cap`, or what is left of
/// `deadline` when that is less (zero once the deadline passed).
pub fn within(cap: Duration, deadline: Instant) -> Duration {
    cap.min(deadline.saturating_duration_since(Instant::now()))
}

/// Transport failures. Mapped to gRPC codes in [`crate::error`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker / name server / endpoint cannot be reached.
    #[error("broker unavailable at {address}: {reason}")]
    Unavailable { address: String, reason: String },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?} (target {address})")]
    Timeout {
        what: &'static str,
        after: Duration,
        address: String,
    },
    /// The request metadata or body is not acceptable; names the key.
    #[error("request metadata `{}`: {reason}", crate::text::clipped(key))]
    InvalidRequest { key: String, reason: String },
    /// A Component (Init) metadata value the transport cannot use; names the key. Found when
    /// the transport is opened, so it reaches daprd as an Init error.
    #[error("Init metadata `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// The topic (or group) does not exist on the broker.
    #[error("{0}")]
    NotFound(String),
    /// Credentials were rejected.
    #[error("authentication failed at {address}: {reason}")]
    Unauthenticated { address: String, reason: String },
    /// The broker refused the request for another reason.
    #[error("broker rejected the request: {0}")]
    Rejected(String),
    /// The transport was closed (instance re-initialised or shutting down).
    #[error("transport closed")]
    Closed,
    /// This transport cannot serve this role/configuration.
    #[error("{0}")]
    Unsupported(String),
}

/// A client for one component instance and role.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Checks the broker is reachable (and, for output, readies the producer), returning by
    /// `deadline`: every step (name server fetch, probe, client start) fits in what is left,
    /// and a step that cannot is an error naming what did not answer. Called by Init and Ping
    /// with a deadline from the Dapr layer's budget (`dapr::budget`), which also cuts the
    /// call off at the deadline.
    async fn ping(&self, deadline: Instant) -> Result<(), TransportError>;

    /// Sends one message; returns the broker's receipt (message id, queue, offset, …).
    async fn send(&self, msg: OutboundMessage) -> Result<SendReceipt, TransportError>;

    /// Starts consuming the configured subscriptions into `sink`. Returns once consumption
    /// has started or its (re)connect loop is running; broker trouble afterwards is handled
    /// inside the transport and never closes `sink`. Called at most once per transport.
    async fn subscribe(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError>;

    /// Stops producing and consuming, returning by `deadline`; messages not yet confirmed
    /// are released. Waits (for sends in flight, listener calls, the client's shutdown) end
    /// at the deadline; what is left then is dropped. The Dapr layer passes one deadline to
    /// every transport it closes at once (shutdown), so their closes take no longer together
    /// than one.
    async fn close(&self, deadline: Instant);
}

/// Opens transports. The daemon uses [`DefaultConnector`]; tests of the Dapr layer may use
/// their own.
pub trait Connector: Send + Sync + 'static {
    /// Builds a transport for `settings` serving `role`. Must be cheap and must not do I/O
    /// (Init calls [`Transport::ping`] with a deadline for that).
    fn open(
        &self,
        instance: &str,
        settings: Arc<Settings>,
        role: Role,
    ) -> Result<Arc<dyn Transport>, TransportError>;
}

/// Chooses the transport by `accessProto`.
#[derive(Debug, Default, Clone)]
pub struct DefaultConnector;

impl Connector for DefaultConnector {
    fn open(
        &self,
        instance: &str,
        settings: Arc<Settings>,
        role: Role,
    ) -> Result<Arc<dyn Transport>, TransportError> {
        match settings.access_proto {
            AccessProto::Tcp => tcp::open(instance, settings, role),
            AccessProto::Http => http::open(instance, settings, role),
        }
    }
}

/// Request and delivery metadata keys shared by both transports.
pub mod keys {
    /// Target topic of a send.
    pub const TOPIC: &str = "rocketmq-topic";
    /// Tag of a sent message.
    pub const TAG: &str = "rocketmq-tag";
    /// Keys of a sent message (comma list).
    pub const KEY: &str = "rocketmq-key";
    /// Keys of a delivered message (comma list).
    pub const MESSAGE_KEYS: &str = "rocketmq-keys";
    /// Times a delivered message was consumed before (0 on its first delivery).
    pub const RECONSUME_TIMES: &str = "rocketmq-reconsume-times";
    /// Sharding key (ordered messages: same key, same queue).
    pub const SHARDING_KEY: &str = "rocketmq-shardingkey";
    /// 4.x delay level 1–18.
    pub const DELAY_LEVEL: &str = "rocketmq-delaylevel";
    /// Deliver at this Unix time in milliseconds.
    pub const DELIVER_AT: &str = "rocketmq-deliver-at";
    /// Deliver after this duration (Go syntax or milliseconds).
    pub const DELIVER_AFTER: &str = "rocketmq-deliver-after";
    /// Prefix of user properties: `rocketmq-property-<name>`.
    pub const PROPERTY_PREFIX: &str = "rocketmq-property-";
    /// W3C trace context keys carried as message properties.
    pub const TRACE_KEYS: [&str; 3] = ["traceparent", "tracestate", "baggage"];
}
