//! `accessProto: tcp`: native RocketMQ remoting through `rocketmq-client-rust` 1.0.0.
//!
//! One [`TcpTransport`] serves one component instance and role. It owns its own client
//! runtime (`host::ClientHost`: a `ClientRuntime` with its own task group and blocking lanes,
//! on the daemon's Tokio runtime) and its own RocketMQ client, registered under a distinct
//! instance name (`dapr-<instance>-<role>-<pid>-<n>`), so two components never share a
//! connection, a route cache, a consumer or a message.
//!
//! # Output (`create`)
//!
//! The producer is started on the first `ping` (Init) or send. Request metadata
//! ([`crate::transport::keys`]):
//!
//! | key | effect |
//! |---|---|
//! | `rocketmq-topic` | target topic; when absent the message goes to every configured topic, one send each |
//! | `rocketmq-tag` | tag (`TAGS`), honoured in both cases; when absent and a `topics` entry names exactly one tag (`t\|\|TagA`), that tag |
//! | `rocketmq-key` | comma list → `KEYS` (RocketMQ separates keys with a space, so a key may not contain one) |
//! | `rocketmq-shardingkey` | `__SHARDINGKEY`; the queue is FNV-1a-32(key) mod queue count, the same queue rocketmq-client-go's `NewHashQueueSelector` picks |
//! | `rocketmq-delaylevel` | 4.x delay level 1–18 |
//! | `rocketmq-deliver-at` | deliver at this Unix time in milliseconds (5.x timer, `TIMER_DELIVER_MS`) |
//! | `rocketmq-deliver-after` | deliver after a duration (`90s`, `1m30s`, bare milliseconds) |
//! | `rocketmq-property-<name>` | user property `<name>` |
//! | `traceparent`, `tracestate`, `baggage` | stored as properties of the same name |
//!
//! At most one of the three delay keys may be given. Any other key (`user-agent`,
//! `content-type`, …) is not copied onto the message. A bad value is an `InvalidRequest`
//! naming the key; nothing is silently changed. Property names reserved by RocketMQ (`KEYS`,
//! `TAGS`, `UNIQ_KEY`, names starting with `__`, …) are rejected.
//!
//! The receipt holds `rocketmq-message-id` (the `UNIQ_KEY` consumers see), `rocketmq-topic`,
//! `rocketmq-queue-id`, `rocketmq-queue-offset`, `rocketmq-broker-name` and
//! `rocketmq-send-status` (`SEND_OK`, `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`,
//! `SLAVE_NOT_AVAILABLE`: the message was stored in every case). When one request fans out to
//! several topics each value is a comma list in topic order. `sendTimeout` bounds every send
//! (retries included); `retries` and `producerGroup` configure the producer.
//!
//! # Input
//!
//! `subscribe` starts one consumer per transport:
//!
//! * concurrent (the default): a lite-pull consumer driven by our own poll loop, with our own
//!   per-queue offsets and the broker's consumer send-back for failed messages (`pull.rs`).
//!   At most `maxInFlight` messages are out with the Dapr layer; no thread waits for an ack;
//!   a release (app error, dropped handle) is sent back, so the broker redelivers through
//!   `%RETRY%<consumerGroup>` with its backoff and, after `maxReconsumeTimes`, moves the
//!   message to `%DLQ%<consumerGroup>`;
//! * orderly (`consumeOrderly`): the crate's push consumer with a synchronous listener that
//!   blocks until the Dapr layer settles each message (`input.rs`): confirm → `SUCCESS`,
//!   release → `SUSPEND_CURRENT_QUEUE_A_MOMENT`.
//!
//! A message the app finally acks is never delivered again, except as a batch-mate of a
//! failed one when `consumeMessageBatchMaxSize` > 1.
//!
//! Delivery metadata: `rocketmq-topic`, `rocketmq-message-id` (`UNIQ_KEY`, else the broker's
//! offset id), `rocketmq-tag`, `rocketmq-keys` (comma list), `rocketmq-shardingkey`,
//! `rocketmq-queue-id`, `rocketmq-queue-offset`, `rocketmq-reconsume-times`,
//! `rocketmq-born-timestamp` (Unix ms), `rocketmq-consumer-group`, `rocketmq-broker-name`, user
//! properties as `rocketmq-property-<name>`, and `traceparent`/`tracestate`/`baggage`. Values
//! are safe as HTTP header values: control characters, non-ASCII bytes (UTF-8) and `%` are
//! percent-encoded; property names are limited to HTTP token characters the same way.
//!
//! # Connection settings
//!
//! `nameServer` (already split and stripped of `http://` by [`Settings`]) or
//! `nameServerDomain` (an address server URL: the binding GETs it and splits the body on `;`,
//! see [`names`]). `accessKey`/`secretKey`/`securityToken` sign every request like Java's
//! `AclClientRPCHook` (module `acl`). `instanceId` is set explicitly as the client namespace.
//! Secrets are never logged or put into errors.

