//! The concurrent input path: a lite-pull consumer, our own per-queue offsets and the
//! broker's consumer send-back. No thread waits for the app.
//!
//! # Why not the push consumer
//!
//! The crate's push listeners are synchronous: a listener call must return its verdict, so
//! each unacknowledged delivery parked a blocking thread until the app's ack came back over
//! the socket. Throughput was threads ÷ ack round trip, the consumer prefetched the backlog
//! into memory regardless of the app, and thousands of parked threads of one component could
//! starve another's. Here:
//!
//! * one task per transport polls the crate's `DefaultLitePullConsumer` (subscribe mode:
//!   the crate rebalances the group's queues between replicas, pulls ahead and keeps
//!   `fromWhere`) whenever a **credit** is free: `maxInFlight` credits per instance, one per
//!   unsettled message, so at most `maxInFlight` messages are out with the Dapr layer;
//! * every polled message is recorded as outstanding in its queue's [`QueueTrack`]; what is
//!   committed to the broker is always the lowest outstanding offset of the queue (or the
//!   next offset when none is outstanding), so nothing is confirmed before the app acked it,
//!   whatever order acks come in (auto-commit is off; progress is committed at most every
//!   [`COMMIT_EVERY`] after a delivery settled, and on close: an idle input commits nothing
//!   and wakes for nothing);
//! * a released delivery is handed back with the broker's `CONSUMER_SEND_MSG_BACK` (request
//!   code 36, exactly what the push consumer sends): the broker stores it in
//!   `%RETRY%<group>` with its delay level (3 + reconsume times), or in `%DLQ%<group>` after
//!   `maxReconsumeTimes`. The consumer subscribes `%RETRY%<group>` itself, as the push
//!   consumer does. When the send-back fails (broker gone) the message stays outstanding and
//!   is delivered again locally after [`LOCAL_RETRY_DELAY`] with its reconsume count raised,
//!   as the Java push consumer does;
//! * `consumeMessageBatchMaxSize` > 1 groups up to that many messages of one poll (one
//!   queue) into a batch: handed over together, confirmed when every one is acked, and sent
//!   back as a whole when any one fails (the documented semantics of the push path);
//! * on close, every queue's committable offset is stored with an answered
//!   `UPDATE_CONSUMER_OFFSET` (request code 15), sent again until its broker confirms it or
//!   the close deadline passes (the crate persists one way: a persist lost under load was lost
//!   for good); once confirmed, the crate's shutdown gets [`SHUTDOWN_AFTER_COMMIT`] instead of
//!   waiting out pulls parked in the broker's long poll (10 s per stop before);
//! * broadcasting: offsets are local (the crate's local file store) and a failed message is
//!   dropped with a warning, as the push consumer does in that model.
//!
//! Memory: the crate's cache holds at most `pullThresholdForQueue` messages and
//! `pullThresholdSizeForQueue` MiB per queue plus one pull, the Dapr layer at most
//! `maxInFlight` messages. The broker answers a pull with up to the pull batch size
//! (`consumerBatchSize`, 32) whatever the bodies weigh (32 × 1 MiB bodies = 32 MiB per
//! pull, measured: 357 MB of RSS for a 200 × 1 MiB backlog), so the first pull of each queue
//! asks for one app batch (`consumeMessageBatchMaxSize`, default 1) and the poll loop then sets the batch to what fits
//! `pullThresholdSizeForQueue` for the largest body of the last poll ([`fitted_batch`]; up
//! to `consumerBatchSize` for small bodies, never below one app batch): one queue then caches at most about twice that
//! threshold. A sudden burst of bodies much larger than the recent ones can overshoot by one
//! pull per queue before the batch shrinks. A body that arrived compressed is inflated by the
//! crate into an allocation of up to twice its length: it counts twice when the batch is
//! fitted ([`cached_weight`]) and is copied to its own length once polled ([`exact_body`]),
//! so each delivery held for the app costs its body, not twice that.
//!
//! Orderly consumption stays on the push consumer (`input.rs`): it needs the broker's queue
//! locks, which only the push consumer takes.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use bytes::Bytes;
use cheetah_string::CheetahString;
use rocketmq_client_rust::{ClientOptions, DefaultLitePullConsumer, MessageSelector};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::sys_flag::message_sys_flag::MessageSysFlag;
use rocketmq_protocol::protocol::header::consumer_send_msg_back_request_header::ConsumerSendMsgBackRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::TopicRequestHeader;
use rocketmq_protocol::protocol::header::update_consumer_offset_header::UpdateConsumerOffsetRequestHeader;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_protocol::protocol::namespace_util::NamespaceUtil;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use rocketmq_protocol::rpc::rpc_request_header::RpcRequestHeader;
use rocketmq_transport::api::{
    DefaultRequestProcessor, OutboundRequestOutcome, RPCHook, RemotingClient, TransportClientConfig,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::host::ClientHost;
use super::input::{consumer_group, inbound, normalize_expression};
use crate::metadata::{ConsumerModel, Settings};
use crate::transport::{Delivery, Outcome, TransportError, outcome};

/// How often, at most, acknowledged progress is committed (and persisted to the broker).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// A message whose send-back failed is delivered again locally after this long.
pub const LOCAL_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Budget of one send-back request (the Java push consumer's).
const SEND_BACK_TIMEOUT_MS: u64 = 5000;
/// How long one poll of the crate's cache waits for messages. Close does not wait for it (the
/// poll is dropped when the transport closes), so it only sets how often an idle input wakes.
const POLL_TIMEOUT_MS: u64 = 30_000;
/// First pause after a poll that returned nothing at once (the consumer is not running: the
/// crate says so only by returning empty); doubles up to [`POLL_BACKOFF_MAX`].
const POLL_BACKOFF_MIN: Duration = Duration::from_millis(100);
const POLL_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// `CONSUMER_SEND_MSG_BACK`.
const CONSUMER_SEND_MSG_BACK: i32 = 36;
/// `UPDATE_CONSUMER_OFFSET`.
const UPDATE_CONSUMER_OFFSET: i32 = 15;
/// Budget of one answered offset update at close (the close deadline cuts it shorter).
const STORE_OFFSET_TIMEOUT_MS: u64 = 1000;
/// Pause before the final commit is sent again to a broker that did not confirm it.
const FINAL_COMMIT_RETRY: Duration = Duration::from_millis(100);
/// What the crate's consumer shutdown gets once the brokers confirmed the final commit. Its pull
/// tasks sit in the broker's long poll (held up to 5 s at a time, the broker's hold-service
/// tick) and the shutdown waits 5 s for each such queue in turn, which made an input's close
/// take 10-13 s; what it would still do (persist offsets, unregister) is done or redundant:
/// the offsets are on the broker, and the broker drops the consumer when the client's
/// connections close, right after ([`super::host::ClientHost::shutdown`]).
const SHUTDOWN_AFTER_COMMIT: Duration = Duration::from_millis(500);
/// Property holding the original topic of a message in a retry topic.
const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Prefix of retry topics.
const RETRY_PREFIX: &str = "%RETRY%";

/// Outstanding offsets of one queue and the next offset after everything polled from it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueTrack {
    /// Offset → deliveries of it not yet settled (a re-pull after rebalance can add one).
    outstanding: BTreeMap<i64, u32>,
    /// One past the highest offset polled since the last re-pull.
    next: i64,
    /// What was last handed to the consumer's offset store.
    committed: Option<i64>,
    /// The broker the last poll of this queue came from (its messages' store host): where
    /// close stores the final commit.
    broker: Option<SocketAddr>,
}

impl QueueTrack {
    /// Records polled offsets (in queue order).
    pub fn polled(&mut self, offsets: &[i64]) {
        let Some(&first) = offsets.first() else {
            return;
        };
        // A poll never goes backwards within one assignment: a lower offset means the queue
        // was re-assigned or sought, and pulling restarted from the committed offset.
        if first < self.next {
            self.next = first;
        }
        for &o in offsets {
            *self.outstanding.entry(o).or_insert(0) += 1;
            self.next = self.next.max(o + 1);
        }
    }

    /// One delivery of `offset` is settled for good.
    pub fn done(&mut self, offset: i64) {
        if let Some(n) = self.outstanding.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&offset);
            }
        }
    }

    /// The offset that may be committed: nothing at or above it is confirmed yet.
    pub fn committable(&self) -> i64 {
        match self.outstanding.first_key_value() {
            Some((&o, _)) => o.min(self.next),
            None => self.next,
        }
    }
}

