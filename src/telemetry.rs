//! Logging and metrics.
//!
//! Logging: a `tracing` subscriber filtered by `RUST_LOG` (default `info`), text or JSON,
//! written to stderr. Nothing in this crate logs raw Init requests or secret values;
//! secrets live in `secrecy::SecretString` from the moment metadata is decoded.
//!
//! Metrics: every metric name and label lives in [`metrics`] (one place), recorded with the
//! `metrics` crate and rendered in Prometheus text format by `metrics-exporter-prometheus`
//! on `--metrics-addr` (see [`crate::daemon`]). Labels are bounded: the Component name
//! (`instance`, one per Component YAML), `transport` (`tcp`/`http`), `role` and `outcome`;
//! never topics or message ids.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Metric names, labels and recording helpers.
pub mod metrics {
    use std::{sync::OnceLock, time::Duration};

    use metrics::{
        Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
        gauge, histogram,
    };
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// `create` invocations by outcome (`ok`, `error`).
    pub const SENDS: &str = "rocketmq_binding_sends_total";
    /// Latency of `create` invocations.
    pub const SEND_DURATION: &str = "rocketmq_binding_send_duration_seconds";
    /// Messages sent to daprd on Read streams.
    pub const DELIVERIES: &str = "rocketmq_binding_deliveries_total";
    /// Deliveries of messages the broker had delivered before (reconsume times > 0).
    pub const REDELIVERIES: &str = "rocketmq_binding_redeliveries_total";
    /// App acks by outcome (`success`: confirmed to the broker; `error`: released).
    pub const ACKS: &str = "rocketmq_binding_acks_total";
    /// Deliveries released without an app ack (stream ended, shutdown, too large).
    pub const ABANDONED: &str = "rocketmq_binding_abandoned_total";
    /// Unacknowledged deliveries on Read streams.
    pub const IN_FLIGHT: &str = "rocketmq_binding_in_flight";
    /// Open Read streams.
    pub const READ_STREAMS: &str = "rocketmq_binding_read_streams";
    /// Transport reconnects / recoveries after broker trouble.
    pub const RECONNECTS: &str = "rocketmq_binding_reconnects_total";
    /// Broker acknowledgements that failed (http: `<Errors>` entries and ack requests that
    /// failed three times; tcp confirms inside the client crate, which does not report them).
    pub const BROKER_ACK_FAILURES: &str = "rocketmq_binding_broker_ack_failures_total";

    /// Installs the Prometheus recorder once per process and returns its handle.
    pub fn install() -> PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE
            .get_or_init(|| {
                let handle = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(SEND_DURATION.into()),
                        &[
                            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5, 5.0, 10.0,
                        ],
                    )
                    .expect("static buckets")
                    .install_recorder()
                    .expect("the Prometheus recorder is installed once");
                describe();
                handle
            })
            .clone()
    }

    fn describe() {
        describe_counter!(SENDS, "create invocations by outcome");
        describe_histogram!(
            SEND_DURATION,
            metrics::Unit::Seconds,
            "latency of create invocations"
        );
        describe_counter!(DELIVERIES, "messages sent to daprd on Read streams");
        describe_counter!(REDELIVERIES, "deliveries of messages delivered before");
        describe_counter!(ACKS, "app acks by outcome");
        describe_counter!(ABANDONED, "deliveries released without an app ack");
        describe_gauge!(IN_FLIGHT, "unacknowledged deliveries on Read streams");
        describe_gauge!(READ_STREAMS, "open Read streams");
        describe_counter!(RECONNECTS, "transport recoveries after broker trouble");
        describe_counter!(BROKER_ACK_FAILURES, "broker acknowledgements that failed");
    }

    /// Metric handles of one output instance (registered once, cheap to record).
    #[derive(Clone)]
    pub struct SendMetrics {
        ok: Counter,
        error: Counter,
        duration: Histogram,
    }

    impl SendMetrics {
        /// Handles labelled with `instance` and `transport`.
        pub fn new(instance: &str, transport: &'static str) -> Self {
            let l = |outcome: &'static str| counter!(SENDS, "instance" => instance.to_string(), "transport" => transport, "outcome" => outcome);
            SendMetrics {
                ok: l("ok"),
                error: l("error"),
                duration: histogram!(SEND_DURATION, "instance" => instance.to_string(), "transport" => transport),
            }
        }

        /// Records one `create`.
        pub fn record(&self, ok: bool, took: Duration) {
            if ok { &self.ok } else { &self.error }.increment(1);
            self.duration.record(took.as_secs_f64());
        }
    }

    /// Metric handles of one Read stream.
    pub struct StreamMetrics {
        deliveries: Counter,
        redeliveries: Counter,
        acks_success: Counter,
        acks_error: Counter,
        abandoned: Counter,
        in_flight: Gauge,
    }

    impl StreamMetrics {
        /// Handles labelled with `instance` and `transport`.
        pub fn new(instance: &str, transport: &'static str) -> Self {
            let i = || instance.to_string();
            StreamMetrics {
                deliveries: counter!(DELIVERIES, "instance" => i(), "transport" => transport),
                redeliveries: counter!(REDELIVERIES, "instance" => i(), "transport" => transport),
                acks_success: counter!(ACKS, "instance" => i(), "transport" => transport, "outcome" => "success"),
                acks_error: counter!(ACKS, "instance" => i(), "transport" => transport, "outcome" => "error"),
                abandoned: counter!(ABANDONED, "instance" => i(), "transport" => transport),
                in_flight: gauge!(IN_FLIGHT, "instance" => i(), "transport" => transport),
            }
        }

        /// One delivery sent to daprd.
        pub fn delivered(&self, redelivery: bool) {
            self.deliveries.increment(1);
            if redelivery {
                self.redeliveries.increment(1);
            }
            self.in_flight.increment(1.0);
        }

        /// One app ack.
        pub fn acked(&self, success: bool) {
            if success {
                &self.acks_success
            } else {
                &self.acks_error
            }
            .increment(1);
            self.in_flight.decrement(1.0);
        }

        /// `n` deliveries released without an ack (`in_flight`: they had been sent to daprd).
        pub fn abandoned(&self, n: usize, in_flight: bool) {
            self.abandoned.increment(n as u64);
            if in_flight {
                self.in_flight.decrement(n as f64);
            }
        }
    }

    /// A Read stream opened (+1) or closed (-1).
    pub fn read_stream(instance: &str, delta: f64) {
        gauge!(READ_STREAMS, "instance" => instance.to_string()).increment(delta);
    }

    /// A transport recovered after broker trouble.
    pub fn reconnected(instance: &str, transport: &'static str) {
        counter!(RECONNECTS, "instance" => instance.to_string(), "transport" => transport)
            .increment(1);
    }

    /// A broker acknowledgement failed.
    pub fn broker_ack_failed(instance: &str, transport: &'static str, n: u64) {
        counter!(BROKER_ACK_FAILURES, "instance" => instance.to_string(), "transport" => transport)
            .increment(n);
    }
}
