//! Coalescing of concurrent sends to one topic into batch sends (group commit, no added delay).
//!
//! Each topic of an output transport has a lane with at most [`LANE_IN_FLIGHT`] requests at
//! the broker. A send that finds a free slot and nobody waiting goes out at once, alone, as
//! before: at concurrency 1 nothing changes. A send that finds the lane busy waits; when a
//! request of the lane finishes, every waiting send (up to `maxSendBatch` messages and
//! [`MAX_BATCH_BYTES`]) leaves together as one `SEND_BATCH_MESSAGE`. So a batch forms only
//! from sends that would otherwise have queued behind the broker, and no send ever waits for
//! a batch to fill.
//!
//! Only messages a batch carries unchanged are coalesced ([`eligible`]): no sharding key (its
//! queue is chosen per message), no delay or timer property (a batch refuses them), and a body
//! under the producer's `compressMsgBodyOverHowmuch` (a message sent alone above it is
//! compressed; a batch's messages are not). Everything else is sent alone.
//!
//! What a caller of a batched send sees:
//! - its own receipt: its own message id (set before the batch is encoded; the crate keeps an
//!   id that is present), the batch's queue, and its own queue offset (the broker stores a
//!   batch's messages at consecutive offsets of one queue from the offset it returns);
//! - the batch's failure, if it failed: the broker stores a batch whole or not at all, so one
//!   error is every member's, and the producer's retries retry the batch;
//! - `sendTimeout` still bounds its wait: a send still waiting at its deadline is answered
//!   with a timeout and never sent, and a batch is sent with the shortest time left of its
//!   members.
//!
//! Behind a hung broker, the lane's two requests hold it until `sendTimeout`; the sends queued
//! meanwhile then leave as one batch, which the producer's latency fault tolerance sends to
//! another broker by then, or time out unsent at their deadline. (Letting them leave the
//! queue after 100 ms and go alone was tried: in `tests/tcp_cluster.rs`'s SIGSTOP case with
//! 16 callers it got 4 more creates through during the first 2.5 s but failed 16 instead of
//! 6, since those early sends went round robin to the hung broker too.)
//!
//! A batch is sent by a task of its own, so a caller that goes away (daprd cancelled the
//! call) does not cancel its batch-mates' send; a waiting send whose caller went away is
//! dropped before it is sent.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use rocketmq_client_rust::{DefaultMQProducer, SendResult};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_client_id_setter::MessageClientIDSetter;
use rocketmq_model::common::message::message_single::Message;
use tokio::{sync::oneshot, time::Instant};

use super::output::{self, PlannedSend, SendFailure};

/// Requests of one topic at the broker at a time; sends beyond wait and leave as one batch.
pub const LANE_IN_FLIGHT: usize = 2;
/// Bytes (bodies plus properties) of one batch at most, well under the broker's 4 MiB.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Whether `one` may travel in a batch: see the module docs.
pub fn eligible(one: &PlannedSend, compress_over: usize) -> bool {
    one.sharding_key.is_none() && !one.delayed && body_len(&one.message) < compress_over
}

/// A send waiting for its lane.
struct Waiting {
    message: Message,
    bytes: usize,
    deadline: Instant,
    reply: oneshot::Sender<Result<SendResult, SendFailure>>,
}

#[derive(Default)]
struct Lane {
    in_flight: usize,
    waiting: VecDeque<Waiting>,
}

/// What an output transport's sends go through; one per transport.
pub struct Coalescer {
    lanes: Mutex<HashMap<String, Lane>>,
    max_messages: usize,
    /// For the metrics.
    instance: String,
}

impl Coalescer {
    /// A coalescer sending batches of at most `max_messages` (1: every send alone).
    pub fn new(instance: &str, max_messages: usize) -> Arc<Coalescer> {
        Arc::new(Coalescer {
            lanes: Mutex::new(HashMap::new()),
            max_messages: max_messages.max(1),
            instance: instance.to_string(),
        })
    }

    /// Whether coalescing is on at all (`maxSendBatch` > 1).
    pub fn enabled(&self) -> bool {
        self.max_messages > 1
    }

