//! The time budgets of the daemon's contract with daprd, in one place, and the deadlines
//! computed from them.
//!
//! daprd sets the limits (`/work/shared/spec/dapr-pluggable.md` §2.5, §2.9): a Component's
//! input Init, output Init and ListOperations share one init timeout (5 s unless
//! `spec.initTimeout` says otherwise; no gRPC deadline is sent), and nothing else daprd calls
//! has a deadline. Kubernetes gives the pod `terminationGracePeriodSeconds` (30 s by default)
//! between SIGTERM and SIGKILL (`style-and-ecosystem.md` §3.6). The Dapr layer turns these
//! budgets into absolute deadlines ([`tokio::time::Instant`]) and passes them to
//! [`Transport::ping`](crate::transport::Transport::ping) and
//! [`Transport::close`](crate::transport::Transport::close), which fit every step of their
//! own (a probe, a client start, a consumer shutdown) into what is left, and also enforces
//! them around the call, so a transport that overruns is cut off at its deadline.
//!
//! The budgets add up by construction:
//! - **Init**: one Init probes the broker for at most [`INIT_PROBE`]; the output Init of a
//!   Component whose input Init began less than [`DAPRD_INIT_TIMEOUT`] ago ends no later than
//!   [`INIT_COMPONENT`] after that start ([`init_deadline`]), so both Inits fit in daprd's
//!   5 s with room for ListOperations.
//! - **Shutdown** ([`Shutdown`]): the drain (`--shutdown-timeout`), then [`STREAMS_END`] for
//!   the Read streams to end, [`CONNECTIONS_END`] for the connections, [`CLOSE`] for every
//!   client to close (all at once, under the same deadline). With the default drain the whole
//!   shutdown takes at most 28 s, inside Kubernetes' 30 s.
//! - **Close** outside shutdown (re-Init, an idle input, daprd closing an output's
//!   connection): [`CLOSE`] from the moment it starts.
//!
//! Timers that are not part of this contract stay with their owners: per-request timeouts of
//! a transport (`sendTimeout`, one probe exchange, the HTTP long poll), back-offs, the input
//! idle timeout and the socket's connection limits (`daemon`).

use std::time::Duration;

use tokio::time::Instant;

/// daprd's default component init timeout (`defaultComponentInitTimeout`,
/// `pkg/runtime/processor/processor.go`; `spec.initTimeout` overrides it): input Init, output
/// Init and ListOperations of one Component share it.
pub const DAPRD_INIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one Init may probe the broker. Decoding is instant; 1.5 s of daprd's 5 s stay
/// for the other direction's Init when this one fails slowly.
pub const INIT_PROBE: Duration = Duration::from_millis(3500);
/// How long input Init plus output Init of one Component may take together, counted from the
/// start of the input Init: 500 ms of daprd's 5 s stay for ListOperations and the socket hops
/// (on a loaded machine, daprd's scheduling too).
pub const INIT_COMPONENT: Duration = Duration::from_millis(4500);
/// How long a Ping may probe the broker (daprd never calls Ping; our harness, `grpcurl` and
/// health probes do, and expect an answer within Init's bound).
pub const PING: Duration = INIT_PROBE;
/// Default of `--shutdown-timeout`: how long Read streams wait for in-flight acks after
/// SIGTERM before releasing them.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(20);
/// After the drain deadline: time for every Read session to release what is left and end.
pub const STREAMS_END: Duration = Duration::from_secs(1);
/// Then: time for the open connections to finish before the server is aborted.
pub const CONNECTIONS_END: Duration = Duration::from_secs(2);
/// Then: time for every client to close (all in parallel, one deadline); also the budget of
/// one close outside shutdown.
pub const CLOSE: Duration = Duration::from_secs(5);

/// The deadline of one Init's probe started at `now`: [`INIT_PROBE`] from now, and no later
/// than [`INIT_COMPONENT`] after `component_started`, the start of the same Component's
/// input Init, when that was less than [`DAPRD_INIT_TIMEOUT`] ago (daprd Inits the input side
/// first, then the output side, under one budget). A deadline already passed means daprd's
/// budget is spent: the probe fails at once rather than answer after daprd gave up.
pub fn init_deadline(now: Instant, component_started: Option<Instant>) -> Instant {
    let own = now + INIT_PROBE;
    match component_started {
        Some(s) if now.saturating_duration_since(s) < DAPRD_INIT_TIMEOUT => {
            own.min(s + INIT_COMPONENT)
        }
        _ => own,
    }
}

/// The deadline of a Ping started at `now`.
pub fn ping_deadline(now: Instant) -> Instant {
    now + PING
}

/// The deadline of a close (re-Init, idle input, connection closed) started at `now`.
pub fn close_deadline(now: Instant) -> Instant {
    now + CLOSE
}

/// The deadlines of one shutdown, each stage ending by its own; the last is `drain` +
/// [`STREAMS_END`] + [`CONNECTIONS_END`] + [`CLOSE`] after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Read streams stop waiting for in-flight acks and release the rest.
    pub drain: Instant,
    /// Read sessions have ended (the daemon stops waiting for them).
    pub streams: Instant,
    /// Connections have finished (the server is aborted after this).
    pub connections: Instant,
    /// Every client is closed (the deadline passed to each [`Transport::close`]).
    ///
    /// [`Transport::close`]: crate::transport::Transport::close
    pub close: Instant,
}

impl Shutdown {
    /// The deadlines of a shutdown that starts at `now` with a drain of `drain`.
    pub fn starting(now: Instant, drain: Duration) -> Shutdown {
        let drain = now + drain;
        let streams = drain + STREAMS_END;
        let connections = streams + CONNECTIONS_END;
        Shutdown {
            drain,
            streams,
            connections,
            close: connections + CLOSE,
        }
    }

    /// How long a whole shutdown with a drain of `drain` may take.
    pub fn total(drain: Duration) -> Duration {
        drain + STREAMS_END + CONNECTIONS_END + CLOSE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_inits_of_one_component_fit_in_daprds_budget() {
        let start = Instant::now();
        // The input Init fails slowly, using its whole probe budget.
        let input = init_deadline(start, None);
        assert_eq!(input, start + INIT_PROBE);
        // The output Init that follows gets only what is left of the Component's share.
        let output = init_deadline(input, Some(start));
        assert_eq!(output, start + INIT_COMPONENT);
        assert!(output - start < DAPRD_INIT_TIMEOUT);
        // A quick input Init leaves the output Init its full probe.
        let later = start + Duration::from_millis(100);
        assert_eq!(init_deadline(later, Some(start)), later + INIT_PROBE);
        // Spent: the deadline is already behind.
        let late = start + Duration::from_millis(4800);
        assert!(init_deadline(late, Some(start)) < late);
        // An input Init from long ago (another start of daprd) does not count.
        let next_day = start + Duration::from_secs(60);
        assert_eq!(init_deadline(next_day, Some(start)), next_day + INIT_PROBE);
    }

    #[test]
    fn shutdown_stages_add_up_inside_kubernetes_grace() {
        let now = Instant::now();
        let s = Shutdown::starting(now, DEFAULT_DRAIN);
        assert!(now < s.drain && s.drain < s.streams);
        assert!(s.streams < s.connections && s.connections < s.close);
        assert_eq!(s.close - now, Shutdown::total(DEFAULT_DRAIN));
        assert!(Shutdown::total(DEFAULT_DRAIN) <= Duration::from_secs(30));
    }
}
