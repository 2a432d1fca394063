//! `dapr.proto.components.v1.InputBinding`: Init, Ping and the Read stream.
//!
//! A Read stream is a session between one daprd connection and one input instance:
//!
//! * it pulls deliveries from the instance's consumer while fewer than `maxInFlight` are
//!   unacknowledged on this stream (flow control; daprd itself has no limit);
//! * it sends each as a `ReadResponse` with a fresh `message_id`;
//! * acks (`ReadRequest`) arrive in any order and are matched by `message_id`: success
//!   confirms the message to the broker, an error releases it for redelivery; unknown or
//!   repeated ids are logged and ignored;
//! * it never ends because of broker trouble (the transport reconnects inside; daprd never
//!   re-opens a stream). It ends when daprd cancels it, the connection drops, or the daemon
//!   shuts down; every delivery still unacknowledged then is released for redelivery.
//! * If the instance is re-initialised while a stream is open, the stream follows the new
//!   instance. A stream whose instance closed with no working replacement (the new consumer
//!   failed to start) waits for the next input instance of any name to be installed
//!   ([`Instances::input_changes`]) and checks again; nothing ticks meanwhile.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt as _, Stream};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};

use super::{
    budget, instance_of,
    instances::{InputInstance, Instances},
    proto::{
        InputBindingInitRequest, InputBindingInitResponse, PingRequest, PingResponse, ReadRequest,
        ReadResponse, input_binding_server::InputBinding,
    },
};
use crate::{
    error::Error,
    telemetry::metrics,
    text::shown,
    transport::{Delivery, Settle, contract, keys},
};

/// daprd's gRPC client accepts at most 4 MiB per message; bigger deliveries are released
/// (and end in the DLQ after `maxReconsumeTimes`) rather than killing the stream.
pub const MAX_READ_RESPONSE: usize = 4 * 1024 * 1024 - 64 * 1024;

static STREAM_IDS: AtomicU64 = AtomicU64::new(1);

/// Shutdown policy shared by every Read stream.
#[derive(Clone)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    /// How long to wait for in-flight acks after shutdown began before releasing them.
    drain_timeout: Duration,
    /// The deadlines of the shutdown, once it began.
    plan: Arc<OnceLock<budget::Shutdown>>,
    /// Tracks Read sessions so shutdown can wait for them.
    tracker: TaskTracker,
}

impl Lifecycle {
    /// Read streams that drain in-flight acks for `drain_timeout` at shutdown.
    pub fn new(drain_timeout: Duration) -> Lifecycle {
        Lifecycle {
            shutdown: CancellationToken::new(),
            drain_timeout,
            plan: Arc::new(OnceLock::new()),
            tracker: TaskTracker::new(),
        }
    }

    /// Starts the shutdown at `now`: Read streams stop pulling and drain until the returned
    /// plan's `drain` deadline. Later calls return the first plan.
    pub fn begin_shutdown(&self, now: Instant) -> budget::Shutdown {
        let plan = *self
            .plan
            .get_or_init(|| budget::Shutdown::starting(now, self.drain_timeout));
        self.shutdown.cancel();
        self.tracker.close();
        plan
    }

    /// Whether the shutdown began.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Waits for every Read session to end.
    pub async fn sessions_ended(&self) {
        self.tracker.wait().await
    }

    /// The drain deadline (set before the shutdown token fires).
    fn drain_deadline(&self) -> Instant {
        self.plan
            .get()
            .map_or_else(|| Instant::now() + self.drain_timeout, |p| p.drain)
    }
}

/// The InputBinding service.
pub struct InputService {
    instances: Arc<Instances>,
    life: Lifecycle,
}

