//! The client runtime one transport owns: a `ClientRuntime` (the pool of RocketMQ client
//! instances) on the daemon's own Tokio runtime.
//!
//! # One runtime, not two
//!
//! The crate's composition root is normally a `RuntimeOwner`, which builds a second Tokio
//! runtime with its own worker threads. Every send and every delivery then crosses between
//! the gRPC server's threads and the client's (a futex wake and a context switch each way).
//! `perf` showed that hop as the largest part of the daemon's cost on 2 cores. So the client is
//! built on the current runtime through `rocketmq_runtime::RuntimeContext`, the crate's way to
//! borrow a running Tokio runtime (marked as a harness in its docs; the crate is pinned to an
//! exact version here). The context still owns the client's task group and blocking lanes, so
//! [`ClientHost::shutdown`] stops exactly this client's tasks.
//!
//! With the client on the daemon's runtime the daemon's CPU per sent message fell from
//! 96–138 µs to 47–107 µs, and the broker's own CPU per message fell too (its requests arrive
//! coalesced). Numbers and command: README, Benchmark (`scripts/bench.sh`). The benchmark
//! builds its raw client with this same type, so both sides of each ratio share one
//! construction.
//!
//! # Blocking lanes
//!
//! The crate runs the push consumer's synchronous message listener on a "metadata-io"
//! blocking lane. A lane is bounded (queue depth, queue timeout, task timeout); a listener
//! call that cannot be admitted becomes a spurious "reconsume later" without the listener
//! ever running, and one that runs longer than the task timeout is abandoned. Only the
//! orderly input uses that listener, and it blocks until the app acks, so its lanes are sized
//! for the consumer's threads: `max_concurrency = threads + 4`, `max_queue_depth = 4×that`,
//! `queue_timeout = 300 s`, `task_timeout = 30 min` (longer than the consumer's 15 min
//! consume timeout). Every other client (producers, the concurrent pull input) gets 4. The
//! threads come from Tokio's blocking pool.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig};
use rocketmq_runtime::{BlockingPoolPolicy, RuntimeContext};

use crate::transport::TransportError;

/// How long [`ClientHost::shutdown`] waits for the client's own tasks after the client
/// runtime has shut down.
const TASK_SHUTDOWN: Duration = Duration::from_secs(3);

/// A client runtime on the daemon's Tokio runtime.
pub struct ClientHost {
    context: RuntimeContext,
    client_runtime: Arc<ClientRuntime>,
    _telemetry: rocketmq_observability::TelemetryRuntimeGuard,
}

impl ClientHost {
    /// Builds a client runtime whose blocking lanes admit `listeners` blocked listener
    /// calls. Must be called inside the daemon's Tokio runtime.
    pub fn new(name: &str, listeners: usize) -> Result<ClientHost, TransportError> {
        let lane = listeners.max(1) + 4;
        let err = |what: &str, e: String| TransportError::Unsupported(format!("{what}: {e}"));
        let policy = BlockingPoolPolicy {
            name: format!("rmq-{}", short(name)),
            max_concurrency: lane,
            max_queue_depth: lane * 4,
            queue_timeout: Duration::from_secs(300),
            task_timeout: Duration::from_secs(30 * 60),
            warn_after: Duration::from_secs(30 * 60),
        };
        let context =
            RuntimeContext::try_from_current_with_blocking_policy(format!("rmq-{name}"), policy)
                .map_err(|e| err("client runtime", e.to_string()))?;
        let telemetry = rocketmq_observability::TelemetryRuntimeGuard::noop();
        let client_runtime = ClientRuntime::try_new(
            context.service_context("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .map_err(|e| err("client runtime", e.to_string()))?;
        Ok(ClientHost {
            context,
            client_runtime,
            _telemetry: telemetry,
        })
    }

    /// The client runtime producers and consumers are built on.
    pub fn client_runtime(&self) -> Arc<ClientRuntime> {
        self.client_runtime.clone()
    }

    /// A service context of this client's task group (for a remoting client of our own).
    pub fn service_context(&self, scope: &'static str) -> rocketmq_runtime::ChildServiceContext {
        self.context.service_context(scope)
    }

    /// Shuts the client runtime down, then the tasks it left in its task group, by
    /// `deadline` (tasks still running then are aborted).
    pub async fn shutdown(&self, deadline: Instant) {
        match tokio::time::timeout_at(deadline, self.client_runtime.shutdown()).await {
            Ok(report) if !report.is_healthy() => {
                tracing::debug!(report = %report.to_json(), "client runtime shutdown report");
            }
            Ok(_) => {}
            Err(_) => tracing::debug!("client runtime shutdown cut off at the close deadline"),
        }
        let wait = crate::transport::within(TASK_SHUTDOWN, deadline);
        let report = self.context.shutdown_tasks(wait).await;
        if !report.is_healthy() {
            tracing::debug!(report = %report.to_json(), "client task shutdown report");
        }
    }
}

impl Drop for ClientHost {
    fn drop(&mut self) {
        // A host dropped without `shutdown` (it always runs on close; this is the safety
        // net) must not leave its client's tasks running on the daemon's runtime.
        let _ = self.context.root_group().shutdown_now();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The client borrows the caller's runtime: outside one there is nothing to build on
    /// (a host with its own runtime would build anywhere), inside one it builds and shuts
    /// down cleanly.
    #[test]
    fn borrows_the_current_runtime_instead_of_starting_one() {
        assert!(ClientHost::new("outside", 1).is_err());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let host = ClientHost::new("inside", 1).expect("built on the current runtime");
            host.shutdown(Instant::now() + Duration::from_secs(5)).await;
        });
    }
}
