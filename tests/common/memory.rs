//! An in-memory broker implementing the transport trait: a test double for the Dapr
//! layer's own tests. It records what the Dapr layer asked of it (opens, sends,
//! subscribes, confirms, releases, closes, and the deadlines of pings and closes) so tests
//! can assert on the contract.
//!
//! The target (`nameServer`) chooses misbehaviour: `unreachable` fails ping at once; `hang`
//! never answers a ping but honours its deadline (an `Unavailable` error then); `slowping`
//! answers a ping after 3 s unless its deadline comes first; `stuck` never returns from ping,
//! deadline or not; `noclose` never returns from close; `nosubscribe` cannot subscribe.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rocketmq_binding::{
    metadata::{Role, Settings},
    transport::{
        Connector, Delivery, InboundMessage, OutboundMessage, Outcome, SendReceipt, Transport,
        TransportError, outcome,
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Stored {
    pub id: u64,
    pub topic: String,
    pub body: Bytes,
    pub deliveries: u32,
}

#[derive(Default)]
pub struct State {
    /// (cluster = settings.target() + namespace, topic) → queue.
    pub queues: HashMap<(String, String), VecDeque<Stored>>,
    pub confirmed: Vec<Stored>,
    pub released: Vec<(Stored, String)>,
    pub opens: Vec<(String, Role)>,
    pub subscribes: Vec<(String, Role)>,
    pub sends: Vec<(String, Role)>,
    pub closes: Vec<(String, Role)>,
    /// (instance, role, called at, deadline) of every ping.
    pub pings: Vec<(String, Role, Instant, Instant)>,
    /// (instance, role, deadline) of every close.
    pub close_deadlines: Vec<(String, Role, Instant)>,
    next_id: u64,
}

#[derive(Clone, Default)]
pub struct MemoryConnector {
    pub state: Arc<Mutex<State>>,
    /// Notified whenever a message is queued (a send or a release): consumers wait on it.
    queued: Arc<Notify>,
}

impl MemoryConnector {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
    pub fn confirmed_bodies(&self) -> Vec<String> {
        self.state()
            .confirmed
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect()
    }
    pub fn queued(&self) -> usize {
        self.state().queues.values().map(|q| q.len()).sum()
    }
}

fn cluster(s: &Settings) -> String {
    format!(
        "{}#{}",
        s.target(),
        s.instance_id.clone().unwrap_or_default()
    )
}

impl Connector for MemoryConnector {
    fn open(
        &self,
        instance: &str,
        settings: Arc<Settings>,
        role: Role,
    ) -> Result<Arc<dyn Transport>, TransportError> {
        self.state().opens.push((instance.to_string(), role));
        Ok(Arc::new(MemoryTransport {
            instance: instance.to_string(),
            role,
            settings,
            state: self.state.clone(),
            queued: self.queued.clone(),
            closed: CancellationToken::new(),
        }))
    }
}

pub struct MemoryTransport {
    instance: String,
    role: Role,
    settings: Arc<Settings>,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
    closed: CancellationToken,
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn ping(&self, deadline: Instant) -> Result<(), TransportError> {
        self.state.lock().unwrap().pings.push((
            self.instance.clone(),
            self.role,
            Instant::now(),
            deadline,
        ));
        let target = self.settings.target();
        let past_deadline = |address: String| TransportError::Unavailable {
            address,
            reason: "no answer by the deadline".into(),
        };
        if target.contains("unreachable") {
            return Err(TransportError::Unavailable {
                address: target,
                reason: "connection refused".into(),
            });
        }
        if target.contains("stuck") {
            std::future::pending::<()>().await;
        }
        if target.contains("hang") {
            tokio::time::sleep_until(deadline).await;
            return Err(past_deadline(target));
        }
        if target.contains("slowping") {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                _ = tokio::time::sleep_until(deadline) => return Err(past_deadline(target)),
            }
        }
        Ok(())
    }

    async fn send(&self, msg: OutboundMessage) -> Result<SendReceipt, TransportError> {
        let mut st = self.state.lock().unwrap();
        st.sends.push((self.instance.clone(), self.role));
        let topic = match msg.metadata.get("rocketmq-topic") {
            Some(t) => t.clone(),
            None => self
                .settings
                .topics
                .first()
                .map(|s| s.topic.clone())
                .ok_or_else(|| TransportError::InvalidRequest {
                    key: "rocketmq-topic".into(),
                    reason: "missing".into(),
                })?,
        };
        st.next_id += 1;
        let id = st.next_id;
        st.queues
            .entry((cluster(&self.settings), topic.clone()))
            .or_default()
            .push_back(Stored {
                id,
                topic: topic.clone(),
                body: msg.data,
                deliveries: 0,
            });
        drop(st);
        self.queued.notify_waiters();
        Ok(HashMap::from([
            ("rocketmq-message-id".to_string(), id.to_string()),
            ("rocketmq-topic".to_string(), topic),
        ]))
    }

    async fn subscribe(&self, sink: mpsc::Sender<Delivery>) -> Result<(), TransportError> {
        if self.settings.target().contains("nosubscribe") {
            return Err(TransportError::Unsupported(
                "this consumer cannot start".into(),
            ));
        }
        self.state
            .lock()
            .unwrap()
            .subscribes
            .push((self.instance.clone(), self.role));
        let state = self.state.clone();
        let settings = self.settings.clone();
        let closed = self.closed.clone();
        let queued = self.queued.clone();
        tokio::spawn(async move {
            let topics: Vec<String> = settings.topics.iter().map(|s| s.topic.clone()).collect();
            let cl = cluster(&settings);
            loop {
                // Registered before looking, so a message queued after the look wakes it.
                let woken = queued.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let next = {
                    let mut st = state.lock().unwrap();
                    topics.iter().find_map(|t| {
                        st.queues
                            .get_mut(&(cl.clone(), t.clone()))
                            .and_then(|q| q.pop_front())
                    })
                };
                let Some(mut m) = next else {
                    tokio::select! {
                        _ = closed.cancelled() => return,
                        _ = woken => continue,
                    }
                };
                m.deliveries += 1;
                let (d, rx) = Delivery::new(InboundMessage {
                    data: m.body.clone(),
                    metadata: HashMap::from([
                        ("rocketmq-topic".to_string(), m.topic.clone()),
                        ("rocketmq-message-id".to_string(), m.id.to_string()),
                        (
                            "rocketmq-reconsume-times".to_string(),
                            (m.deliveries - 1).to_string(),
                        ),
                    ]),
                    content_type: Some("text/plain".into()),
                });
                let st2 = state.clone();
                let cl2 = cl.clone();
                let queued2 = queued.clone();
                tokio::spawn(async move {
                    let out = outcome(rx).await;
                    let mut st = st2.lock().unwrap();
                    match out {
                        Outcome::Confirm => st.confirmed.push(m),
                        Outcome::Release { reason } => {
                            st.released.push((m.clone(), reason));
                            st.queues
                                .entry((cl2, m.topic.clone()))
                                .or_default()
                                .push_front(m);
                            drop(st);
                            queued2.notify_waiters();
                        }
                    }
                });
                tokio::select! {
                    _ = closed.cancelled() => return,
                    r = sink.send(d) => if r.is_err() { return },
                }
            }
        });
        Ok(())
    }

    async fn close(&self, deadline: Instant) {
        self.closed.cancel();
        {
            let mut st = self.state.lock().unwrap();
            st.closes.push((self.instance.clone(), self.role));
            st.close_deadlines
                .push((self.instance.clone(), self.role, deadline));
        }
        if self.settings.target().contains("noclose") {
            std::future::pending::<()>().await;
        }
    }
}
