//! The client runtime one transport owns: a `RuntimeOwner` (its own small Tokio runtime) and a
//! `ClientRuntime` (the pool of RocketMQ client instances).
//!
//! The crate runs its synchronous message listener on the runtime's "metadata-io" blocking
//! lane. That lane is bounded (by default 2×CPUs running, 8×CPUs queued, 5 s queue timeout,
//! 30 s task timeout); a listener call that cannot be admitted becomes a spurious
//! "reconsume later" without the listener ever running, and one that runs longer than the task
//! timeout is abandoned. Our listener blocks until the app acks, so the lane is sized for the
//! consumer's threads: `max_concurrency = threads + 4`, `max_queue_depth = 4×that`,
//! `queue_timeout = 300 s`, `task_timeout = 30 min` (longer than the consumer's 15 min
//! consume timeout), and the Tokio blocking pool twice the lane.

use std::{sync::Arc, time::Duration};

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use std::sync::Mutex;

use crate::transport::TransportError;

/// Worker threads of each client runtime: broker I/O is light and listeners use the blocking
/// pool; one thread cut the daemon's CPU per sent message from 108 to 81–88 µs in the benchmark
/// (fewer thread switches on small machines).
const WORKER_THREADS: usize = 1;

/// A runtime owner plus the client runtime built on it.
pub struct ClientHost {
    owner: Mutex<Option<RuntimeOwner>>,
    client_runtime: Arc<ClientRuntime>,
    _telemetry: rocketmq_observability::TelemetryRuntimeGuard,
}

impl ClientHost {
    /// Builds a runtime whose metadata-io lane admits `listeners` blocked listener calls.
    pub fn new(name: &str, listeners: usize) -> Result<ClientHost, TransportError> {
        let lane = listeners.max(1) + 4;
        let err = |what: &str, e: String| TransportError::Unsupported(format!("{what}: {e}"));
        let mut rc = RuntimeConfig::for_parallelism(format!("rmq-{}", short(name)), WORKER_THREADS)
            .with_max_blocking_threads((lane * 2).clamp(8, 512))
            .map_err(|e| err("client runtime configuration", e.to_string()))?;
        rc.worker_threads = WORKER_THREADS;
        let md = &mut rc.blocking_lane_policies.metadata_io;
        md.max_concurrency = lane;
        md.max_queue_depth = lane * 4;
        md.queue_timeout = Duration::from_secs(300);
        md.task_timeout = Duration::from_secs(30 * 60);
        md.warn_after = Duration::from_secs(30 * 60);
        let owner = RuntimeOwner::plan(rc)
            .map_err(|e| err("client runtime configuration", e.to_string()))?
            .build()
            .map_err(|e| err("client runtime", e.to_string()))?;
        let telemetry = rocketmq_observability::TelemetryRuntimeGuard::noop();
        let client_runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .map_err(|e| err("client runtime", e.to_string()))?;
        Ok(ClientHost {
            owner: Mutex::new(Some(owner)),
            client_runtime,
            _telemetry: telemetry,
        })
    }

    /// The client runtime producers and consumers are built on.
    pub fn client_runtime(&self) -> Arc<ClientRuntime> {
        self.client_runtime.clone()
    }

    /// Shuts the client runtime down, then its Tokio runtime (in the background: we are
    /// inside another async runtime).
    pub async fn shutdown(&self) {
        let report = self.client_runtime.shutdown().await;
        if !report.is_healthy() {
            tracing::debug!(report = %report.to_json(), "client runtime shutdown report");
        }
        let owner = self.owner.lock().ok().and_then(|mut o| o.take());
        if let Some(owner) = owner {
            let _ = owner.shutdown_tasks().await;
            let _ = owner.shutdown_background();
        }
    }
}

impl Drop for ClientHost {
    fn drop(&mut self) {
        // Dropping a Tokio runtime inside async code panics; shut it down in the background.
        if let Some(owner) = self.owner.get_mut().ok().and_then(|o| o.take()) {
            let _ = owner.shutdown_background();
        }
    }
}

fn short(name: &str) -> String {
    name.chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}