mod acl;
mod compat;
mod errors;
pub mod host;
mod input;
pub mod names;
mod output;
pub mod probe;
mod pull;

/// [`output::plan`] for the crate's cross-transport unit tests.
#[cfg(test)]
pub(crate) fn plan_for_tests(
    msg: &crate::transport::OutboundMessage,
    settings: &Settings,
) -> Result<Vec<output::PlannedSend>, TransportError> {
    output::plan(msg, settings)
}

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::{ClientConfig, DefaultMQProducer, MQPushConsumer, MessageSelector};
use rocketmq_protocol::protocol::namespace_util::NamespaceUtil;
use tokio::sync::{Mutex, RwLock, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Delivery, OutboundMessage, SendReceipt, Transport, TransportError};
use crate::metadata::{Role, Settings};

pub use output::fnv1a_32;

/// How long a producer start may take before the attempt is reported as unavailable.
const START_TIMEOUT: Duration = Duration::from_secs(3);
/// Budget for fetching the `nameServerDomain` list within Init.
const DOMAIN_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Budget for one TCP reachability probe of a name server.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long `close` waits for released listener calls to return.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Time for the client to send released messages back before the consumer stops.
const SEND_BACK_GRACE: Duration = Duration::from_millis(300);
/// How long `close` waits for the consumer / producer to shut down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Opens a TCP transport for one instance and role. Cheap: no I/O, no threads; the client
/// runtime and clients start on first use.
pub fn open(
    instance: &str,
    settings: Arc<Settings>,
    role: Role,
) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(Arc::new(TcpTransport::new(instance, settings, role)))
}

