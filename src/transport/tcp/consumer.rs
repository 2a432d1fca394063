//! The input transport: one consumer, started once by `subscribe`.
//!
//! Concurrent inputs run the lite-pull consumer of `pull.rs`; orderly ones
//! (`consumeOrderly`) the crate's push consumer with the blocking listener of `input.rs`.
//! `ping` probes the name servers and, with `sqlFilter`, that the broker accepts SQL92.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer, MessageSelector};
use rocketmq_protocol::protocol::namespace_util::NamespaceUtil;
use tokio::{
    sync::{OnceCell, mpsc, watch},
    time::Instant,
};

use super::{
    CONSUMER_START_TIMEOUT, Client, PROBE_TIMEOUT, RELEASE_WAIT, SEND_BACK_GRACE, acl, compat,
    errors, input, names, probe, pull, within,
};
use crate::metadata::ConsumerModel;
use crate::transport::{Delivery, OutboundMessage, SendReceipt, Transport, TransportError};

/// The consumer once `subscribe` started it.
enum Running {
    /// Concurrent: the lite-pull consumer and our poll loop.
    Pull(Arc<pull::PullInput>),
    /// Orderly: the push consumer (taken by `close`) and its listener's state.
    Orderly {
        consumer: Mutex<Option<Box<DefaultMQPushConsumer>>>,
        listener: Arc<input::ListenerShared>,
    },
}

/// The tcp input transport of one component instance.
#[derive(Debug)]
pub(super) struct TcpConsumer {
    client: Client,
    running: OnceCell<Running>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Running::Pull(_) => "Pull",
            Running::Orderly { .. } => "Orderly",
        })
    }
}

fn already_subscribed() -> TransportError {
    TransportError::Unsupported("the consumer of this instance is already subscribed".into())
}

impl TcpConsumer {
    pub(super) fn new(client: Client) -> TcpConsumer {
        TcpConsumer {
            client,
            running: OnceCell::new(),
        }
    }

    async fn start(&self, sink: mpsc::Sender<Delivery>) -> Result<Running, TransportError> {
        self.client.check_open()?;
        if self.client.settings.consume_orderly {
            self.start_orderly(sink).await
        } else {
            self.start_pull(sink).await
        }
    }