/// Per-queue progress of one consumer.
#[derive(Debug, Default)]
pub struct Tracker {
    queues: HashMap<MessageQueue, QueueTrack>,
}

impl Tracker {
    /// Records one poll of `queue`, served by `broker`.
    pub fn polled(&mut self, queue: &MessageQueue, offsets: &[i64], broker: SocketAddr) {
        let q = self.queues.entry(queue.clone()).or_default();
        q.polled(offsets);
        q.broker = Some(broker);
    }

    /// The broker `queue` was last polled from.
    pub fn broker_of(&self, queue: &MessageQueue) -> Option<SocketAddr> {
        self.queues.get(queue).and_then(|q| q.broker)
    }

    /// Settles one delivery.
    pub fn done(&mut self, queue: &MessageQueue, offset: i64) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.done(offset);
        }
    }

    /// Every queue's committable offset, moved or not (the final commit).
    pub fn take_all(&mut self) -> HashMap<MessageQueue, i64> {
        self.take(false)
    }

    /// Offsets that moved since the last call.
    pub fn take_moved(&mut self) -> HashMap<MessageQueue, i64> {
        self.take(true)
    }

    /// Marks every queue's committable offset as committed; returns those that moved (or all).
    fn take(&mut self, moved_only: bool) -> HashMap<MessageQueue, i64> {
        let mut out = HashMap::new();
        for (mq, q) in &mut self.queues {
            let c = q.committable();
            if !moved_only || q.committed != Some(c) {
                q.committed = Some(c);
                out.insert(mq.clone(), c);
            }
        }
        out
    }
}

/// The queue a polled message came from, as the consumer names it (no namespace).
fn queue_of(m: &MessageExt) -> MessageQueue {
    MessageQueue::from_parts(m.topic().clone(), m.broker_name.clone(), m.queue_id())
}

