//! Component instances, keyed by daprd's `x-component-instance` header.
//!
//! Each Component YAML that uses this binding becomes one instance per direction: an
//! [`InputInstance`] (a consumer, started on the first Read) and/or an [`OutputInstance`]
//! (a producer). Input and output Init of the same name each decode the full metadata and
//! own separate transports, so an input-only Component never starts a producer and an
//! output-only one never starts a consumer. Re-Init of a name (Dapr hot reload, daprd
//! restart) swaps in the new instance and closes the old one's clients in the background.
//!
//! daprd never says that a Component was removed (hot reload, or a Component deleted while
//! daprd runs); it only closes what it used. So clients follow what daprd still holds:
//! - an output instance belongs to the socket connection that sent its Init (daprd dials one
//!   per Component and direction, and closes it when the Component goes away): when that
//!   connection closes, the producer closes, unless a newer Init replaced the instance. Its
//!   settings are kept: daprd's gRPC client also closes a connection that was idle for 30
//!   minutes and dials again for the next call, so an Invoke of that name on any connection
//!   opens a producer again with the same settings;
//! - an input instance whose last Read stream ended closes its consumer after the idle
//!   timeout (daprd cancels the stream of a removed Component but keeps its connection). It
//!   stays known: the next Read of that name starts a consumer again with the same settings,
//!   as after an app-health flip.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Mutex, mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::budget;
use crate::{
    error::Error,
    metadata::{Role, Settings},
    telemetry::metrics,
    transport::{Connector, Delivery, Transport},
};

/// How long an input instance keeps its consumer with no Read stream open, by default.
pub const DEFAULT_INPUT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of the `--max-instances` limit: Component instances (inputs plus outputs, dormant
/// ones included) one daemon holds. Measured cost: see the README's Reliability section.
pub const DEFAULT_MAX_INSTANCES: usize = 256;

/// The socket connection a request came on, numbered by the daemon in accept order
/// (daprd dials one connection per Component and direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Deliveries buffered between the transport and the Read streams (not yet sent to daprd,
/// so not yet in flight).
const DELIVERY_BUFFER: usize = 16;

/// What both kinds of instance share.
pub struct Common {
    /// The Component name.
    pub name: String,
    /// Decoded settings.
    pub settings: Arc<Settings>,
    /// The broker client for this instance and role.
    pub transport: Arc<dyn Transport>,
    /// Fired when the instance is replaced or closed.
    pub closed: CancellationToken,
}

impl Common {
    /// Ping: probes the broker within [`budget::PING`].
    pub async fn ping(&self) -> Result<(), Error> {
        let now = Instant::now();
        probe(
            &self.transport,
            &self.settings,
            "Ping",
            now,
            budget::ping_deadline(now),
        )
        .await
    }

    /// Closes the transport by `deadline` (cut off there if it overruns).
    async fn close(&self, deadline: Instant) {
        self.closed.cancel();
        close_by(&self.name, &self.transport, deadline).await;
    }
}

/// Pings `transport` with `deadline` and stops waiting for it there; `call` (Init, Ping) and
/// `started` name the call and its budget in the error.
async fn probe(
    transport: &Arc<dyn Transport>,
    settings: &Settings,
    call: &'static str,
    started: Instant,
    deadline: Instant,
) -> Result<(), Error> {
    match tokio::time::timeout_at(deadline, transport.ping(deadline)).await {
        Ok(r) => r.map_err(Error::Transport),
        Err(_) => Err(Error::ProbeTimeout {
            call,
            address: settings.target(),
            after: deadline.saturating_duration_since(started),
        }),
    }
}

/// Closes `transport` with `deadline`, and stops waiting for it there.
async fn close_by(name: &str, transport: &Arc<dyn Transport>, deadline: Instant) {
    if tokio::time::timeout_at(deadline, transport.close(deadline))
        .await
        .is_err()
    {
        tracing::warn!(
            instance = name,
            "transport did not close by its deadline; left behind"
        );
    }
}

/// An input binding instance: one consumer, shared by every Read stream over its life.
pub struct InputInstance {
    /// Name, settings, transport.
    pub common: Common,
    /// Deliveries from the transport; `None` until the first Read subscribes.
    queue: Mutex<Option<mpsc::Receiver<Delivery>>>,
    /// Read streams pulling from this instance now.
    streams: AtomicUsize,
}

impl InputInstance {
    fn new(common: Common) -> Self {
        InputInstance {
            common,
            queue: Mutex::new(None),
            streams: AtomicUsize::new(0),
        }
    }

    /// A Read stream starts pulling from this instance.
    pub fn attach(&self) {
        self.streams.fetch_add(1, Ordering::SeqCst);
    }

    /// A Read stream stops pulling; returns how many remain.
    pub fn detach(&self) -> usize {
        self.streams
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1)
    }

    /// Starts the consumer on first use (idempotent). Fails when the transport cannot
    /// consume with these settings; broker trouble later is the transport's to ride out.
    pub async fn ensure_subscribed(&self) -> Result<(), Error> {
        let mut queue = self.queue.lock().await;
        if queue.is_some() {
            return Ok(());
        }
        if self.common.closed.is_cancelled() {
            return Err(Error::Transport(crate::transport::TransportError::Closed));
        }
        let (tx, rx) = mpsc::channel(DELIVERY_BUFFER);
        self.common.transport.subscribe(tx).await.inspect_err(|e| {
            tracing::error!(instance = %self.common.name, error = %e, "consumer failed to start");
        })?;
        tracing::info!(instance = %self.common.name, "consumer started");
        *queue = Some(rx);
        Ok(())
    }

    /// A delivery that is ready now, without waiting (None if none is, or another stream is
    /// pulling).
    pub fn try_next_delivery(&self) -> Option<Delivery> {
        self.queue.try_lock().ok()?.as_mut()?.try_recv().ok()
    }

    /// The next delivery for a Read stream. `None` when the consumer is closed (instance
    /// replaced or shut down) or was never started.
    pub async fn next_delivery(&self) -> Option<Delivery> {
        let mut queue = self.queue.lock().await;
        queue.as_mut()?.recv().await
    }

    async fn close(&self, deadline: Instant) {
        self.common.close(deadline).await;
        // Buffered deliveries are dropped here, which releases them to the broker.
        if let Ok(mut q) = self.queue.try_lock() {
            q.take();
        }
    }
}