    /// The orderly input: the crate's push consumer with a blocking listener (`input.rs`).
    async fn start_orderly(&self, sink: mpsc::Sender<Delivery>) -> Result<Running, TransportError> {
        let c = &self.client;
        let settings = &c.settings;
        let (addrs, host, config) = c.prepare(names::DOMAIN_FETCH_TIMEOUT_FULL).await?;
        let shared = Arc::new(input::ListenerShared {
            sink,
            closed: c.closed.clone(),
            group: input::consumer_group(settings),
            instance: c.instance.clone(),
            inflight: watch::Sender::new(0),
        });
        let mut consumer = input::build_consumer(
            &host,
            config,
            settings,
            Some(compat::hook(acl::hook(settings))),
        );
        for sub in &settings.topics {
            let subscribed = match &settings.sql_filter {
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
        consumer.register_message_listener_orderly(input::OrderlyListener(shared.clone()));
        start_within(consumer.start(), &addrs.join(";")).await?;
        tracing::info!(
            instance = %c.instance,
            client = %c.client_name,
            group = %input::consumer_group(settings),
            orderly = settings.consume_orderly,
            "consumer started"
        );
        Ok(Running::Orderly {
            consumer: Mutex::new(Some(Box::new(consumer))),
            listener: shared,
        })
    }

    /// The concurrent input: a lite-pull consumer with our own offsets (`pull.rs`).
    async fn start_pull(&self, sink: mpsc::Sender<Delivery>) -> Result<Running, TransportError> {
        let c = &self.client;
        let settings = &c.settings;
        let (addrs, host, config) = c.prepare(names::DOMAIN_FETCH_TIMEOUT_FULL).await?;
        let target = addrs.join(";");
        let hook = compat::hook(acl::hook(settings));
        let consumer = pull::build(&host, config, settings, hook.clone())
            .await
            .map_err(|e| errors::map(&e, &target, None, false))?;
        let send_back = if settings.consumer_model == ConsumerModel::Clustering {
            Some(pull::SendBack::start(&host, settings, vec![hook]).await?)
        } else {
            None
        };
        start_within(consumer.start(), &target).await?;
        let input = pull::PullInput::spawn(
            consumer,
            send_back,
            settings,
            &c.instance,
            sink,
            c.closed.clone(),
        );
        tracing::info!(
            instance = %c.instance,
            client = %c.client_name,
            group = %input::consumer_group(settings),
            max_in_flight = settings.max_in_flight,
            "pull consumer started"
        );
        Ok(Running::Pull(input))
    }
}

#[async_trait]
impl Transport for TcpConsumer {
    async fn ping(&self, deadline: Instant) -> Result<(), TransportError> {
        let addrs = self.client.probe(deadline).await?;
        let settings = &self.client.settings;
        if let Some(sql) = settings.sql_filter.as_deref() {
            let ns = settings
                .instance_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or_default();
            let wrap = |r: &str| NamespaceUtil::wrap_namespace(ns, r).to_string();
            let sub = probe::SqlSubscription {
                name_servers: &addrs,
                topics: settings.topics.iter().map(|t| wrap(&t.topic)).collect(),
                group: wrap(&input::consumer_group(settings)),
                expression: sql,
                hook: acl::hook(settings),
            };
            probe::check_sql92(&sub, within(PROBE_TIMEOUT, deadline)).await?;
        }
        Ok(())
    }

    async fn send(&self, _msg: OutboundMessage) -> Result<SendReceipt, TransportError> {
        self.client.check_open()?;
        Err(TransportError::Unsupported(
            "send on an input binding instance".into(),
        ))
    }

    async fn subscribe(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        self.client.check_open()?;
        if self.running.initialized() {
            return Err(already_subscribed());
        }
        let mut ran = false;
        self.running
            .get_or_try_init(|| {
                ran = true;
                self.start(sink)
            })
            .await?;
        if !ran {
            // Another call started it meanwhile.
            return Err(already_subscribed());
        }
        Ok(())
    }

    async fn close(&self, deadline: Instant) {
        let c = &self.client;
        // Unblocks every listener waiting on the app: they answer "reconsume later", so
        // nothing unconfirmed is committed.
        if !c.begin_close() {
            return;
        }
        match c.started_by(&self.running, deadline).await {
            Some(Running::Pull(p)) => p.close(RELEASE_WAIT, deadline).await,
            Some(Running::Orderly { consumer, listener }) => {
                // Let the released listener calls return and the client hand those messages
                // back to the broker (retry topic) before the consumer stops and persists its
                // offsets; otherwise a message still in its process queue holds the committed
                // offset back and acked messages behind it would be delivered again after a
                // restart.
                let mut running = listener.inflight.subscribe();
                let released = tokio::time::timeout(within(RELEASE_WAIT, deadline), async {
                    running.wait_for(|n| *n == 0).await.is_ok()
                })
                .await;
                if released.is_err() {
                    tracing::warn!(instance = %c.instance, "listener calls still running at close");
                }
                tokio::time::sleep(within(SEND_BACK_GRACE, deadline)).await;
                let consumer = consumer.lock().ok().and_then(|mut c| c.take());
                if let Some(mut consumer) = consumer
                    && tokio::time::timeout_at(deadline, consumer.shutdown())
                        .await
                        .is_err()
                {
                    tracing::warn!(instance = %c.instance, "consumer shutdown cut off at the close deadline");
                }
            }
            None => {}
        }
        c.shutdown_host(deadline).await;
    }
}

/// Starts a consumer (the crate's `start()` future) within [`CONSUMER_START_TIMEOUT`]; a
/// failure or a timeout names the name servers it was started against.
async fn start_within<F>(start: F, target: &str) -> Result<(), TransportError>
where
    F: std::future::Future<Output = Result<(), rocketmq_client_rust::ClientError>>,
{
    match tokio::time::timeout(CONSUMER_START_TIMEOUT, start).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(errors::map(&e, target, None, false)),
        Err(_) => Err(TransportError::Unavailable {
            address: target.to_string(),
            reason: format!("consumer did not start within {CONSUMER_START_TIMEOUT:?}"),
        }),
    }
}