/// The topic the app sees: a message from the retry topic carries its original one.
fn real_topic(m: &MessageExt) -> Option<CheetahString> {
    if !m.topic().as_str().starts_with(RETRY_PREFIX) {
        return None;
    }
    MessageTrait::property(m, &RETRY_TOPIC.into()).filter(|t| !t.is_empty())
}

/// `consumerBatchSize`, the most messages one pull asks for (default 32).
fn pull_batch_size(settings: &Settings) -> i32 {
    i32::try_from(settings.consumer_batch_size.unwrap_or(32).max(1)).unwrap_or(32)
}

/// The first pull's batch: one app batch (`consumeMessageBatchMaxSize`, default 1), at most
/// `consumerBatchSize`.
fn first_pull_batch(settings: &Settings) -> i32 {
    i32::try_from(settings.consume_batch_max_size.max(1))
        .unwrap_or(1)
        .min(pull_batch_size(settings))
}

/// A decompressed body with an allocation of its own length.
///
/// The crate inflates a compressed body (producers compress bodies over 4 KiB by default)
/// with `read_to_end` into a growing `Vec`, so the body's allocation is up to twice its
/// length, and every delivery held for the app (up to `maxInFlight`) kept all of it:
/// measured with heaptrack on `tests/tcp_input_limits.rs` (400 × 1 MiB, `maxInFlight` 64),
/// 153 MB of the daemon's 243 MB heap peak were those allocations, VmHWM 229–291 MB against
/// the 167 MB the limit allows. One copy of a body the crate has just inflated costs far
/// less than the inflating did.
fn exact_body(mut m: Arc<MessageExt>) -> Arc<MessageExt> {
    if !inflated(&m) {
        return m;
    }
    let Some(exact) = MessageTrait::get_body(m.as_ref()).map(|b| Bytes::copy_from_slice(b)) else {
        return m;
    };
    // Unique once polled (the crate's cache let go of it); cloned otherwise.
    MessageTrait::set_body(Arc::make_mut(&mut m), exact);
    m
}

/// What one message of this kind weighs in the crate's cache: its body, or twice that when
/// it arrived compressed (the crate's cache holds the inflated body in an allocation of up
/// to twice its length; see [`exact_body`]).
fn cached_weight(m: &MessageExt) -> usize {
    let len = MessageTrait::get_body(m).map_or(0, |b| b.len());
    if inflated(m) {
        len.saturating_mul(2)
    } else {
        len
    }
}

/// Whether the message arrived compressed (the crate inflated its body on decoding).
fn inflated(m: &MessageExt) -> bool {
    m.sys_flag() & MessageSysFlag::COMPRESSED_FLAG != 0
}

/// The pull batch size that keeps one pull of messages as large as `largest` within
/// `budget` bytes (at least 1, at most `configured`). The broker answers a pull with up to
/// the batch size whatever the bodies weigh, and the cache thresholds are only checked
/// before a pull, so without this one pull of large messages could exceed them many times.
pub fn fitted_batch(configured: i32, budget: usize, largest: usize) -> i32 {
    let fit = budget / largest.max(1);
    i32::try_from(fit)
        .unwrap_or(i32::MAX)
        .clamp(1, configured.max(1))
}

/// Builds the lite-pull consumer (subscribed, not started).
pub async fn build(
    host: &ClientHost,
    config: rocketmq_client_rust::ClientConfig,
    settings: &Settings,
    hook: Arc<dyn RPCHook>,
) -> Result<DefaultLitePullConsumer, rocketmq_client_rust::ClientError> {
    let mut b = DefaultLitePullConsumer::builder(host.client_runtime())
        .client_options(ClientOptions::legacy(config))
        .consumer_group(consumer_group(settings))
        .message_model(match settings.consumer_model {
            ConsumerModel::Clustering => MessageModel::Clustering,
            ConsumerModel::Broadcasting => MessageModel::Broadcasting,
        })
        .pull_batch_size(
            i32::try_from(settings.consumer_batch_size.unwrap_or(32).max(1)).unwrap_or(32),
        )
        .pull_threshold_for_queue(i64::from(settings.pull_threshold_for_queue))
        .pull_threshold_size_for_queue(
            i32::try_from(settings.pull_threshold_size_for_queue).unwrap_or(i32::MAX),
        )
        .pull_threshold_for_all(i64::from(settings.pull_threshold_for_all))
        .auto_commit(false)
        .poll_timeout_millis(POLL_TIMEOUT_MS)
        .rpc_hook(hook);
    let (from, timestamp) = super::input::consume_from(settings);
    b = b.consume_from_where(from);
    if let Some(ts) = timestamp {
        b = b.consume_timestamp(ts);
    }
    let consumer = b.build()?;
    // The builder's value does not reach the first pulls (measured: 32 each); set it here.
    consumer
        .set_pull_batch_size(first_pull_batch(settings))
        .await;
    for sub in &settings.topics {
        match &settings.sql_filter {
            Some(sql) => {
                consumer
                    .subscribe_with_selector(
                        sub.topic.as_str(),
                        Some(MessageSelector::by_sql(sql.as_str())),
                    )
                    .await?
            }
            None => {
                consumer
                    .subscribe_with_expression(
                        sub.topic.as_str(),
                        &normalize_expression(&sub.expression),
                    )
                    .await?
            }
        }
    }
    if settings.consumer_model == ConsumerModel::Clustering {
        // What the push consumer subscribes by itself: redeliveries come from here.
        consumer
            .subscribe_with_expression(&format!("{RETRY_PREFIX}{}", consumer_group(settings)), "*")
            .await?;
    }
    Ok(consumer)
}