/// A RocketMQ remoting client for one component instance and role.
pub struct TcpTransport {
    instance: String,
    settings: Arc<Settings>,
    role: Role,
    /// Distinct RocketMQ instance name (client id = `ip@<this>`).
    client_name: String,
    host: StdMutex<Option<Arc<host::ClientHost>>>,
    /// Resolved name server addresses (`nameServerDomain` fetched once successfully).
    resolved: Mutex<Option<Vec<String>>>,
    producer: RwLock<Option<DefaultMQProducer>>,
    producer_start: Mutex<()>,
    consumer: Mutex<Option<DefaultMQPushConsumer>>,
    /// The concurrent input (lite-pull consumer), when not orderly.
    pull: Mutex<Option<Arc<pull::PullInput>>>,
    /// The running consumer's listener state (close waits for in-flight listener calls).
    listener: StdMutex<Option<Arc<input::ListenerShared>>>,
    /// Topics that have accepted at least one send (a later "no route" means the broker is
    /// down, not that the topic is unknown).
    known_topics: StdMutex<HashSet<String>>,
    /// The last send failed because no broker could be reached (a later success counts as a
    /// reconnect in the metrics).
    send_failing: std::sync::atomic::AtomicBool,
    closed: CancellationToken,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("instance", &self.instance)
            .field("role", &self.role)
            .field("client_name", &self.client_name)
            .field("target", &self.settings.target())
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    fn new(instance: &str, settings: Arc<Settings>, role: Role) -> TcpTransport {
        let client_name = format!(
            "dapr-{}-{}-{}-{}",
            sanitize_name(instance),
            role,
            std::process::id(),
            CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        TcpTransport {
            instance: instance.to_string(),
            settings,
            role,
            client_name,
            host: StdMutex::new(None),
            resolved: Mutex::new(None),
            producer: RwLock::new(None),
            producer_start: Mutex::new(()),
            consumer: Mutex::new(None),
            pull: Mutex::new(None),
            listener: StdMutex::new(None),
            known_topics: StdMutex::new(HashSet::new()),
            send_failing: std::sync::atomic::AtomicBool::new(false),
            closed: CancellationToken::new(),
        }
    }

    /// Where we connect, for errors (no credentials).
    fn target(&self) -> String {
        self.settings.target()
    }

    fn host(&self) -> Result<Arc<host::ClientHost>, TransportError> {
        let mut guard = self.host.lock().map_err(|_| TransportError::Closed)?;
        if let Some(h) = guard.as_ref() {
            return Ok(h.clone());
        }
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let lane = match self.role {
            // Only the orderly (push) listener blocks a lane thread per delivery.
            Role::Input if self.settings.consume_orderly => {
                self.settings.consumer_thread_nums as usize
            }
            _ => 4,
        };
        let h = Arc::new(host::ClientHost::new(&self.client_name, lane)?);
        *guard = Some(h.clone());
        Ok(h)
    }

    /// The name server list: static, or fetched from `nameServerDomain` (cached once it worked).
    async fn name_servers(&self, fetch_timeout: Duration) -> Result<Vec<String>, TransportError> {
        if self.settings.name_server_domain.is_none() {
            return Ok(self.settings.name_servers.clone());
        }
        let mut guard = self.resolved.lock().await;
        if let Some(list) = guard.as_ref() {
            return Ok(list.clone());
        }
        let url = self
            .settings
            .name_server_domain
            .as_deref()
            .unwrap_or_default();
        let list = names::fetch_name_servers(url, fetch_timeout).await?;
        tracing::info!(instance = %self.instance, name_servers = %list.join(";"), "resolved nameServerDomain");
        *guard = Some(list.clone());
        Ok(list)
    }

    fn client_config(&self, name_servers: &[String]) -> Result<ClientConfig, TransportError> {
        let mut b = ClientConfig::builder()
            .namesrv_addr(name_servers.join(";"))
            .instance_name(self.client_name.clone());
        if let Some(ns) = self
            .settings
            .instance_id
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            b = b.namespace(ns.to_string());
        }
        b.build()
            .map_err(|e| TransportError::Unsupported(format!("client configuration: {e}")))
    }

    /// Starts the producer once; later calls return at once.
    async fn ensure_producer(&self) -> Result<(), TransportError> {
        if self.producer.read().await.is_some() {
            return Ok(());
        }
        let _start = self.producer_start.lock().await;
        if self.producer.read().await.is_some() {
            return Ok(());
        }
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let addrs = self.name_servers(DOMAIN_FETCH_TIMEOUT).await?;
        let host = self.host()?;
        let config = self.client_config(&addrs)?;
        let mut producer = output::build_producer(
            &host,
            config,
            &self.settings,
            Some(compat::hook(acl::hook(&self.settings))),
        );
        match tokio::time::timeout(START_TIMEOUT, producer.start()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(errors::map(&e, &addrs.join(";"), None, false)),
            Err(_) => {
                return Err(TransportError::Unavailable {
                    address: addrs.join(";"),
                    reason: format!("producer did not start within {START_TIMEOUT:?}"),
                });
            }
        }
        tracing::info!(instance = %self.instance, client = %self.client_name, "producer started");
        *self.producer.write().await = Some(producer);
        Ok(())
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn ping(&self) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let addrs = self.name_servers(DOMAIN_FETCH_TIMEOUT).await?;
        probe::probe_any(&addrs, PROBE_TIMEOUT).await?;
        if self.role == Role::Output {
            self.ensure_producer().await?;
        }
        if let (Role::Input, Some(sql)) = (self.role, self.settings.sql_filter.as_deref()) {
            let ns = self
                .settings
                .instance_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or_default();
            let wrap = |r: &str| NamespaceUtil::wrap_namespace(ns, r).to_string();
            let sub = probe::SqlSubscription {
                name_servers: &addrs,
                topics: self
                    .settings
                    .topics
                    .iter()
                    .map(|t| wrap(&t.topic))
                    .collect(),
                group: wrap(&input::consumer_group(&self.settings)),
                expression: sql,
                hook: acl::hook(&self.settings),
            };
            probe::check_sql92(&sub, PROBE_TIMEOUT).await?;
        }
        Ok(())
    }

