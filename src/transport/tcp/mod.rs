//! `accessProto: tcp`: native RocketMQ remoting through `rocketmq-client-rust` 1.0.0.
//!
//! [`open`] gives one transport per component instance and role, split by role: the output
//! transport (`producer.rs`) holds only the producer, the input transport (`consumer.rs`) only
//! the consumer, and each starts it once, on first use (`tokio::sync::OnceCell`). What both
//! need (settings, name servers, client runtime) is `Client` here. Each transport owns its
//! own client runtime (`host::ClientHost`: a `ClientRuntime` with its own task group and
//! blocking lanes, on the daemon's Tokio runtime) and its own RocketMQ client, registered
//! under a distinct instance name (`dapr-<instance>-<role>-<pid>-<n>`), so two components
//! never share a connection, a route cache, a consumer or a message.
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
//! Concurrent sends of one topic are coalesced into batch sends (`coalesce.rs`,
//! `maxSendBatch`); each still gets its own receipt.
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
mod coalesce;
mod compat;
pub mod config;
mod consumer;
mod errors;
pub mod host;
mod input;
pub mod names;
mod output;
pub mod probe;
mod producer;
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
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rocketmq_client_rust::ClientConfig;
use tokio::{sync::OnceCell, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{Transport, TransportError, within};
use crate::metadata::{Role, Settings};

pub use output::fnv1a_32;

// Caps of single steps. `ping` and `close` get a deadline from the Dapr layer's budget; each
// step waits for the smaller of its cap and what is left of that deadline ([`within`]).

/// How long a producer start may take before the attempt is reported as unavailable (a send
/// that starts the producer waits this long; a `ping` no longer than its deadline).
const START_TIMEOUT: Duration = Duration::from_secs(3);
/// Budget for fetching the `nameServerDomain` list within Init.
const DOMAIN_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Budget for one reachability probe exchange with a name server.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long `close` waits for released deliveries to settle (listener calls to return, pull
/// settle tasks to end) before stopping the consumer.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// Time for the orderly client to send released messages back before the consumer stops.
const SEND_BACK_GRACE: Duration = Duration::from_millis(300);
/// How long a consumer start (on the first Read; no daprd deadline) may take.
const CONSUMER_START_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Opens a TCP transport for one instance and role: a `producer::TcpProducer` for output,
/// a `consumer::TcpConsumer` for input. Cheap: no I/O, no threads; the client runtime and
/// clients start on first use.
pub fn open(
    instance: &str,
    settings: Arc<Settings>,
    role: Role,
) -> Result<Arc<dyn Transport>, TransportError> {
    let client = Client::new(instance, settings, role);
    Ok(match role {
        Role::Output => Arc::new(producer::TcpProducer::new(client)),
        Role::Input => Arc::new(consumer::TcpConsumer::new(client)),
    })
}

/// What both roles share: the instance, its settings, one client runtime and the name
/// server list, each started once on first use.
struct Client {
    instance: String,
    settings: Arc<Settings>,
    role: Role,
    /// Distinct RocketMQ instance name (client id = `ip@<this>`).
    client_name: String,
    host: OnceCell<Arc<host::ClientHost>>,
    /// Resolved name server addresses (`nameServerDomain` fetched once successfully).
    resolved: OnceCell<Vec<String>>,
    closed: CancellationToken,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("instance", &self.instance)
            .field("role", &self.role)
            .field("client_name", &self.client_name)
            .field("target", &self.settings.target())
            .finish_non_exhaustive()
    }
}

impl Client {
    fn new(instance: &str, settings: Arc<Settings>, role: Role) -> Client {
        let client_name = format!(
            "dapr-{}-{}-{}-{}",
            sanitize_name(instance),
            role,
            std::process::id(),
            CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Client {
            instance: instance.to_string(),
            settings,
            role,
            client_name,
            host: OnceCell::new(),
            resolved: OnceCell::new(),
            closed: CancellationToken::new(),
        }
    }

    /// Where we connect, for errors (no credentials).
    fn target(&self) -> String {
        self.settings.target()
    }

    /// `Closed` once [`Client::close`] began.
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed);
        }
        Ok(())
    }

    /// The client runtime, built on first use.
    async fn host(&self) -> Result<Arc<host::ClientHost>, TransportError> {
        self.host
            .get_or_try_init(|| async {
                self.check_open()?;
                let lane = match self.role {
                    // Only the orderly (push) listener blocks a lane thread per delivery.
                    Role::Input if self.settings.consume_orderly => {
                        self.settings.consumer_thread_nums as usize
                    }
                    _ => 4,
                };
                Ok(Arc::new(host::ClientHost::new(&self.client_name, lane)?))
            })
            .await
            .cloned()
    }

    /// The name server list: static, or fetched from `nameServerDomain` (cached once it worked).
    async fn name_servers(&self, fetch_timeout: Duration) -> Result<Vec<String>, TransportError> {
        let Some(url) = self.settings.name_server_domain.as_deref() else {
            return Ok(self.settings.name_servers.clone());
        };
        self.resolved
            .get_or_try_init(|| async {
                let list = names::fetch_name_servers(url, fetch_timeout).await?;
                tracing::info!(instance = %self.instance, name_servers = %list.join(";"), "resolved nameServerDomain");
                Ok(list)
            })
            .await
            .cloned()
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

    /// What starting a client needs: the name servers, the client runtime and the client
    /// configuration.
    async fn prepare(
        &self,
        fetch_timeout: Duration,
    ) -> Result<(Vec<String>, Arc<host::ClientHost>, ClientConfig), TransportError> {
        let addrs = self.name_servers(fetch_timeout).await?;
        let host = self.host().await?;
        let config = self.client_config(&addrs)?;
        Ok((addrs, host, config))
    }

    /// Checks a name server answers (Init's and Ping's reachability probe), by `deadline`.
    async fn probe(&self, deadline: Instant) -> Result<Vec<String>, TransportError> {
        self.check_open()?;
        let addrs = self
            .name_servers(within(DOMAIN_FETCH_TIMEOUT, deadline))
            .await?;
        probe::probe_any(&addrs, PROBE_TIMEOUT, deadline).await?;
        Ok(addrs)
    }

    /// Begins closing (every start from now on fails with `Closed`); `false` when a close
    /// already began, so the caller has nothing left to do.
    fn begin_close(&self) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        self.closed.cancel();
        true
    }

    /// The role's client in `cell` once a start in progress ended, waiting for it until
    /// `deadline` (a start beginning now sees `closed` and fails); `None` when none started
    /// or it was still starting at the deadline.
    async fn started_by<'a, T>(&self, cell: &'a OnceCell<T>, deadline: Instant) -> Option<&'a T> {
        let init = cell.get_or_try_init(|| async { Err(TransportError::Closed) });
        match tokio::time::timeout_at(deadline, init).await {
            Ok(Ok(started)) => Some(started),
            Ok(Err(_)) => None,
            Err(_) => {
                tracing::warn!(instance = %self.instance, "client still starting at the close deadline");
                None
            }
        }
    }

    /// Shuts the client runtime down, after the role's clients have stopped, by `deadline`.
    async fn shutdown_host(&self, deadline: Instant) {
        if let Some(h) = self.host.get() {
            h.shutdown(deadline).await;
        }
        tracing::info!(instance = %self.instance, role = %self.role, "tcp transport closed");
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
        let a = Client::new("my comp/1", s.clone(), Role::Output);
        let b = Client::new("my comp/1", s, Role::Output);
        assert_ne!(a.client_name, b.client_name);
        assert!(
            a.client_name.starts_with("dapr-my_comp_1-output-"),
            "{}",
            a.client_name
        );
        assert!(!format!("{a:?}").contains("secret"));
    }

    /// `ping` fits its probe into the deadline it is given (one probe exchange alone may take
    /// `PROBE_TIMEOUT`, 1 s) and `close` of a transport that never started returns at once.
    #[tokio::test]
    async fn ping_returns_by_its_deadline_when_the_name_server_hangs() {
        // Accepts and never answers: a hung name server.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let raw = [
            ("nameServer".to_string(), format!("{addr};{addr}")),
            ("topics".to_string(), "t".to_string()),
        ]
        .into_iter()
        .collect();
        for role in [Role::Input, Role::Output] {
            let t = open("x", Arc::new(Settings::decode(&raw, role).unwrap()), role).unwrap();
            let t0 = Instant::now();
            let e = t.ping(t0 + Duration::from_millis(300)).await.unwrap_err();
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(800),
                "{role}: ping took {took:?}"
            );
            assert!(matches!(e, TransportError::Unavailable { .. }), "{e:?}");
            assert!(e.to_string().contains(&addr), "{e}");
            let t0 = Instant::now();
            t.close(t0 + Duration::from_secs(2)).await;
            assert!(t0.elapsed() < Duration::from_millis(500), "{role}: close");
        }
    }
}
