//! Logging and metrics.
//!
//! Logging: a `tracing` subscriber filtered by `RUST_LOG` (default `info`), text or JSON,
//! written to stderr. Nothing in this crate logs raw Init requests or secret values;
//! secrets live in `secrecy::SecretString` from the moment metadata is decoded.
//!
//! One event is one line. Values from peers are logged through [`crate::text::shown`] where
//! the code knows they are untrusted; the text format's writer ([`LineWriter`]) also escapes
//! every control character inside an event (a `\n` in an ack's `message_id` cannot forge a
//! line) and cuts an event after [`MAX_LOG_LINE`] bytes. JSON lines are escaped by the
//! encoder.
//!
//! Metrics: every metric name and label lives in [`metrics`] (one place), recorded with the
//! `metrics` crate and rendered in Prometheus text format by `metrics-exporter-prometheus`
//! on `--metrics-addr` (see [`crate::daemon`]). Labels are bounded: the Component name
//! (`instance`, one per Component YAML), `transport` (`tcp`/`http`), `role` and `outcome`;
//! never topics or message ids.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter};

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Longest text log line written; the rest of an event is cut with its length stated.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(ansi)
            .with_writer(LineWriter::new(io::stderr, ansi))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .with_writer(io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// A [`MakeWriter`] for the text format: each event (one `write` of a formatted line) has its
/// control characters escaped (`\n` → `\\n`, others as `\\u{..}`), keeps only its final
/// newline and is cut after [`MAX_LOG_LINE`] bytes. With `ansi` (a terminal), ESC is left
/// alone so colours work.
#[derive(Clone)]
pub struct LineWriter<M> {
    inner: M,
    ansi: bool,
}

impl<M> LineWriter<M> {
    /// Wraps `inner`.
    pub fn new(inner: M, ansi: bool) -> Self {
        LineWriter { inner, ansi }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for LineWriter<M> {
    type Writer = EscapingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer(),
            ansi: self.ansi,
        }
    }
}

/// The writer [`LineWriter`] makes.
pub struct EscapingWriter<W> {
    inner: W,
    ansi: bool,
}

/// Escapes one formatted event; see [`LineWriter`].
pub fn escape_event(buf: &[u8], ansi: bool) -> Vec<u8> {
    let (body, newline) = match buf.strip_suffix(b"\n") {
        Some(b) => (b, true),
        None => (buf, false),
    };
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push_str(&format!(" … (event cut: {} bytes)", body.len()));
            break;
        }
        match c {
            '\u{1b}' if ansi => out.push(c),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            // Unicode line and paragraph separators end lines in some viewers.
            '\u{2028}' | '\u{2029}' => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    let mut bytes = out.into_bytes();
    if newline {
        bytes.push(b'\n');
    }
    bytes
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_event(buf, self.ansi))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
    /// Batch sends of coalesced `create`s (two or more messages each).
    pub const SEND_BATCHES: &str = "rocketmq_binding_send_batches_total";
    /// Messages that left in those batches.
    pub const BATCHED_MESSAGES: &str = "rocketmq_binding_batched_messages_total";

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
        describe_counter!(SEND_BATCHES, "batch sends of coalesced creates");
        describe_counter!(
            BATCHED_MESSAGES,
            "messages sent in batches of coalesced creates"
        );
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

    /// `n` coalesced messages left as one batch send.
    pub fn batch_sent(instance: &str, transport: &'static str, n: usize) {
        counter!(SEND_BATCHES, "instance" => instance.to_string(), "transport" => transport)
            .increment(1);
        counter!(BATCHED_MESSAGES, "instance" => instance.to_string(), "transport" => transport)
            .increment(n as u64);
    }

    /// A broker acknowledgement failed.
    pub fn broker_ack_failed(instance: &str, transport: &'static str, n: u64) {
        counter!(BROKER_ACK_FAILURES, "instance" => instance.to_string(), "transport" => transport)
            .increment(n);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_value_cannot_forge_a_log_line() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = fmt()
            .with_ansi(false)
            .with_writer(LineWriter::new(move || sink.clone(), false))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "abc\n2026-12-01T00:00:00Z  INFO forged: all acked";
            tracing::info!(id = %id, error = %"x\r\ny", "ack");
            tracing::info!(big = %"v".repeat(100_000), "huge");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("abc\\n2026-12-01"), "{}", lines[0]);
        assert!(lines[0].contains("x\\r\\ny"), "{}", lines[0]);
        assert!(lines[1].len() < MAX_LOG_LINE + 100, "{}", lines[1].len());
        assert!(
            lines[1].contains("event cut"),
            "{}",
            &lines[1][lines[1].len() - 60..]
        );
    }

    #[test]
    fn escape_keeps_ansi_only_on_terminals() {
        assert_eq!(escape_event(b"a\x1b[1mb\n", true), b"a\x1b[1mb\n");
        assert_eq!(escape_event(b"a\x1b[1mb\n", false), b"a\\u{1b}[1mb\n");
        assert_eq!(escape_event(b"tab\there", false), b"tab\there");
    }
}
