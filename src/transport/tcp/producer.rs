//! The output transport: one producer, started once on the first `ping` (Init) or send.
//!
//! It holds only what sending needs: the shared `Client`, the producer, a gate that lets
//! `close` wait for sends in flight, the topics that
//! accepted a send (so a later "no route" reads as "broker down") and whether the last send
//! failed for want of a broker (a later success counts as a reconnect).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use rocketmq_client_rust::DefaultMQProducer;
use tokio::{
    sync::{OnceCell, RwLock, mpsc},
    time::Instant,
};

use super::coalesce::{self, Coalescer};
use super::{Client, DOMAIN_FETCH_TIMEOUT, START_TIMEOUT, acl, compat, errors, output, within};
use crate::transport::{Delivery, OutboundMessage, SendReceipt, Transport, TransportError};

/// The tcp output transport of one component instance.
pub(super) struct TcpProducer {
    client: Client,
    producer: OnceCell<DefaultMQProducer>,
    /// Held shared by every send in flight; `close` takes it exclusively before it shuts the
    /// producer down, so a send under way finishes first.
    in_flight: RwLock<()>,
    /// Topics that have accepted at least one send (a later "no route" means the broker is
    /// down, not that the topic is unknown).
    known_topics: Mutex<HashSet<String>>,
    /// The last send failed because no broker could be reached (a later success counts as a
    /// reconnect in the metrics).
    send_failing: AtomicBool,
    /// Concurrent sends of one topic leave as batches (`maxSendBatch`).
    coalescer: Arc<Coalescer>,
}

impl TcpProducer {
    pub(super) fn new(client: Client) -> TcpProducer {
        let coalescer = Coalescer::new(&client.instance, client.settings.max_send_batch as usize);
        TcpProducer {
            client,
            coalescer,
            producer: OnceCell::new(),
            in_flight: RwLock::new(()),
            known_topics: Mutex::new(HashSet::new()),
            send_failing: AtomicBool::new(false),
        }
    }

    /// The producer, started on first use by `deadline`; later calls return it at once.
    async fn producer(&self, deadline: Instant) -> Result<&DefaultMQProducer, TransportError> {
        self.producer.get_or_try_init(|| self.start(deadline)).await
    }

    async fn start(&self, deadline: Instant) -> Result<DefaultMQProducer, TransportError> {
        let c = &self.client;
        c.check_open()?;
        let (addrs, host, config) = c.prepare(within(DOMAIN_FETCH_TIMEOUT, deadline)).await?;
        let mut producer = output::build_producer(
            &host,
            config,
            &c.settings,
            Some(compat::hook(acl::hook(&c.settings))),
        );
        let wait = within(START_TIMEOUT, deadline);
        match tokio::time::timeout(wait, producer.start()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(errors::map(&e, &addrs.join(";"), None, false)),
            Err(_) => {
                return Err(TransportError::Unavailable {
                    address: addrs.join(";"),
                    reason: format!("producer did not start within {wait:?}"),
                });
            }
        }
        tracing::info!(instance = %c.instance, client = %c.client_name, "producer started");
        Ok(producer)
    }
}

#[async_trait]
impl Transport for TcpProducer {
    async fn ping(&self, deadline: Instant) -> Result<(), TransportError> {
        self.client.probe(deadline).await?;
        self.producer(deadline).await?;
        Ok(())
    }

    async fn send(&self, msg: OutboundMessage) -> Result<SendReceipt, TransportError> {
        let c = &self.client;
        c.check_open()?;
        let plan = output::plan(&msg, &c.settings)?;
        let producer = self.producer(Instant::now() + START_TIMEOUT).await?;
        let _sending = self.in_flight.read().await;
        c.check_open()?;
        let mut results = Vec::with_capacity(plan.len());
        for (i, one) in plan.into_iter().enumerate() {
            let topic = one.topic.clone();
            let known = self
                .known_topics
                .lock()
                .map(|k| k.contains(&topic))
                .unwrap_or(false);
            let compress_over = producer.compress_msg_body_over_howmuch() as usize;
            let sent = if self.coalescer.enabled() && coalesce::eligible(&one, compress_over) {
                self.coalescer
                    .send(producer, one, c.settings.send_timeout)
                    .await
            } else {
                output::send_one(producer, one, c.settings.send_timeout).await
            };
            let unavailable = matches!(sent, Err(output::SendFailure::TimedOut))
                || matches!(&sent, Err(output::SendFailure::Client(e))
                    if matches!(errors::map(e, &c.target(), Some(&topic), known), TransportError::Unavailable { .. }));
            if unavailable {
                self.send_failing.store(true, Ordering::Relaxed);
            } else if sent.is_ok() && self.send_failing.swap(false, Ordering::Relaxed) {
                crate::telemetry::metrics::reconnected(&c.instance, "tcp");
                tracing::info!(instance = %c.instance, "broker reachable again; sends succeed");
            }
            match sent {
                Ok(r) => {
                    if !known && let Ok(mut k) = self.known_topics.lock() {
                        k.insert(topic.clone());
                    }
                    results.push((topic, r));
                }
                Err(output::SendFailure::Client(e)) => {
                    let err = errors::map(&e, &c.target(), Some(&topic), known);
                    return Err(errors::partial(err, i, &results));
                }
                Err(output::SendFailure::TimedOut) => {
                    let err = TransportError::Unavailable {
                        address: c.target(),
                        reason: format!(
                            "no broker stored the message for topic `{topic}` within sendTimeout {:?}",
                            c.settings.send_timeout
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

    async fn subscribe(&self, _sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        self.client.check_open()?;
        Err(TransportError::Unsupported(
            "subscribe on an output binding instance".into(),
        ))
    }

    async fn close(&self, deadline: Instant) {
        let c = &self.client;
        if !c.begin_close() {
            return;
        }
        // Waits for a start in progress, then for the sends in flight, both until the deadline.
        let started = c.started_by(&self.producer, deadline).await;
        let drained = tokio::time::timeout_at(deadline, self.in_flight.write()).await;
        if drained.is_err() {
            tracing::warn!(instance = %c.instance, "sends still in flight at the close deadline");
        }
        if let Some(p) = started {
            // A clone shares the started producer (its state sits behind `Arc`s).
            let mut p = p.clone();
            if tokio::time::timeout_at(deadline, p.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(instance = %c.instance, "producer shutdown cut off at the close deadline");
            }
        }
        c.shutdown_host(deadline).await;
    }
}