/// An output binding instance: one producer.
pub struct OutputInstance {
    /// Name, settings, transport.
    pub common: Common,
    /// The connection whose Init created it.
    owner: Option<ConnId>,
    /// Send metrics of this instance.
    pub metrics: metrics::SendMetrics,
}

/// A map from instance name to its current instance.
pub struct Registry<T> {
    map: RwLock<HashMap<String, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<T> Registry<T> {
    /// The current instance of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.map.read().expect("registry lock").get(name).cloned()
    }

    /// The current instance of `name`, after running `f` on it under the registry lock.
    fn with(&self, name: &str, f: impl FnOnce(&T)) -> Option<Arc<T>> {
        let map = self.map.read().expect("registry lock");
        let v = map.get(name)?;
        f(v);
        Some(v.clone())
    }

    /// Installs `inst` under `name`; returns the one it replaces.
    fn replace(&self, name: &str, inst: Arc<T>) -> Option<Arc<T>> {
        self.map
            .write()
            .expect("registry lock")
            .insert(name.to_string(), inst)
    }

    /// Removes `name` if `pred` holds for its current instance; returns it.
    fn remove_if(&self, name: &str, pred: impl FnOnce(&Arc<T>) -> bool) -> Option<Arc<T>> {
        let mut map = self.map.write().expect("registry lock");
        if map.get(name).is_some_and(pred) {
            return map.remove(name);
        }
        None
    }

    /// Removes and returns every instance for which `pred` holds.
    fn remove_where(&self, pred: impl Fn(&T) -> bool) -> Vec<(String, Arc<T>)> {
        let mut map = self.map.write().expect("registry lock");
        let names: Vec<String> = map
            .iter()
            .filter(|(_, v)| pred(v))
            .map(|(k, _)| k.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|k| map.remove(&k).map(|v| (k, v)))
            .collect()
    }