    /// Sends an [`eligible`] message within `timeout`: at once if its lane is free, else in
    /// the next batch of its lane.
    pub async fn send(
        self: &Arc<Self>,
        producer: &DefaultMQProducer,
        one: PlannedSend,
        timeout: Duration,
    ) -> Result<SendResult, SendFailure> {
        let deadline = Instant::now() + timeout;
        // `Err(one)`: the lane had a free slot, send now; `Ok(rx)`: queued for a batch.
        let queued = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            let lane = lanes.entry(one.topic.clone()).or_default();
            if lane.in_flight < LANE_IN_FLIGHT && lane.waiting.is_empty() {
                lane.in_flight += 1;
                Err(one)
            } else {
                let (tx, rx) = oneshot::channel();
                lane.waiting.push_back(Waiting {
                    bytes: weight(&one.message),
                    message: one.message,
                    deadline,
                    reply: tx,
                });
                Ok(rx)
            }
        };
        let rx = match queued {
            Err(one) => return self.send_alone(producer, one, timeout).await,
            Ok(rx) => rx,
        };
        // The batch task answers by the member's deadline plus the send's own margin; the
        // extra time covers a task that never got the CPU.
        match tokio::time::timeout_at(deadline + Duration::from_secs(2), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SendFailure::NoResult),
            Err(_) => Err(SendFailure::TimedOut),
        }
    }

    /// Sends `one` alone in a slot of its lane already counted.
    async fn send_alone(
        self: &Arc<Self>,
        producer: &DefaultMQProducer,
        one: PlannedSend,
        timeout: Duration,
    ) -> Result<SendResult, SendFailure> {
        // Hands the slot on (to the sends that queued meanwhile) however this ends, also
        // when the caller goes away mid-send.
        let _slot = Slot {
            coalescer: Arc::clone(self),
            topic: one.topic.clone(),
            producer: producer.clone(),
        };
        output::send_one(producer, one, timeout).await
    }

    /// A request of `topic`'s lane finished: start the next batch with its slot, or free it.
    fn release(self: &Arc<Self>, topic: &str, producer: &DefaultMQProducer) {
        let batch = self.next_batch(topic);
        if batch.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (the process is ending): nothing is sent; the members' replies drop
            // (each caller gets "no result"), so do the rest's, and the slot is freed.
            drop(batch);
            while !self.next_batch(topic).is_empty() {}
            return;
        };
        let slot = Slot {
            coalescer: Arc::clone(self),
            topic: topic.to_string(),
            producer: producer.clone(),
        };
        rt.spawn(async move {
            send_batch(&slot.producer, &slot.coalescer.instance, batch).await;
            drop(slot);
        });
    }

    /// The batch that takes over a finished request's slot in `topic`'s lane; empty when
    /// nothing waits, and then the slot is freed (and the lane dropped once idle).
    fn next_batch(&self, topic: &str) -> Vec<Waiting> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lane) = lanes.get_mut(topic) else {
            return Vec::new();
        };
        let batch = self.take(lane);
        if batch.is_empty() {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            if lane.in_flight == 0 && lane.waiting.is_empty() {
                lanes.remove(topic);
            }
        }
        batch
    }

    /// The next batch of `lane`: waiting sends in order, up to the limits; sends whose caller
    /// went away are dropped, sends past their deadline answered with a timeout (not sent).
    fn take(&self, lane: &mut Lane) -> Vec<Waiting> {
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(w) = lane.waiting.front() {
            if w.reply.is_closed() {
                lane.waiting.pop_front();
                continue;
            }
            if w.deadline <= now {
                if let Some(w) = lane.waiting.pop_front() {
                    let _ = w.reply.send(Err(SendFailure::TimedOut));
                }
                continue;
            }
            if !batch.is_empty()
                && (batch.len() >= self.max_messages || bytes + w.bytes > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += w.bytes;
            if let Some(w) = lane.waiting.pop_front() {
                batch.push(w);
            }
        }
        batch
    }
}

/// A lane's slot, handed on when dropped.
struct Slot {
    coalescer: Arc<Coalescer>,
    topic: String,
    producer: DefaultMQProducer,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.coalescer.release(&self.topic, &self.producer);
    }
}

/// What a message weighs in a batch: body, properties and the per-message header.
fn weight(m: &Message) -> usize {
    let props: usize = m
        .get_properties()
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    body_len(m) + props + 64
}

fn body_len(m: &Message) -> usize {
    m.get_body().map_or(0, |b| b.len())
}