/// Sends released messages back to the broker (`CONSUMER_SEND_MSG_BACK`).
pub struct SendBack {
    client: Arc<RemotingClient<DefaultRequestProcessor>>,
    /// The group as the broker knows it (namespace applied).
    group: String,
    /// Namespace (`instanceId`) to apply to topics.
    namespace: Option<String>,
    max_reconsume_times: i32,
}

impl SendBack {
    /// A remoting client of its own on the transport's runtime, signed like the consumer.
    pub async fn start(
        host: &ClientHost,
        settings: &Settings,
        hooks: Vec<Arc<dyn RPCHook>>,
    ) -> Result<SendBack, TransportError> {
        let client = RemotingClient::builder(
            Arc::new(TransportClientConfig::default()),
            DefaultRequestProcessor,
            host.service_context("sendback"),
        )
        .build()
        .map_err(|e| TransportError::Unsupported(format!("send-back client: {e}")))?;
        for h in hooks {
            client.register_rpc_hook(h);
        }
        let client = Arc::new(client);
        client
            .start()
            .await
            .map_err(|e| TransportError::Unsupported(format!("send-back client: {e}")))?;
        let namespace = settings.instance_id.clone().filter(|s| !s.is_empty());
        let group = match &namespace {
            Some(ns) => NamespaceUtil::wrap_namespace(ns, consumer_group(settings)).to_string(),
            None => consumer_group(settings),
        };
        Ok(SendBack {
            client,
            group,
            namespace,
            max_reconsume_times: i32::try_from(settings.max_reconsume_times).unwrap_or(16),
        })
    }

    /// Hands one message back: the broker redelivers it through the retry topic, or moves it
    /// to the DLQ when its retries are used up.
    pub async fn send_back(&self, m: &MessageExt) -> Result<(), String> {
        let topic = self.broker_topic(&real_topic(m).unwrap_or_else(|| m.topic().clone()));
        let header = ConsumerSendMsgBackRequestHeader {
            offset: m.commit_log_offset(),
            group: CheetahString::from_string(self.group.clone()),
            delay_level: 0,
            origin_msg_id: Some(m.msg_id().clone()),
            origin_topic: Some(CheetahString::from_string(topic)),
            unit_mode: false,
            max_reconsume_times: Some(self.max_reconsume_times),
            rpc_request_header: Some(RpcRequestHeader {
                namespace: None,
                namespaced: None,
                broker_name: (!m.broker_name().is_empty())
                    .then(|| CheetahString::from_slice(m.broker_name())),
                oneway: None,
            }),
        };
        let request = RemotingCommand::create_request_command(CONSUMER_SEND_MSG_BACK, header);
        let addr = m.store_host();
        let r = self.call(addr, request, SEND_BACK_TIMEOUT_MS).await?;
        match r.code() {
            0 => Ok(()),
            _ => Err(refused(addr, &r)),
        }
    }

    /// Stores `offset` as this group's consume offset of `queue` (named as the consumer names
    /// it) on the broker at `addr`, and waits for the broker's answer.
    pub async fn store_offset(
        &self,
        addr: SocketAddr,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), String> {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: CheetahString::from_string(self.group.clone()),
            topic: CheetahString::from_string(self.broker_topic(queue.topic())),
            queue_id: queue.queue_id(),
            commit_offset: offset,
            topic_request_header: Some(TopicRequestHeader {
                lo: None,
                rpc: Some(RpcRequestHeader {
                    namespace: None,
                    namespaced: None,
                    broker_name: Some(queue.broker_name().clone()),
                    oneway: None,
                }),
            }),
        };
        let request = RemotingCommand::create_request_command(UPDATE_CONSUMER_OFFSET, header);
        let r = self.call(addr, request, STORE_OFFSET_TIMEOUT_MS).await?;
        match r.code() {
            0 => Ok(()),
            _ => Err(refused(addr, &r)),
        }
    }

    /// `topic` as the broker knows it (namespace applied).
    fn broker_topic(&self, topic: &str) -> String {
        match &self.namespace {
            Some(ns) => NamespaceUtil::wrap_namespace(ns, topic).to_string(),
            None => topic.to_string(),
        }
    }

    /// Sends `request` to the broker at `addr` and returns its response, whatever its code.
    async fn call(
        &self,
        addr: SocketAddr,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, String> {
        let target = CheetahString::from_string(addr.to_string());
        match self
            .client
            .invoke_request(Some(&target), request, timeout_ms)
            .await
        {
            Ok(OutboundRequestOutcome::Response(r)) => Ok(r),
            Ok(other) => Err(format!("broker {addr}: {other:?}")),
            Err(e) => Err(format!("broker {addr}: {e}")),
        }
    }

    /// Closes the client.
    pub fn shutdown(&self) {
        self.client.shutdown();
    }
}