    /// Removes and returns every instance.
    fn drain(&self) -> Vec<Arc<T>> {
        self.map
            .write()
            .expect("registry lock")
            .drain()
            .map(|(_, v)| v)
            .collect()
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.map.read().expect("registry lock").len()
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All instances of the daemon plus what creating them needs.
pub struct Instances {
    connector: Arc<dyn Connector>,
    /// Input instances.
    pub inputs: Registry<InputInstance>,
    /// Output instances.
    pub outputs: Registry<OutputInstance>,
    /// Settings of input instances whose consumer was closed for want of a Read stream;
    /// locked before `inputs` whenever both are.
    dormant: std::sync::Mutex<HashMap<String, Arc<Settings>>>,
    /// Settings of output instances whose connection closed; locked before `outputs`.
    dormant_outputs: std::sync::Mutex<HashMap<String, Arc<Settings>>>,
    /// When the latest input Init of each name began: the output Init of the same Component
    /// shares daprd's budget with it ([`budget::init_deadline`]).
    input_init_started: std::sync::Mutex<HashMap<String, Instant>>,
    /// Bumped whenever an input instance is installed (Init, or a Read after idle): a Read
    /// stream left without a consumer waits on it instead of polling the registry.
    inputs_installed: watch::Sender<u64>,
    /// How long an input keeps its consumer without a Read stream.
    input_idle: Duration,
    /// Instances (inputs + outputs, dormant included) held at once.
    max_instances: usize,
}

impl Instances {
    /// An empty set of instances using `connector` for transports; an input without a Read
    /// stream closes its consumer after `input_idle`.
    pub fn new(connector: Arc<dyn Connector>, input_idle: Duration) -> Self {
        Instances {
            connector,
            inputs: Registry::default(),
            outputs: Registry::default(),
            dormant: std::sync::Mutex::new(HashMap::new()),
            dormant_outputs: std::sync::Mutex::new(HashMap::new()),
            input_init_started: std::sync::Mutex::new(HashMap::new()),
            inputs_installed: watch::Sender::new(0),
            input_idle,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }

    /// Sets how many instances (inputs plus outputs, dormant ones included) may exist at once;
    /// an Init that would add one more fails with `RESOURCE_EXHAUSTED`.
    pub fn with_max_instances(mut self, max: usize) -> Self {
        self.max_instances = max.max(1);
        self
    }

    /// A receiver that sees a change whenever an input instance is installed.
    pub fn input_changes(&self) -> watch::Receiver<u64> {
        self.inputs_installed.subscribe()
    }

    fn input_installed(&self) {
        self.inputs_installed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Instances held now, dormant ones included.
    pub fn count(&self) -> usize {
        let dormant = self.dormant.lock().map(|d| d.len()).unwrap_or(0)
            + self.dormant_outputs.lock().map(|d| d.len()).unwrap_or(0);
        self.inputs.len() + self.outputs.len() + dormant
    }

    /// Whether `name` exists in `role` (live or dormant): its re-Init adds nothing.
    fn exists(&self, name: &str, role: Role) -> bool {
        match role {
            Role::Input => {
                self.inputs.get(name).is_some()
                    || self.dormant.lock().is_ok_and(|d| d.contains_key(name))
            }
            Role::Output => {
                self.outputs.get(name).is_some()
                    || self
                        .dormant_outputs
                        .lock()
                        .is_ok_and(|d| d.contains_key(name))
            }
        }
    }

    /// When this Init of `name`/`role` began, and its probe's deadline: an input Init is
    /// remembered; an output Init shares daprd's budget with the input Init of the same
    /// Component just before it.
    fn init_clock(&self, name: &str, role: Role) -> (Instant, Instant) {
        let now = Instant::now();
        let mut started = self.input_init_started.lock().expect("init clock lock");
        // Forget Inits whose budget is over (bounds the map by the Inits of the last 5 s).
        started.retain(|_, t| now.saturating_duration_since(*t) < budget::DAPRD_INIT_TIMEOUT);
        let component_started = match role {
            Role::Input => {
                started.insert(name.to_string(), now);
                None
            }
            Role::Output => started.remove(name),
        };
        (now, budget::init_deadline(now, component_started))
    }

    /// Decodes, opens and probes a transport for `name`/`role` within Init's budget.
    async fn build(
        &self,
        name: &str,
        properties: &HashMap<String, String>,
        role: Role,
    ) -> Result<Common, Error> {
        let (started, deadline) = self.init_clock(name, role);
        let settings = Arc::new(Settings::decode(properties, role)?);
        if !self.exists(name, role) && self.count() >= self.max_instances {
            return Err(Error::TooManyInstances {
                max: self.max_instances,
            });
        }
        if !settings.ignored_keys.is_empty() {
            tracing::debug!(instance = name, %role, keys = ?settings.ignored_keys, "ignoring metadata keys this binding does not use");
        }
        if settings.back_off.configured && role == Role::Input {
            tracing::info!(
                instance = name,
                "backOff* keys accepted for compatibility: failed deliveries are retried by the broker \
                 (maxReconsumeTimes, then the DLQ), not in-process"
            );
        }
        let transport = self.connector.open(name, settings.clone(), role)?;
        if let Err(e) = probe(&transport, &settings, "Init", started, deadline).await {
            // Never keep half-started clients around.
            let (t, name) = (transport.clone(), name.to_string());
            tokio::spawn(async move {
                close_by(&name, &t, budget::close_deadline(Instant::now())).await
            });
            return Err(e);
        }
        tracing::info!(
            instance = name,
            %role,
            transport = ?settings.access_proto,
            target = %settings.target(),
            "component instance initialised"
        );
        Ok(Common {
            name: name.to_string(),
            settings,
            transport,
            closed: CancellationToken::new(),
        })
    }

    /// Input `Init`: builds the instance and replaces any previous one of that name.
    pub async fn init_input(
        &self,
        name: &str,
        properties: &HashMap<String, String>,
    ) -> Result<(), Error> {
        let common = self.build(name, properties, Role::Input).await?;
        let inst = Arc::new(InputInstance::new(common));
        let replaced = {
            let mut dormant = self.dormant.lock().expect("dormant lock");
            dormant.remove(name);
            self.inputs.replace(name, inst)
        };
        self.input_installed();
        if let Some(old) = replaced {
            tracing::info!(
                instance = name,
                "re-initialised: closing the previous consumer"
            );
            tokio::spawn(async move { old.close(budget::close_deadline(Instant::now())).await });
        }
        Ok(())
    }

    /// Output `Init`: builds the instance and replaces any previous one of that name.
    pub async fn init_output(
        &self,
        name: &str,
        properties: &HashMap<String, String>,
        owner: Option<ConnId>,
    ) -> Result<(), Error> {
        let common = self.build(name, properties, Role::Output).await?;
        let metrics = metrics::SendMetrics::new(name, common.settings.access_proto.as_str());
        let inst = Arc::new(OutputInstance {
            common,
            owner,
            metrics,
        });
        let replaced = {
            let mut dormant = self.dormant_outputs.lock().expect("dormant lock");
            dormant.remove(name);
            self.outputs.replace(name, inst)
        };
        if let Some(old) = replaced {
            tracing::info!(
                instance = name,
                "re-initialised: closing the previous producer"
            );
            tokio::spawn(async move {
                old.common
                    .close(budget::close_deadline(Instant::now()))
                    .await
            });
        }
        Ok(())
    }

    /// The input instance `name`, or `FAILED_PRECONDITION`.
    pub fn input(&self, name: &str) -> Result<Arc<InputInstance>, Error> {
        self.inputs.get(name).ok_or_else(|| Error::NotInitialised {
            instance: name.to_string(),
            role: Role::Input,
        })
    }

    /// The input instance `name` for a new Read stream, attached to it: a dormant instance
    /// (consumer closed while no stream was open) gets a new consumer with its settings.
    pub fn input_for_read(&self, name: &str) -> Result<Arc<InputInstance>, Error> {
        let attach = |i: Arc<InputInstance>| {
            i.attach();
            i
        };
        // The registry lock makes attach and the idle check of `park` exclusive.
        if let Some(i) = self.inputs.with(name, |i| i.attach()) {
            return Ok(i);
        }
        let mut dormant = self.dormant.lock().expect("dormant lock");
        if let Some(i) = self.inputs.with(name, |i| i.attach()) {
            return Ok(i);
        }
        let Some(settings) = dormant.get(name).cloned() else {
            return Err(Error::NotInitialised {
                instance: name.to_string(),
                role: Role::Input,
            });
        };
        let transport = self.connector.open(name, settings.clone(), Role::Input)?;
        let inst = Arc::new(InputInstance::new(Common {
            name: name.to_string(),
            settings,
            transport,
            closed: CancellationToken::new(),
        }));
        dormant.remove(name);
        self.inputs.replace(name, inst.clone());
        self.input_installed();
        tracing::info!(
            instance = name,
            "Read after idle: starting the consumer again"
        );
        Ok(attach(inst))
    }

    /// The current input instance of `name`, attached to by the caller's stream.
    pub fn attach_current(&self, name: &str) -> Option<Arc<InputInstance>> {
        self.inputs.with(name, |i| i.attach())
    }

    /// A Read stream of `inst` ended: when it was the last, the consumer closes after the
    /// idle timeout unless a stream attaches again or the instance is replaced meanwhile.
    pub fn stream_ended(self: &Arc<Self>, inst: &Arc<InputInstance>) {
        if inst.detach() > 0 {
            return;
        }
        let (this, inst) = (self.clone(), inst.clone());
        tokio::spawn(async move {
            tokio::time::sleep(this.input_idle).await;
            this.park(&inst).await;
        });
    }

    async fn park(&self, inst: &Arc<InputInstance>) {
        let name = inst.common.name.as_str();
        {
            let mut dormant = self.dormant.lock().expect("dormant lock");
            let idle = self.inputs.remove_if(name, |cur| {
                Arc::ptr_eq(cur, inst) && cur.streams.load(Ordering::SeqCst) == 0
            });
            if idle.is_none() {
                return;
            }
            dormant.insert(name.to_string(), inst.common.settings.clone());
        }
        tracing::info!(
            instance = name,
            idle = ?self.input_idle,
            "no Read stream: consumer closed until the next Read"
        );
        inst.close(budget::close_deadline(Instant::now())).await;
    }

    /// daprd closed connection `id`: output instances it initialised close their producers
    /// (daprd closes a Component's output connection when it removes the Component).
    pub async fn connection_closed(&self, id: ConnId) {
        let gone = {
            let mut dormant = self.dormant_outputs.lock().expect("dormant lock");
            let gone = self.outputs.remove_where(|o| o.owner == Some(id));
            for (name, o) in &gone {
                dormant.insert(name.clone(), o.common.settings.clone());
            }
            gone
        };
        let deadline = budget::close_deadline(Instant::now());
        for (name, o) in gone {
            tracing::info!(instance = %name, "daprd closed the output connection: producer closed");
            o.common.close(deadline).await;
        }
    }

    /// The output instance `name` for a call on connection `conn`: one whose connection
    /// closed (daprd reconnected after idling) gets a producer again with its settings.
    pub fn output_for_call(
        &self,
        name: &str,
        conn: Option<ConnId>,
    ) -> Result<Arc<OutputInstance>, Error> {
        if let Some(o) = self.outputs.get(name) {
            return Ok(o);
        }
        let mut dormant = self.dormant_outputs.lock().expect("dormant lock");
        if let Some(o) = self.outputs.get(name) {
            return Ok(o);
        }
        let Some(settings) = dormant.get(name).cloned() else {
            return Err(Error::NotInitialised {
                instance: name.to_string(),
                role: Role::Output,
            });
        };
        let transport = self.connector.open(name, settings.clone(), Role::Output)?;
        let metrics = metrics::SendMetrics::new(name, settings.access_proto.as_str());
        let inst = Arc::new(OutputInstance {
            common: Common {
                name: name.to_string(),
                settings,
                transport,
                closed: CancellationToken::new(),
            },
            owner: conn,
            metrics,
        });
        dormant.remove(name);
        self.outputs.replace(name, inst.clone());
        tracing::info!(
            instance = name,
            "call on a new connection: producer opened again"
        );
        Ok(inst)
    }

    /// The output instance `name`, or `FAILED_PRECONDITION`.
    pub fn output(&self, name: &str) -> Result<Arc<OutputInstance>, Error> {
        self.outputs.get(name).ok_or_else(|| Error::NotInitialised {
            instance: name.to_string(),
            role: Role::Output,
        })
    }

    /// Closes every instance (shutdown): consumers stop, producers close, all at once and
    /// all by `deadline`.
    pub async fn close_all(&self, deadline: Instant) {
        self.dormant.lock().expect("dormant lock").clear();
        self.dormant_outputs.lock().expect("dormant lock").clear();
        let inputs = self.inputs.drain();
        let outputs = self.outputs.drain();
        let mut tasks = Vec::new();
        for i in inputs {
            tasks.push(tokio::spawn(async move { i.close(deadline).await }));
        }
        for o in outputs {
            tasks.push(tokio::spawn(async move { o.common.close(deadline).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