/// Sends `batch` (one message alone, as any send) and answers every member.
async fn send_batch(producer: &DefaultMQProducer, instance: &str, mut batch: Vec<Waiting>) {
    let now = Instant::now();
    let left = batch
        .iter()
        .map(|w| w.deadline.saturating_duration_since(now))
        .min()
        .unwrap_or_default();
    if batch.len() == 1 {
        let Some(w) = batch.pop() else { return };
        let one = PlannedSend {
            topic: w.message.topic().to_string(),
            message: w.message,
            sharding_key: None,
            delayed: false,
        };
        let _ = w.reply.send(output::send_one(producer, one, left).await);
        return;
    }
    let mut ids = Vec::with_capacity(batch.len());
    let mut messages = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for mut w in batch {
        MessageClientIDSetter::set_uniq_id(&mut w.message);
        ids.push(MessageClientIDSetter::get_uniq_id(&w.message));
        messages.push(w.message);
        replies.push(w.reply);
    }
    crate::telemetry::metrics::batch_sent(instance, "tcp", messages.len());
    match output::send_many(producer, messages, left).await {
        Ok(r) => {
            let offset_ids: Vec<&str> = r
                .offset_msg_id
                .as_deref()
                .map(|s| s.split(',').collect())
                .unwrap_or_default();
            let n = replies.len();
            for (i, (reply, id)) in replies.into_iter().zip(ids).enumerate() {
                let mut own = r.clone();
                own.msg_id = id;
                own.queue_offset = r.queue_offset + i as u64;
                own.offset_msg_id = (offset_ids.len() == n).then(|| offset_ids[i].to_string());
                let _ = reply.send(Ok(own));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(
        body: usize,
        deadline: Instant,
    ) -> (Waiting, oneshot::Receiver<Result<SendResult, SendFailure>>) {
        let (tx, rx) = oneshot::channel();
        let message = Message::builder()
            .topic("t")
            .body(vec![b'x'; body])
            .build()
            .unwrap();
        let w = Waiting {
            bytes: weight(&message),
            message,
            deadline,
            reply: tx,
        };
        (w, rx)
    }

    fn lane(ws: Vec<Waiting>) -> Lane {
        Lane {
            in_flight: LANE_IN_FLIGHT,
            waiting: ws.into(),
        }
    }

    #[tokio::test]
    async fn a_batch_takes_waiting_sends_in_order_up_to_the_count() {
        let c = Coalescer::new("i", 3);
        let later = Instant::now() + Duration::from_secs(5);
        let (ws, _rxs): (Vec<_>, Vec<_>) = (0..5).map(|i| waiting(10 + i, later)).unzip();
        let mut l = lane(ws);
        let b = c.take(&mut l);
        let sizes: Vec<usize> = b.iter().map(|w| body_len(&w.message)).collect();
        assert_eq!(sizes, [10, 11, 12]);
        assert_eq!(l.waiting.len(), 2);
        let b = c.take(&mut l);
        assert_eq!(b.len(), 2);
        assert!(c.take(&mut l).is_empty());
    }

    #[tokio::test]
    async fn a_batch_stays_under_its_byte_limit_but_always_takes_one() {
        let c = Coalescer::new("i", 64);
        let later = Instant::now() + Duration::from_secs(5);
        let big = MAX_BATCH_BYTES / 2;
        let (ws, _rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| waiting(big, later)).unzip();
        let mut l = lane(ws);
        assert_eq!(
            c.take(&mut l).len(),
            1,
            "two halves plus headers exceed the limit"
        );
        let (w, _rx) = waiting(MAX_BATCH_BYTES * 2, later);
        let mut l = lane(vec![w]);
        assert_eq!(
            c.take(&mut l).len(),
            1,
            "one oversized message still leaves (alone)"
        );
    }

    #[tokio::test]
    async fn expired_sends_time_out_unsent_and_abandoned_ones_are_dropped() {
        let c = Coalescer::new("i", 64);
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let (expired, expired_rx) = waiting(1, now);
        let (gone, gone_rx) = waiting(2, later);
        drop(gone_rx);
        let (kept, _kept_rx) = waiting(3, later);
        let mut l = lane(vec![expired, gone, kept]);
        let b = c.take(&mut l);
        assert_eq!(b.len(), 1);
        assert_eq!(body_len(&b[0].message), 3);
        assert!(matches!(expired_rx.await, Ok(Err(SendFailure::TimedOut))));
        assert!(l.waiting.is_empty());
    }

    #[tokio::test]
    async fn an_idle_lane_is_removed_and_its_slot_freed() {
        let c = Coalescer::new("i", 64);
        c.lanes.lock().unwrap().insert(
            "t".into(),
            Lane {
                in_flight: 1,
                ..Lane::default()
            },
        );
        assert!(c.next_batch("t").is_empty());
        assert!(
            c.lanes.lock().unwrap().is_empty(),
            "no lane left behind per topic"
        );
        // A lane with a waiting send keeps its slot for the batch.
        let (w, _rx) = waiting(1, Instant::now() + Duration::from_secs(5));
        c.lanes.lock().unwrap().insert("t".into(), lane(vec![w]));
        assert_eq!(c.next_batch("t").len(), 1);
        assert_eq!(c.lanes.lock().unwrap()["t"].in_flight, LANE_IN_FLIGHT);
    }

    #[test]
    fn only_plain_small_messages_are_eligible() {
        let m = |n: usize| {
            Message::builder()
                .topic("t")
                .body(vec![0; n])
                .build()
                .unwrap()
        };
        let p = |n, key: Option<&str>, delayed| PlannedSend {
            topic: "t".into(),
            message: m(n),
            sharding_key: key.map(str::to_string),
            delayed,
        };
        assert!(eligible(&p(1024, None, false), 4096));
        assert!(
            !eligible(&p(4096, None, false), 4096),
            "would be compressed alone"
        );
        assert!(!eligible(&p(10, Some("k"), false), 4096));
        assert!(!eligible(&p(10, None, true), 4096));
    }
}