    async fn send(&self, msg: OutboundMessage) -> Result<SendReceipt, TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        let plan = output::plan(&msg, &self.settings)?;
        self.ensure_producer().await?;
        let guard = self.producer.read().await;
        let producer = guard.as_ref().ok_or(TransportError::Closed)?;
        let mut results = Vec::with_capacity(plan.len());
        for (i, one) in plan.into_iter().enumerate() {
            let topic = one.topic.clone();
            let known = self
                .known_topics
                .lock()
                .map(|k| k.contains(&topic))
                .unwrap_or(false);
            let sent = output::send_one(producer, one, self.settings.send_timeout).await;
            let unavailable = matches!(sent, Err(output::SendFailure::TimedOut))
                || matches!(&sent, Err(output::SendFailure::Client(e))
                    if matches!(errors::map(e, &self.target(), Some(&topic), known), TransportError::Unavailable { .. }));
            if unavailable {
                self.send_failing.store(true, Ordering::Relaxed);
            } else if sent.is_ok() && self.send_failing.swap(false, Ordering::Relaxed) {
                crate::telemetry::metrics::reconnected(&self.instance, "tcp");
                tracing::info!(instance = %self.instance, "broker reachable again; sends succeed");
            }
            match sent {
                Ok(r) => {
                    if !known && let Ok(mut k) = self.known_topics.lock() {
                        k.insert(topic.clone());
                    }
                    results.push((topic, r));
                }
                Err(output::SendFailure::Client(e)) => {
                    let err = errors::map(&e, &self.target(), Some(&topic), known);
                    return Err(errors::partial(err, i, &results));
                }
                Err(output::SendFailure::TimedOut) => {
                    let err = TransportError::Unavailable {
                        address: self.target(),
                        reason: format!(
                            "no broker stored the message for topic `{topic}` within sendTimeout {:?}",
                            self.settings.send_timeout
                        ),
                    };
                    return Err(errors::partial(err, i, &results));
                }
                Err(output::SendFailure::NoResult) => {
                    let err = TransportError::Rejected(format!(
                        "the client returned no send result for topic `{topic}`"
                    ));
                    return Err(errors::partial(err, i, &results));
                }
            }
        }
        Ok(output::receipt(&results))
    }

    async fn subscribe(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        if !self.settings.consume_orderly {
            return self.subscribe_pull(sink).await;
        }
        let mut slot = self.consumer.lock().await;
        if slot.is_some() {
            return Err(TransportError::Unsupported(
                "the consumer of this instance is already subscribed".into(),
            ));
        }
        let addrs = self.name_servers(names::DOMAIN_FETCH_TIMEOUT_FULL).await?;
        let host = self.host()?;
        let config = self.client_config(&addrs)?;
        let shared = Arc::new(input::ListenerShared {
            sink,
            closed: self.closed.clone(),
            group: input::consumer_group(&self.settings),
            instance: self.instance.clone(),
            inflight: AtomicUsize::new(0),
        });
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(shared.clone());
        }
        let mut consumer = input::build_consumer(
            &host,
            config,
            &self.settings,
            Some(compat::hook(acl::hook(&self.settings))),
        );
        for sub in &self.settings.topics {
            let subscribed = match &self.settings.sql_filter {
                Some(sql) => {
                    consumer
                        .subscribe_with_selector(
                            sub.topic.as_str(),
                            Some(MessageSelector::by_sql(sql.as_str())),
                        )
                        .await
                }
                None => {
                    let expr = input::normalize_expression(&sub.expression);
                    consumer.subscribe(sub.topic.clone(), expr).await
                }
            };
            subscribed.map_err(|e| errors::map(&e, &addrs.join(";"), Some(&sub.topic), false))?;
        }
        consumer.register_message_listener_orderly(input::OrderlyListener(shared));
        match tokio::time::timeout(Duration::from_secs(10), consumer.start()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(errors::map(&e, &addrs.join(";"), None, false)),
            Err(_) => {
                return Err(TransportError::Unavailable {
                    address: addrs.join(";"),
                    reason: "consumer did not start within 10s".into(),
                });
            }
        }
        tracing::info!(
            instance = %self.instance,
            client = %self.client_name,
            group = %input::consumer_group(&self.settings),
            orderly = self.settings.consume_orderly,
            "consumer started"
        );
        *slot = Some(consumer);
        Ok(())
    }

    async fn close(&self) {
        if self.closed.is_cancelled() {
            return;
        }
        // Unblocks every listener waiting on the app: they answer "reconsume later", so
        // nothing unconfirmed is committed.
        self.closed.cancel();
        // Let the released listener calls return and the client hand those messages back to
        // the broker (retry topic) before the consumer stops and persists its offsets;
        // otherwise a message still in its process queue holds the committed offset back and
        // acked messages behind it would be delivered again after a restart.
        let listener = self.listener.lock().ok().and_then(|mut l| l.take());
        if let Some(l) = listener {
            let t = std::time::Instant::now();
            while l.inflight.load(Ordering::Acquire) > 0 && t.elapsed() < RELEASE_WAIT {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(SEND_BACK_GRACE).await;
        }
        let pull = self.pull.lock().await.take();
        if let Some(p) = pull {
            p.close(RELEASE_WAIT).await;
        }
        let consumer = self.consumer.lock().await.take();
        if let Some(mut c) = consumer
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, c.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(instance = %self.instance, "consumer shutdown timed out");
        }
        let _start = self.producer_start.lock().await;
        let producer = self.producer.write().await.take();
        if let Some(mut p) = producer
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, p.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(instance = %self.instance, "producer shutdown timed out");
        }
        let host = self.host.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = host {
            h.shutdown().await;
        }
        tracing::info!(instance = %self.instance, role = %self.role, "tcp transport closed");
    }
}