impl InputService {
    /// A service over `instances`.
    pub fn new(instances: Arc<Instances>, life: Lifecycle) -> Self {
        InputService { instances, life }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl InputBinding for InputService {
    async fn init(
        &self,
        req: Request<InputBindingInitRequest>,
    ) -> Result<Response<InputBindingInitResponse>, Status> {
        let name = instance_of(&req);
        let props = req.into_inner().metadata.unwrap_or_default().properties;
        self.instances
            .init_input(&name, &props)
            .await
            .inspect_err(|e| tracing::warn!(instance = %name, error = %e, "input Init failed"))?;
        Ok(Response::new(InputBindingInitResponse {}))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        req: Request<Streaming<ReadRequest>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let name = instance_of(&req);
        if self.life.shutting_down() {
            return Err(Error::ShuttingDown.into());
        }
        let inst = self.instances.input_for_read(&name)?;
        if let Err(e) = inst.ensure_subscribed().await {
            self.instances.stream_ended(&inst);
            return Err(e.into());
        }
        let cap = inst.common.settings.max_in_flight.clamp(1, 4096);
        let (tx, rx) = mpsc::channel(cap);
        let metrics =
            metrics::StreamMetrics::new(&name, inst.common.settings.access_proto.as_str());
        let session = Session {
            metrics,
            id: STREAM_IDS.fetch_add(1, Ordering::Relaxed),
            name,
            instances: self.instances.clone(),
            inst,
            life: self.life.clone(),
            pending: HashMap::new(),
            next: 0,
        };
        let acks = req.into_inner();
        self.life.tracker.spawn(session.run(acks, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let inst = self.instances.input(&instance_of(&req))?;
        inst.common.ping().await?;
        Ok(Response::new(PingResponse {}))
    }
}

/// One Read stream.
struct Session {
    id: u64,
    name: String,
    instances: Arc<Instances>,
    inst: Arc<InputInstance>,
    life: Lifecycle,
    /// Unacknowledged deliveries on this stream, by `message_id`.
    pending: HashMap<String, Settle>,
    next: u64,
    metrics: metrics::StreamMetrics,
}

impl Session {
    async fn run(
        mut self,
        mut acks: Streaming<ReadRequest>,
        tx: mpsc::Sender<Result<ReadResponse, Status>>,
    ) {
        tracing::info!(instance = %self.name, stream = self.id, "read stream opened");
        metrics::read_stream(&self.name, 1.0);
        let mut drain_until: Option<Instant> = None;
        // Whether the current instance was closed with no replacement yet.
        let mut orphaned = false;
        // Bumped whenever an input instance is installed: an orphaned stream looks again then.
        let mut installed = self.instances.input_changes();
        let shutdown = self.life.shutdown.clone();
        let end = loop {
            let inst = self.inst.clone();
            let max = inst.common.settings.max_in_flight;
            let can_pull = drain_until.is_none() && !orphaned && self.pending.len() < max;
            if drain_until.is_some() && self.pending.is_empty() {
                break "drained";
            }
            tokio::select! {
                biased;
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        self.settle(ack);
                        // Settle every ack that is already here before waking again.
                        while let Some(Ok(Some(ack))) = acks.message().now_or_never() {
                            self.settle(ack);
                        }
                    }
                    Ok(None) => break "daprd closed the stream",
                    Err(e) => {
                        tracing::debug!(instance = %self.name, stream = self.id, error = %e, "ack stream error");
                        break "ack stream broken";
                    }
                },
                _ = tx.closed() => break "daprd cancelled the stream",
                _ = shutdown.cancelled(), if drain_until.is_none() => {
                    tracing::info!(instance = %self.name, stream = self.id, in_flight = self.pending.len(), "shutdown: waiting for in-flight acks");
                    drain_until = Some(self.life.drain_deadline());
                }
                _ = sleep_until_opt(drain_until) => break "shutdown drain timeout",
                _ = inst.common.closed.cancelled(), if !orphaned => {
                    installed.borrow_and_update();
                    orphaned = !self.follow_replacement().await;
                }
                Ok(()) = installed.changed(), if orphaned => {
                    orphaned = !self.follow_replacement().await;
                }
                d = inst.next_delivery(), if can_pull => match d {
                    Some(d) => {
                        if !self.forward(d, &tx).await {
                            break "daprd cancelled the stream";
                        }
                        // Forward what is already buffered while the window allows.
                        let mut gone = false;
                        while self.pending.len() < max {
                            let Some(d) = inst.try_next_delivery() else { break };
                            if !self.forward(d, &tx).await {
                                gone = true;
                                break;
                            }
                        }
                        if gone {
                            break "daprd cancelled the stream";
                        }
                    }
                    None => {
                        // The consumer is closed (instance replaced or closed): wait for a
                        // replacement without spinning.
                        orphaned = true;
                    }
                },
            }
        };
        let released = self.pending.len();
        for (_, settle) in self.pending.drain() {
            settle.release(format!("read stream ended: {end}"));
        }
        self.metrics.abandoned(released, true);
        metrics::read_stream(&self.name, -1.0);
        tracing::info!(instance = %self.name, stream = self.id, reason = end, released, "read stream ended");
        self.instances.stream_ended(&self.inst);
    }

    /// Switches to a newer instance of the same name if there is one; true when the
    /// stream has a live consumer to pull from.
    async fn follow_replacement(&mut self) -> bool {
        match self.instances.attach_current(&self.name) {
            Some(newer) if !Arc::ptr_eq(&newer, &self.inst) => {
                // The stream counts on the newer instance from here, even if its consumer
                // fails to start (the next replacement is tried again).
                let old = std::mem::replace(&mut self.inst, newer.clone());
                old.detach();
                if let Err(e) = newer.ensure_subscribed().await {
                    tracing::warn!(instance = %self.name, stream = self.id, error = %e, "re-initialised consumer failed to start");
                    return false;
                }
                tracing::info!(instance = %self.name, stream = self.id, "read stream follows the re-initialised instance");
                true
            }
            Some(same) => {
                same.detach();
                false
            }
            None => false,
        }
    }

    /// Sends one delivery to daprd; false when the stream is gone.
    async fn forward(
        &mut self,
        d: Delivery,
        tx: &mpsc::Sender<Result<ReadResponse, Status>>,
    ) -> bool {
        let Delivery { message, settle } = d;
        if message.data.len() > MAX_READ_RESPONSE {
            tracing::error!(
                instance = %self.name,
                bytes = message.data.len(),
                "message larger than daprd accepts (4 MiB); released for redelivery / DLQ"
            );
            settle.release("message too large for daprd");
            self.metrics.abandoned(1, false);
            return true;
        }
        self.next += 1;
        let id = format!("{:x}-{}", self.id, self.next);
        // Read before `deliveryMetadata` may drop the key.
        let redelivery = message
            .metadata
            .get(keys::RECONSUME_TIMES)
            .is_some_and(|n| n != "0");
        let mode = self.inst.common.settings.delivery_metadata;
        let resp = ReadResponse {
            data: message.data,
            metadata: contract::delivery_for_app(message.metadata, mode),
            content_type: message.content_type.unwrap_or_default(),
            message_id: id.clone(),
        };
        self.pending.insert(id.clone(), settle);
        self.metrics.delivered(redelivery);
        if tx.send(Ok(resp)).await.is_err() {
            return false;
        }
        true
    }

    fn settle(&mut self, ack: ReadRequest) {
        match self.pending.remove(&ack.message_id) {
            Some(settle) => match ack.response_error {
                None => {
                    self.metrics.acked(true);
                    settle.confirm();
                }
                Some(err) => {
                    self.metrics.acked(false);
                    tracing::debug!(instance = %self.name, id = %shown(&ack.message_id), error = %shown(&err.message), "app failed: releasing for redelivery");
                    settle.release(err.message);
                }
            },
            None => tracing::warn!(
                instance = %self.name,
                stream = self.id,
                id = %shown(&ack.message_id),
                "ack for an unknown or already acknowledged message id; ignored"
            ),
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