/// A broker's refusal, with its code and remark.
fn refused(addr: SocketAddr, r: &RemotingCommand) -> String {
    format!(
        "broker {addr} answered {}: {}",
        r.code(),
        r.remark().map(|s| s.to_string()).unwrap_or_default()
    )
}

/// A running pull input.
pub struct PullInput {
    consumer: DefaultLitePullConsumer,
    send_back: Option<SendBack>,
    tracker: StdMutex<Tracker>,
    /// Notified when a delivery settled (progress to commit).
    progress: Notify,
    credit: Arc<Semaphore>,
    sink: mpsc::Sender<Delivery>,
    closed: CancellationToken,
    tasks: TaskTracker,
    group: String,
    instance: String,
    batch: usize,
    broadcasting: bool,
    /// The configured pull batch size (`consumerBatchSize`) and the per-queue cache budget in
    /// bytes (`pullThresholdSizeForQueue`): pulls shrink so that one pull fits the budget.
    pull_batch: i32,
    first_batch: i32,
    cache_bytes: usize,
    /// Batches to deliver again locally (their send-back failed); the poll loop hands them
    /// over before polling more.
    retry_tx: mpsc::UnboundedSender<Batch>,
}

/// One unit of settlement: messages handed over together, with their credits.
struct Batch {
    msgs: Vec<Arc<MessageExt>>,
    _credit: OwnedSemaphorePermit,
}

impl PullInput {
    /// Starts polling `consumer` (already started) into `sink`.
    pub fn spawn(
        consumer: DefaultLitePullConsumer,
        send_back: Option<SendBack>,
        settings: &Settings,
        instance: &str,
        sink: mpsc::Sender<Delivery>,
        closed: CancellationToken,
    ) -> Arc<PullInput> {
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let input = Arc::new(PullInput {
            consumer,
            send_back,
            tracker: StdMutex::new(Tracker::default()),
            progress: Notify::new(),
            credit: Arc::new(Semaphore::new(settings.max_in_flight.clamp(1, 65_536))),
            sink,
            closed,
            tasks: TaskTracker::new(),
            group: consumer_group(settings),
            instance: instance.to_string(),
            batch: settings.consume_batch_max_size.max(1) as usize,
            broadcasting: settings.consumer_model == ConsumerModel::Broadcasting,
            retry_tx,
            pull_batch: pull_batch_size(settings),
            first_batch: first_pull_batch(settings),
            cache_bytes: (settings.pull_threshold_size_for_queue as usize).saturating_mul(1 << 20),
        });
        let me = input.clone();
        input.tasks.spawn(me.clone().poll_loop(retry_rx));
        input.tasks.spawn(me.commit_loop());
        input
    }

    async fn poll_loop(self: Arc<Self>, mut retry_rx: mpsc::UnboundedReceiver<Batch>) {
        let mut batch_now = self.first_batch;
        let mut backoff = POLL_BACKOFF_MIN;
        loop {
            // One credit before polling (there is room for at least one message), the rest
            // for what the poll returned before handing it over. Local retries hold their
            // credits already.
            let first = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return,
                Some(b) = retry_rx.recv() => {
                    if !self.hand_over(b).await {
                        return;
                    }
                    continue;
                }
                p = self.credit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let started = Instant::now();
            // Cancelled only by close: a message polled and dropped then is never recorded,
            // so it is never committed either.
            let msgs = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return,
                m = self.consumer.poll_with_timeout_zero_copy(POLL_TIMEOUT_MS) => m,
            };
            if msgs.is_empty() {
                drop(first);
                if started.elapsed() < Duration::from_millis(POLL_TIMEOUT_MS / 2) {
                    // The consumer is not running (the crate has no signal for it coming
                    // back): back off instead of spinning.
                    tokio::select! {
                        _ = self.closed.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(POLL_BACKOFF_MAX);
                } else {
                    backoff = POLL_BACKOFF_MIN;
                }
                continue;
            }
            backoff = POLL_BACKOFF_MIN;
            let msgs: Vec<Arc<MessageExt>> = msgs.into_iter().map(exact_body).collect();
            let queue = queue_of(&msgs[0]);
            tracing::trace!(instance = %self.instance, count = msgs.len(), queue = %queue, "polled");
            let largest = msgs.iter().map(|m| cached_weight(m)).max().unwrap_or(0);
            // Never below one app batch: batches are formed from one poll.
            let fitted =
                fitted_batch(self.pull_batch, self.cache_bytes, largest).max(self.first_batch);
            if fitted != batch_now {
                tracing::debug!(instance = %self.instance, from = batch_now, to = fitted, largest, "pull batch size fitted to the cache budget");
                self.consumer.set_pull_batch_size(fitted).await;
                batch_now = fitted;
            }
            let offsets: Vec<i64> = msgs.iter().map(|m| m.queue_offset()).collect();
            let broker = msgs[0].store_host();
            if let Ok(mut t) = self.tracker.lock() {
                t.polled(&queue, &offsets, broker);
            }
            let mut first = Some(first);
            for chunk in msgs.chunks(self.batch) {
                let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                let credit = match first.take() {
                    Some(mut p) if n > 1 => {
                        let more = tokio::select! {
                            biased;
                            _ = self.closed.cancelled() => return,
                            m = self.credit.clone().acquire_many_owned(n - 1) => match m { Ok(m) => m, Err(_) => return },
                        };
                        p.merge(more);
                        p
                    }
                    Some(p) => p,
                    None => tokio::select! {
                        biased;
                        _ = self.closed.cancelled() => return,
                        m = self.credit.clone().acquire_many_owned(n) => match m { Ok(m) => m, Err(_) => return },
                    },
                };
                let batch = Batch {
                    msgs: chunk.to_vec(),
                    _credit: credit,
                };
                if !self.hand_over(batch).await {
                    return;
                }
            }
        }
    }