impl TcpTransport {
    /// The concurrent input: a lite-pull consumer with our own offsets (`pull.rs`).
    async fn subscribe_pull(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        let mut slot = self.pull.lock().await;
        if slot.is_some() {
            return Err(TransportError::Unsupported(
                "the consumer of this instance is already subscribed".into(),
            ));
        }
        let addrs = self.name_servers(names::DOMAIN_FETCH_TIMEOUT_FULL).await?;
        let host = self.host()?;
        let config = self.client_config(&addrs)?;
        let target = addrs.join(";");
        let hook = compat::hook(acl::hook(&self.settings));
        let consumer = pull::build(&host, config, &self.settings, hook.clone())
            .await
            .map_err(|e| errors::map(&e, &target, None, false))?;
        let send_back =
            if self.settings.consumer_model == crate::metadata::ConsumerModel::Clustering {
                Some(pull::SendBack::start(&host, &self.settings, vec![hook]).await?)
            } else {
                None
            };
        match tokio::time::timeout(Duration::from_secs(10), consumer.start()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(errors::map(&e, &target, None, false)),
            Err(_) => {
                return Err(TransportError::Unavailable {
                    address: target,
                    reason: "consumer did not start within 10s".into(),
                });
            }
        }
        let input = pull::PullInput::spawn(
            consumer,
            send_back,
            &self.settings,
            &self.instance,
            sink,
            self.closed.clone(),
        );
        tracing::info!(
            instance = %self.instance,
            client = %self.client_name,
            group = %input::consumer_group(&self.settings),
            max_in_flight = self.settings.max_in_flight,
            "pull consumer started"
        );
        *slot = Some(input);
        Ok(())
    }
}

/// Keeps `[A-Za-z0-9_-]` of an instance name for the RocketMQ instance name.
fn sanitize_name(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        "instance".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_distinct_and_safe() {
        let s = Arc::new(
            Settings::decode(
                &[("nameServer".to_string(), "127.0.0.1:9876".to_string())]
                    .into_iter()
                    .collect(),
                Role::Output,
            )
            .unwrap(),
        );
        let a = TcpTransport::new("my comp/1", s.clone(), Role::Output);
        let b = TcpTransport::new("my comp/1", s, Role::Output);
        assert_ne!(a.client_name, b.client_name);
        assert!(
            a.client_name.starts_with("dapr-my_comp_1-output-"),
            "{}",
            a.client_name
        );
        assert!(!format!("{a:?}").contains("secret"));
    }
}