    /// Queues the batch's deliveries for the Dapr layer and starts waiting for their
    /// verdicts; false when the transport or the Dapr layer closed.
    async fn hand_over(self: &Arc<Self>, batch: Batch) -> bool {
        let mut outcomes = Vec::with_capacity(batch.msgs.len());
        for m in &batch.msgs {
            let mut msg = inbound(m, &self.group, "");
            if let Some(t) = real_topic(m) {
                msg.metadata.insert(
                    crate::transport::keys::TOPIC.to_string(),
                    super::input::header_value(t.as_str()),
                );
            }
            let (delivery, rx) = Delivery::new(msg);
            let sent = match self.sink.try_send(delivery) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(d)) => tokio::select! {
                    biased;
                    _ = self.closed.cancelled() => false,
                    r = self.sink.send(d) => r.is_ok(),
                },
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !sent {
                return false;
            }
            outcomes.push(outcome(rx));
        }
        let me = self.clone();
        self.tasks.spawn(async move {
            let settle = async {
                let mut ok = true;
                for o in outcomes {
                    if let Outcome::Release { reason } = o.await {
                        tracing::debug!(instance = %me.instance, %reason, "delivery released");
                        ok = false;
                    }
                }
                ok
            };
            let ok = tokio::select! {
                biased;
                ok = settle => ok,
                // Unsettled at close: stays outstanding, so it is never committed.
                _ = me.closed.cancelled() => return,
            };
            if ok {
                me.confirmed(&batch.msgs);
            } else {
                // Boxed: the send-back future is large, and inlining it made every delivery's
                // task (spawned per batch) that large too, copied in on each spawn.
                Box::pin(me.released(batch)).await;
            }
        });
        true
    }

    /// Confirms a batch whose every message was acked.
    fn confirmed(&self, msgs: &[Arc<MessageExt>]) {
        if let Ok(mut t) = self.tracker.lock() {
            for m in msgs {
                t.done(&queue_of(m), m.queue_offset());
            }
        }
        self.progress.notify_one();
    }

    /// Hands a batch with a failed message back to the broker.
    async fn released(self: &Arc<Self>, batch: Batch) {
        let mut again = Vec::new();
        if !self.broadcasting {
            for m in &batch.msgs {
                let sent = match &self.send_back {
                    Some(s) => s.send_back(m).await,
                    None => Err("no send-back client".into()),
                };
                if let Err(e) = sent {
                    tracing::warn!(instance = %self.instance, error = %e, "send-back failed; the message is delivered again locally");
                    again.push(m.clone());
                }
            }
        } else {
            tracing::warn!(instance = %self.instance, count = batch.msgs.len(), "broadcasting: a failed message is not redelivered");
        }
        if let Ok(mut t) = self.tracker.lock() {
            for m in &batch.msgs {
                if !again.iter().any(|a| Arc::ptr_eq(a, m)) {
                    t.done(&queue_of(m), m.queue_offset());
                }
            }
        }
        self.progress.notify_one();
        if again.is_empty() {
            return;
        }
        // Still outstanding (the offset is held) and still holding its credit: deliver it
        // again after a moment with its reconsume count raised.
        tokio::select! {
            _ = self.closed.cancelled() => return,
            _ = tokio::time::sleep(LOCAL_RETRY_DELAY) => {}
        }
        let msgs = again
            .into_iter()
            .map(|m| {
                let mut m = (*m).clone();
                m.set_reconsume_times(m.reconsume_times() + 1);
                Arc::new(m)
            })
            .collect();
        let retry = Batch {
            msgs,
            _credit: batch._credit,
        };
        let _ = self.retry_tx.send(retry);
    }

    /// Commits after a delivery settled, at most every [`COMMIT_EVERY`] (settles meanwhile
    /// join the next commit; a settle during a commit leaves a permit for the next round).
    async fn commit_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.closed.cancelled() => return,
                _ = self.progress.notified() => {}
            }
            tokio::select! {
                _ = self.closed.cancelled() => return,
                _ = tokio::time::sleep(COMMIT_EVERY) => {}
            }
            let _ = self.commit().await;
        }
    }

    /// Commits (and persists) the progress made since the last commit; returns it.
    pub async fn commit(&self) -> HashMap<MessageQueue, i64> {
        let map = match self.tracker.lock() {
            Ok(mut t) => t.take_moved(),
            Err(_) => return HashMap::new(),
        };
        if !map.is_empty() {
            self.consumer.commit_with_map(map.clone(), true).await;
        }
        map
    }

    /// The final commit: every queue's committable offset, not only what moved (a periodic
    /// commit was persisted one way and may be lost), handed to the consumer's offset store.
    /// The crate persists it only when broadcasting (its local file); otherwise
    /// [`Self::store_final`] stores it on the brokers.
    async fn commit_final(&self) -> HashMap<MessageQueue, i64> {
        let map = match self.tracker.lock() {
            Ok(mut t) => t.take_all(),
            Err(_) => return HashMap::new(),
        };
        if !map.is_empty() {
            self.consumer
                .commit_with_map(map.clone(), self.send_back.is_none())
                .await;
        }
        map
    }

    /// Stores the final commit on each queue's broker by `deadline`; whether every queue's
    /// broker confirmed it.
    ///
    /// The crate persists offsets one way (no answer, no retry), so a persist lost under load
    /// was lost for good and the acked messages came back after a restart. This sends each
    /// queue's offset as `UPDATE_CONSUMER_OFFSET` with an answer, on the group's own client,
    /// and sends it again every [`FINAL_COMMIT_RETRY`] until the broker confirms it. Queues
    /// the consumer no longer holds (a rebalance gave them to another replica, which commits
    /// them from now on) are skipped. Broadcasting offsets are the crate's local file, written
    /// before `commit` returns.
    async fn store_final(&self, committed: &HashMap<MessageQueue, i64>, deadline: Instant) -> bool {
        let Some(client) = &self.send_back else {
            return true;
        };
        if committed.is_empty() {
            return true;
        }
        let held = match tokio::time::timeout_at(deadline, self.consumer.assignment()).await {
            Ok(Ok(held)) => Some(held),
            _ => None,
        };
        // Every committed queue was polled, so its broker is known.
        let mut pending: Vec<(MessageQueue, i64, SocketAddr)> = match self.tracker.lock() {
            Ok(t) => committed
                .iter()
                .filter(|(q, _)| held.as_ref().is_none_or(|h| h.contains(*q)))
                .filter_map(|(q, o)| Some((q.clone(), *o, t.broker_of(q)?)))
                .collect(),
            Err(_) => return false,
        };
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let mut left = Vec::new();
            for (queue, offset, addr) in pending {
                let r =
                    tokio::time::timeout_at(deadline, client.store_offset(addr, &queue, offset))
                        .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(instance = %self.instance, queue = %queue, offset, attempt, error = %e, "final commit not stored yet");
                        left.push((queue, offset, addr));
                    }
                    Err(_) => return false,
                }
            }
            if !left.is_empty() {
                if Instant::now() + FINAL_COMMIT_RETRY >= deadline {
                    return false;
                }
                tokio::time::sleep(FINAL_COMMIT_RETRY).await;
            }
            pending = left;
        }
        tracing::debug!(instance = %self.instance, queues = committed.len(), attempt, "final commit stored");
        true
    }

    /// Stops polling and settling (unsettled messages stay uncommitted), commits what was
    /// confirmed, and shuts the consumer down, by `deadline`; send-backs under way get at most
    /// `release_wait` of it.
    pub async fn close(&self, release_wait: Duration, deadline: Instant) {
        self.tasks.close();
        let settling = crate::transport::within(release_wait, deadline);
        if tokio::time::timeout(settling, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!(instance = %self.instance, "settle tasks still running at close");
        }
        let stored = match tokio::time::timeout_at(deadline, self.commit_final()).await {
            Ok(committed) => self.store_final(&committed, deadline).await,
            Err(_) => {
                tracing::warn!(instance = %self.instance, "final commit cut off at the close deadline");
                false
            }
        };
        // Once the broker shows the final commit the crate's shutdown is only cleanup, which
        // waits for pulls parked in the broker's long poll: cut it short.
        let until = if stored {
            deadline.min(Instant::now() + SHUTDOWN_AFTER_COMMIT)
        } else {
            tracing::warn!(instance = %self.instance, "final commit not confirmed by the broker: the consumer shuts down in full");
            deadline
        };
        if tokio::time::timeout_at(until, self.consumer.shutdown())
            .await
            .is_err()
        {
            if stored {
                tracing::debug!(instance = %self.instance, "consumer shutdown cut short after the final commit was stored");
            } else {
                tracing::warn!(instance = %self.instance, "consumer shutdown cut off at the close deadline");
            }
        }
        if let Some(s) = &self.send_back {
            s.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_below_the_lowest_unsettled_offset() {
        let mut q = QueueTrack::default();
        q.polled(&[10, 11, 12, 13]);
        assert_eq!(q.committable(), 10);
        q.done(11);
        q.done(13);
        assert_eq!(
            q.committable(),
            10,
            "acks above an unsettled one commit nothing"
        );
        q.done(10);
        assert_eq!(q.committable(), 12);
        q.done(12);
        assert_eq!(q.committable(), 14);
    }

    #[test]
    fn a_re_pull_after_rebalance_moves_the_commit_back_only_to_what_is_outstanding() {
        let mut q = QueueTrack::default();
        q.polled(&[0, 1, 2]);
        q.done(0);
        q.done(1);
        q.done(2);
        assert_eq!(q.committable(), 3);
        // Reassigned: pulling restarts at the persisted offset 1.
        q.polled(&[1, 2]);
        assert_eq!(q.committable(), 1);
        q.done(2);
        q.done(1);
        assert_eq!(q.committable(), 3);
        // An old delivery still unsettled when the same offset is polled again: both count.
        q.polled(&[3]);
        q.polled(&[3]);
        q.done(3);
        assert_eq!(q.committable(), 3);
        q.done(3);
        assert_eq!(q.committable(), 4);
    }

    #[test]
    fn pulls_shrink_to_fit_the_cache_budget() {
        let mib = 1 << 20;
        assert_eq!(fitted_batch(32, 2 * mib, 1024), 32);
        assert_eq!(fitted_batch(32, 2 * mib, mib), 2);
        assert_eq!(fitted_batch(32, 2 * mib, 3 * mib), 1);
        assert_eq!(fitted_batch(32, 2 * mib, 0), 32);
        assert_eq!(fitted_batch(8, 2 * mib, 100 * 1024), 8);
    }

    /// An empty tracker, two queues of one broker, and that broker.
    fn two_queues() -> (Tracker, MessageQueue, MessageQueue, SocketAddr) {
        (
            Tracker::default(),
            MessageQueue::from_parts("T", "b", 0),
            MessageQueue::from_parts("T", "b", 1),
            SocketAddr::from(([127, 0, 0, 1], 10911)),
        )
    }

    #[test]
    fn only_moved_offsets_are_committed() {
        let (mut t, a, b, broker) = two_queues();
        t.polled(&a, &[5], broker);
        t.polled(&b, &[7], broker);
        assert_eq!(t.broker_of(&a), Some(broker));
        assert_eq!(t.take_moved().len(), 2);
        assert!(t.take_moved().is_empty());
        t.done(&a, 5);
        let c = t.take_moved();
        assert_eq!(c.len(), 1);
        assert_eq!(c[&a], 6);
    }

    #[test]
    fn the_final_commit_covers_queues_that_did_not_move() {
        let (mut t, a, b, broker) = two_queues();
        t.polled(&a, &[5, 6], broker);
        t.polled(&b, &[7], broker);
        t.done(&a, 5);
        t.done(&b, 7);
        // A periodic commit took both; its one-way persist may never have reached the broker.
        assert_eq!(t.take_moved().len(), 2);
        // The final one sends them again, at what may be committed now.
        let last = t.take_all();
        assert_eq!(last, HashMap::from([(a.clone(), 6), (b.clone(), 8)]));
        assert!(t.take_moved().is_empty());
    }

    #[test]
    fn retry_messages_show_their_original_topic() {
        let mut ext = MessageExt::default();
        let msg = rocketmq_model::common::message::message_single::Message::builder()
            .topic("%RETRY%g")
            .body_slice(b"b")
            .build()
            .unwrap();
        ext.set_message_inner(msg);
        // A system property: only the broker sets it (the builder refuses it).
        rocketmq_model::common::message::message_accessor::MessageAccessor::put_property(
            &mut ext,
            RETRY_TOPIC.into(),
            "orders".into(),
        );
        assert_eq!(real_topic(&ext).as_deref(), Some("orders"));
        let mut plain = MessageExt::default();
        plain.set_message_inner(
            rocketmq_model::common::message::message_single::Message::builder()
                .topic("orders")
                .body_slice(b"b")
                .build()
                .unwrap(),
        );
        assert_eq!(real_topic(&plain), None);
    }

    fn with_body(body: Bytes, sys_flag: i32) -> MessageExt {
        let mut ext = MessageExt::default();
        ext.set_message_inner(
            rocketmq_model::common::message::message_single::Message::builder()
                .topic("t")
                .body_slice(b"x")
                .build()
                .unwrap(),
        );
        MessageTrait::set_body(&mut ext, body);
        ext.set_sys_flag(sys_flag);
        ext
    }

    #[test]
    fn inflated_bodies_are_held_at_their_own_length() {
        let len = 300_000;
        // What `read_to_end` leaves: an allocation larger than the body.
        let mut grown = Vec::with_capacity(2 * len);
        grown.resize(len, 7u8);
        let ext = with_body(Bytes::from(grown), MessageSysFlag::COMPRESSED_FLAG);
        assert_eq!(
            cached_weight(&ext),
            2 * len,
            "weighed as the crate holds it"
        );
        let mut m = Arc::try_unwrap(exact_body(Arc::new(ext))).ok().unwrap();
        let body = MessageTrait::take_body(&mut m).unwrap();
        assert_eq!(body.len(), len);
        assert!(body.iter().all(|&b| b == 7));
        assert_eq!(body.try_into_mut().unwrap().capacity(), len);
    }

    #[test]
    fn bodies_that_arrived_plain_are_not_copied() {
        let body = Bytes::from(vec![1u8; 10_000]);
        let ptr = body.as_ptr();
        let ext = with_body(body, 0);
        assert_eq!(cached_weight(&ext), 10_000);
        let m = exact_body(Arc::new(ext));
        assert_eq!(MessageTrait::get_body(m.as_ref()).unwrap().as_ptr(), ptr);
    }
}
