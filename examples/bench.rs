//! Benchmark of the daemon against the raw `rocketmq-client-rust` client on the same broker.
//!
//! ```sh
//! cargo build --release --bins && cargo run --release --example bench -- [flags]
//! scripts/bench.sh            # the same, starting and stopping the brokers it needs
//! scripts/bench.sh --smoke    # seconds-long CI mode (debug build)
//! ```
//!
//! The daemon runs as a child process (its own socket folder), so RSS, CPU and startup are its
//! own. One run measures:
//!
//! 1. output: `create` invokes/s and p50/p99/p999 through the socket at each concurrency
//!    (1 KiB bodies) vs the raw producer in this process at the same concurrency;
//! 2. input: deliveries/s through a Read stream (immediate acks, a 1 ms app, and immediate acks
//!    with `consumeMessageBatchMaxSize` 32 on both sides) vs a raw push consumer (fresh group,
//!    first offset) draining the same backlog;
//! 3. daemon RSS (idle after Init, peak per phase via VmHWM) and exec → socket-accepting time;
//! 4. the HTTP transport against the in-process emulator: publish/s, consume+ack/s and the idle
//!    CPU of a long-polling consumer;
//! 5. optionally the output comparison again on a broker with CommitLog micro-batching on
//!    (the Rust broker's default).
//!
//! Brokers: `--namesrv` / `ROCKETMQ_BENCH_NAMESRV` (should have `commitLogMicroBatchEnabled =
//! false`) and `--microbatch-namesrv` / `ROCKETMQ_BENCH_MICROBATCH_NAMESRV`; when unset the
//! bench starts its own pairs with `scripts/rocketmq-local.sh` (`bench`: 29876/30911,
//! `bench-mb`: 29886/30921) and stops them at the end. Only 127.0.0.1 is used.
//!
//! Every load has a fixed message count and a time limit. CPU figures come from /proc
//! (utime+stime), so the table also shows how busy the machine was with other work.

#![recursion_limit = "256"]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/noop_binding.rs"]
mod noop_binding;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use clap::Parser;
use common::{Daprd, with_instance};
use noop_binding::{NOOP_FLAG, NOOP_SOCKET_NAME};
use rocketmq_binding::{
    dapr::proto::{InvokeRequest, ReadRequest},
    emulator,
    transport::tcp::host::ClientHost,
};
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use serde_json::{Value, json};

const BODY_SIZE: usize = 1024;
const PAIR: (&str, u16, u16) = ("bench", 29876, 30911);
const PAIR_MB: (&str, u16, u16) = ("bench-mb", 29886, 30921);
const HTTP_AK: &str = "bench-ak";
const HTTP_SK: &str = "bench-sk";

#[derive(Parser, Debug, Clone)]
#[command(about = "rocketmq-binding benchmark: the daemon vs the raw rocketmq-client-rust client")]
struct Args {
    /// Seconds-long mode for CI: tiny counts, one concurrency, every part still exercised.
    #[arg(long)]
    smoke: bool,
    /// Messages per output point (concurrency >= 16; concurrency 1 uses a fifth) and the input
    /// backlog size. Default 20000 (smoke 200).
    #[arg(long)]
    messages: Option<usize>,
    /// JSON results file.
    #[arg(long, default_value = "target/bench/bench.json")]
    json: PathBuf,
    /// Name server of the broker for the ratios (no CommitLog micro-batching).
    #[arg(long, env = "ROCKETMQ_BENCH_NAMESRV")]
    namesrv: Option<String>,
    /// Name server of a broker with CommitLog micro-batching on (the broker default).
    #[arg(long, env = "ROCKETMQ_BENCH_MICROBATCH_NAMESRV")]
    microbatch_namesrv: Option<String>,
    /// Skip the micro-batching broker (do not start it either).
    #[arg(long)]
    no_microbatch: bool,
    /// Broker pid of `--namesrv` (for broker CPU per message); found automatically for pairs
    /// started by the script.
    #[arg(long, env = "ROCKETMQ_BENCH_BROKER_PID")]
    broker_pid: Option<u32>,
    /// Daemon binary. Default: `rocketmq-binding` next to this example's profile dir
    /// (target/release or target/debug).
    #[arg(long, env = "ROCKETMQ_BENCH_DAEMON")]
    daemon: Option<PathBuf>,
    /// Repetitions of each raw/daemon comparison (the table shows medians). Default 3 (smoke 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Output concurrencies. Default 1,16,64 (smoke 4).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// consumerThreadNums of the daemon's input (and the raw consumer's consume threads).
    #[arg(long, default_value_t = 16)]
    consumer_threads: u32,
    /// maxInFlight of the daemon's Read stream.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// consumerBatchSize (pull batch size) of both consumers; unset = the binding's default (32).
    #[arg(long)]
    pull_batch: Option<u32>,
    /// consumeMessageBatchMaxSize of the extra "batch" input mode (immediate acks, both sides
    /// with this batch size); 1 skips the mode. Default 32 (smoke 4).
    #[arg(long)]
    consume_batch: Option<u32>,
    /// Simulated app time per message in the "slow app" input runs, in milliseconds.
    #[arg(long, default_value_t = 1)]
    app_ms: u64,
    /// Phases to run: startup,output,input,http,microbatch (default all).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Seconds of idle-CPU measurement (smoke 2).
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Daemon starts for the startup median. Default 15 (smoke 3).
    #[arg(long)]
    startup_runs: Option<usize>,
    /// Time limit of each single load, in seconds. Default 120 (smoke 30).
    #[arg(long)]
    limit_secs: Option<u64>,
    /// Messages of the HTTP publish/consume phase. Default 5000 (smoke 100).
    #[arg(long)]
    http_messages: Option<usize>,
    /// Leave the pairs this run started running.
    #[arg(long)]
    keep_servers: bool,
    /// Raw sends (C = 16, not recorded) before the first output row, so the broker's
    /// JIT-compiled send path is warm for the first side too. Default 30000 (smoke 0).
    #[arg(long)]
    broker_warmup: Option<usize>,
}

struct Plan {
    smoke: bool,
    n: usize,
    rounds: usize,
    conc: Vec<usize>,
    idle: Duration,
    startup_runs: usize,
    limit: Duration,
    http_n: usize,
    consume_batch: u32,
    broker_warmup: usize,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let smoke = a.smoke;
        Plan {
            smoke,
            n: a.messages
                .unwrap_or(if smoke { 200 } else { 20_000 })
                .max(10),
            rounds: a.rounds.unwrap_or(if smoke { 1 } else { 3 }).max(1),
            conc: a
                .concurrency
                .clone()
                .unwrap_or_else(|| if smoke { vec![4] } else { vec![1, 16, 64] }),
            idle: Duration::from_secs(a.idle_secs.unwrap_or(if smoke { 2 } else { 10 })),
            startup_runs: a.startup_runs.unwrap_or(if smoke { 3 } else { 15 }).max(1),
            limit: Duration::from_secs(a.limit_secs.unwrap_or(if smoke { 30 } else { 120 })),
            http_n: a.http_messages.unwrap_or(if smoke { 100 } else { 5000 }),
            consume_batch: a
                .consume_batch
                .unwrap_or(if smoke { 4 } else { 32 })
                .clamp(1, 1024),
            broker_warmup: a.broker_warmup.unwrap_or(if smoke { 0 } else { 30_000 }),
        }
    }

    fn count_for(&self, c: usize) -> usize {
        if c < 16 && !self.smoke {
            (self.n / 5).max(10)
        } else {
            self.n
        }
    }
}

fn phase(a: &Args, name: &str) -> bool {
    a.only
        .as_ref()
        .is_none_or(|v| v.iter().any(|p| p.eq_ignore_ascii_case(name)))
}

// ------------------------------------------------------------------------------------------
// /proc helpers
// ------------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in seconds.
fn proc_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((u + st) / clk_tck())
}

/// (busy, total) seconds of the whole machine (all cores).
fn machine_cpu() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return (0.0, 0.0);
    }
    let total: f64 = v.iter().sum();
    let idle = v[3] + v[4];
    ((total - idle) / clk_tck(), total / clk_tck())
}

/// A /proc/<pid>/status field in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn rss_mb(pid: u32) -> f64 {
    status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// (file-backed, anonymous) resident MB from `/proc/<pid>/smaps_rollup`: the first is mostly
/// the daemon's own code pages that have run, the second its heap and stacks.
fn rss_split_mb(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = |field: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (rss, anon) = (kb("Rss:"), kb("Anonymous:"));
    ((rss - anon) / 1024.0, anon / 1024.0)
}

fn hwm_mb(pid: u32) -> f64 {
    status_kb(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5).
fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU snapshot of the processes we care about.
#[derive(Clone, Copy)]
struct Snap {
    t: Instant,
    daemon: Option<f64>,
    broker: Option<f64>,
    me: f64,
    busy: f64,
}

#[derive(Clone, Copy, Default)]
struct CpuUse {
    /// Cores used on average over the run.
    daemon: Option<f64>,
    broker: Option<f64>,
    bench: f64,
    machine: f64,
    /// Machine busy time not explained by daemon + broker + bench (other engineers, name server).
    other: f64,
    /// CPU microseconds per message.
    daemon_us: Option<f64>,
    broker_us: Option<f64>,
    bench_us: f64,
}

impl Snap {
    fn take(daemon: Option<u32>, broker: Option<u32>) -> Snap {
        Snap {
            t: Instant::now(),
            daemon: daemon.and_then(proc_cpu),
            broker: broker.and_then(proc_cpu),
            me: proc_cpu(std::process::id()).unwrap_or(0.0),
            busy: machine_cpu().0,
        }
    }

    fn since(&self, a: &Snap, msgs: usize) -> CpuUse {
        let wall = self.t.duration_since(a.t).as_secs_f64().max(1e-6);
        let d = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => Some((x - y).max(0.0)),
            _ => None,
        };
        let dd = d(self.daemon, a.daemon);
        let db = d(self.broker, a.broker);
        let dm = (self.me - a.me).max(0.0);
        let busy = (self.busy - a.busy).max(0.0);
        let per = |x: f64| x * 1e6 / msgs.max(1) as f64;
        CpuUse {
            daemon: dd.map(|x| x / wall),
            broker: db.map(|x| x / wall),
            bench: dm / wall,
            machine: busy / wall,
            other: ((busy - dd.unwrap_or(0.0) - db.unwrap_or(0.0) - dm) / wall).max(0.0),
            daemon_us: dd.map(per),
            broker_us: db.map(per),
            bench_us: per(dm),
        }
    }
}

fn cpu_json(c: &CpuUse) -> Value {
    json!({
        "daemon_cores": c.daemon, "broker_cores": c.broker, "bench_cores": c.bench,
        "machine_cores": c.machine, "other_cores": c.other,
        "daemon_cpu_us_per_msg": c.daemon_us, "broker_cpu_us_per_msg": c.broker_us,
        "bench_cpu_us_per_msg": c.bench_us,
    })
}

// ------------------------------------------------------------------------------------------
// Servers
// ------------------------------------------------------------------------------------------

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rocketmq-local.sh")
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    if !out.status.success() {
        return Err(format!(
            "`scripts/rocketmq-local.sh {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn state_dir() -> Option<PathBuf> {
    run_script(&["env"])
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("RMQ_STATE_DIR="))
        .map(PathBuf::from)
}

fn pair_broker_pid(name: &str) -> Option<u32> {
    let p = state_dir()?.join(name).join("broker.pid");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Pairs this run started (stopped on drop).
#[derive(Default)]
struct Started {
    pairs: Vec<String>,
    keep: bool,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for p in &self.pairs {
            eprintln!("bench: stopping pair {p}");
            if let Err(e) = run_script(&["stop", "--name", p]) {
                eprintln!("bench: {e}");
            }
        }
    }
}

/// Starts pair `name` with the script; `microbatch` turns CommitLog micro-batching back on
/// (the script writes `commitLogMicroBatchEnabled = false`) and restarts the broker.
fn start_pair(name: &str, np: u16, bp: u16, microbatch: bool) -> Result<String, String> {
    eprintln!("bench: starting pair {name} (127.0.0.1:{np} / {bp}) with scripts/rocketmq-local.sh");
    run_script(&[
        "start",
        "--name",
        name,
        "--namesrv-port",
        &np.to_string(),
        "--broker-port",
        &bp.to_string(),
    ])?;
    if microbatch {
        let conf = state_dir()
            .ok_or("no RMQ_STATE_DIR from the script")?
            .join(name)
            .join("broker.toml");
        let text =
            std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        if !text.contains("commitLogMicroBatchEnabled = true") {
            let new = if text.contains("commitLogMicroBatchEnabled = false") {
                text.replace(
                    "commitLogMicroBatchEnabled = false",
                    "commitLogMicroBatchEnabled = true",
                )
            } else {
                text
            };
            std::fs::write(&conf, new).map_err(|e| format!("{}: {e}", conf.display()))?;
            run_script(&["broker-stop", name])?;
            run_script(&["broker-start", name])?;
        }
    }
    Ok(format!("127.0.0.1:{np}"))
}

// ------------------------------------------------------------------------------------------
// The daemon child process
// ------------------------------------------------------------------------------------------

struct DaemonProc {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl DaemonProc {
    /// Spawns the daemon and waits until its socket accepts; returns it and (connect-ready,
    /// first-RPC-answered) times after exec.
    async fn spawn(bin: &Path, log: &Path) -> Result<(DaemonProc, Duration, Duration), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let socket = dir.path().join("rocketmq-pluggable.sock");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let t0 = Instant::now();
        let child = Command::new(bin)
            .arg("--socket-folder")
            .arg(dir.path())
            .arg("--shutdown-timeout")
            .arg("5s")
            .env_remove("DAPR_COMPONENTS_SOCKETS_FOLDER")
            .env_remove("ROCKETMQ_BINDING_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let mut d = DaemonProc {
            child,
            pid,
            _dir: dir,
            socket,
        };
        let accept = loop {
            if std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
                break t0.elapsed();
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!(
                    "daemon exited at start: {st} (log {})",
                    log.display()
                ));
            }
            if t0.elapsed() > Duration::from_secs(10) {
                d.stop().await;
                return Err("daemon socket not accepting after 10 s".into());
            }
            std::thread::sleep(Duration::from_micros(250));
        };
        let channel = rocketmq_binding::daemon::connect_uds(d.socket.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| format!("health check: {e}"))?;
        let rpc = t0.elapsed();
        Ok((d, accept, rpc))
    }

    /// SIGTERM and wait (SIGKILL after 15 s); returns the time to exit.
    async fn stop(&mut self) -> Duration {
        let t = Instant::now();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return t.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// The gRPC hop: a do-nothing OutputBinding server
// ------------------------------------------------------------------------------------------

// The server itself is examples/support/noop_binding.rs (shared with bench-dapr, where daprd
// discovers it as `bindings.noop-pluggable`). The daemon's row minus the raw producer's minus
// this one is what the daemon itself adds.

/// The do-nothing server as a child process (killed on drop).
struct NoopProc {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
    client: Daprd,
}

impl NoopProc {
    async fn spawn() -> Result<NoopProc, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let socket = dir.path().join(format!("{NOOP_SOCKET_NAME}.sock"));
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg(NOOP_FLAG)
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the noop server: {e}"))?;
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if t0.elapsed() > Duration::from_secs(10) || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                return Err("noop server did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = child.id();
        let client = Daprd::connect(&socket).await;
        Ok(NoopProc {
            child,
            pid,
            _dir: dir,
            client,
        })
    }
}

impl Drop for NoopProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// Raw client (on the daemon's ClientHost)
// ------------------------------------------------------------------------------------------

/// The raw client on the daemon's own construction ([`ClientHost`]: a client runtime on the
/// current Tokio runtime, here the benchmark's, with blocking lanes sized for the listeners).
/// On a separate `RuntimeOwner` instead, the raw producer cost 72–85 µs per message against
/// 59–70 µs here, so this is the stronger baseline.
struct RawHost(ClientHost);

impl RawHost {
    fn new(name: &str, listeners: usize) -> RawHost {
        RawHost(ClientHost::new(&format!("raw-{name}"), listeners).expect("client runtime"))
    }

    fn rt(&self) -> Arc<ClientRuntime> {
        self.0.client_runtime()
    }

    fn config(namesrv: &str, instance: &str) -> ClientConfig {
        ClientConfig::builder()
            .namesrv_addr(namesrv.to_string())
            .instance_name(instance.to_string())
            .build()
            .expect("client config")
    }

    async fn producer(&self, namesrv: &str, tag: &str) -> DefaultMQProducer {
        let mut p = DefaultMQProducer::builder(self.rt())
            .client_config(Self::config(namesrv, &format!("bench-raw-p-{tag}")))
            .producer_group(format!("bench_raw_pg_{tag}"))
            .send_msg_timeout(3000)
            .retry_times_when_send_failed(2)
            .build();
        p.start().await.expect("raw producer start");
        p
    }

    async fn shutdown(self) {
        self.0
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }
}

async fn raw_send(p: &DefaultMQProducer, topic: &str, body: &Bytes) -> bool {
    let msg = Message::builder()
        .topic(topic.to_string())
        .body(body.clone())
        .build_unchecked();
    matches!(p.send_with_timeout(msg, 3000).await, Ok(Some(_)))
}

struct DrainState {
    target: usize,
    count: AtomicUsize,
    first: OnceLock<Instant>,
    done: OnceLock<Instant>,
    app: Option<Duration>,
}

struct RawListener(Arc<DrainState>);

impl MessageListenerConcurrently for RawListener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let s = &self.0;
        s.first.get_or_init(Instant::now);
        if let Some(d) = s.app {
            std::thread::sleep(d);
        }
        let k = s.count.fetch_add(msgs.len(), Ordering::AcqRel) + msgs.len();
        if k >= s.target {
            s.done.get_or_init(Instant::now);
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

// ------------------------------------------------------------------------------------------
// Load drivers
// ------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Run {
    ok: usize,
    errors: usize,
    wall: Duration,
    timed_out: bool,
    /// Sorted latencies in microseconds.
    lat: Vec<u32>,
    cpu: CpuUse,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i] as f64 / 1000.0
    }
}

/// `c` workers issue `n` calls of `f` in total (or until `limit`).
async fn drive<F, Fut>(
    n: usize,
    c: usize,
    limit: Duration,
    pids: (Option<u32>, Option<u32>),
    f: F,
) -> Run
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let snap = Snap::take(pids.0, pids.1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c.max(1) {
        let (next, f) = (next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n / c.max(1) + 1);
            let (mut ok, mut err, mut timed_out) = (0usize, 0usize, false);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if start.elapsed() > limit {
                    timed_out = true;
                    break;
                }
                let t = Instant::now();
                if f(i).await {
                    ok += 1;
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    err += 1;
                }
            }
            (lat, ok, err, timed_out)
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        let (lat, ok, err, to) = t.await.expect("worker");
        run.lat.extend(lat);
        run.ok += ok;
        run.errors += err;
        run.timed_out |= to;
    }
    run.wall = start.elapsed();
    run.cpu = Snap::take(pids.0, pids.1).since(&snap, run.ok);
    run.lat.sort_unstable();
    run
}

fn invoke_fn(
    d: &Daprd,
    instance: &str,
    topic: &str,
    body: &Bytes,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Clone + Send + Sync + 'static
{
    let client = d.output.clone();
    let (instance, topic, body) = (instance.to_string(), topic.to_string(), body.clone());
    move |_| {
        let mut client = client.clone();
        let req = with_instance(
            &instance,
            InvokeRequest {
                data: body.clone(),
                metadata: HashMap::from([("rocketmq-topic".to_string(), topic.clone())]),
                operation: "create".into(),
            },
        );
        Box::pin(async move { client.invoke(req).await.is_ok() })
    }
}

fn raw_fn(
    p: &Arc<DefaultMQProducer>,
    topic: &str,
    body: &Bytes,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Clone + Send + Sync + 'static
{
    let (p, topic, body) = (p.clone(), topic.to_string(), body.clone());
    move |_| {
        let (p, topic, body) = (p.clone(), topic.clone(), body.clone());
        Box::pin(async move { raw_send(&p, &topic, &body).await })
    }
}

#[derive(Clone, Default)]
struct Drain {
    n: usize,
    /// Exec/Read → last message.
    total: Duration,
    /// First → last message.
    steady: Duration,
    duplicates: usize,
    timed_out: bool,
    cpu: CpuUse,
}

impl Drain {
    fn rate(&self) -> f64 {
        (self.n.saturating_sub(1)) as f64 / self.steady.as_secs_f64().max(1e-9)
    }
    fn rate_total(&self) -> f64 {
        self.n as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

struct InputCfg<'a> {
    namesrv: &'a str,
    topic: &'a str,
    threads: u32,
    pull_batch: Option<u32>,
    /// consumeMessageBatchMaxSize of both sides.
    batch: u32,
    max_in_flight: usize,
    limit: Duration,
}

async fn raw_drain(
    host: &RawHost,
    cfg: &InputCfg<'_>,
    n: usize,
    app: Option<Duration>,
    pids: (Option<u32>, Option<u32>),
) -> Drain {
    let group = unique("bench_raw_cg");
    let state = Arc::new(DrainState {
        target: n,
        count: AtomicUsize::new(0),
        first: OnceLock::new(),
        done: OnceLock::new(),
        app,
    });
    let mut c = DefaultMQPushConsumer::builder(host.rt())
        .client_config(RawHost::config(cfg.namesrv, &group))
        .consumer_group(group.clone())
        .message_model(MessageModel::Clustering)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(cfg.threads)
        .consume_thread_max(cfg.threads)
        .consume_message_batch_max_size(cfg.batch)
        .pull_batch_size(cfg.pull_batch.unwrap_or(32))
        .build();
    c.subscribe(cfg.topic.to_string(), "*".to_string())
        .await
        .expect("raw subscribe");
    c.register_message_listener_concurrently(RawListener(state.clone()));
    let snap = Snap::take(pids.0, pids.1);
    let t0 = Instant::now();
    c.start().await.expect("raw consumer start");
    while state.done.get().is_none() && t0.elapsed() < cfg.limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = Snap::take(pids.0, pids.1);
    let got = state.count.load(Ordering::Acquire);
    let end = state.done.get().copied().unwrap_or_else(Instant::now);
    let first = state.first.get().copied().unwrap_or(end);
    let d = Drain {
        n: got.min(n),
        total: end.duration_since(t0),
        steady: end.duration_since(first),
        duplicates: got.saturating_sub(n),
        timed_out: state.done.get().is_none(),
        cpu: cpu.since(&snap, got),
    };
    c.shutdown().await;
    d
}

async fn daemon_drain(
    daprd: &Daprd,
    instance: &str,
    cfg: &InputCfg<'_>,
    n: usize,
    app: Option<Duration>,
    pids: (Option<u32>, Option<u32>),
) -> Result<Drain, String> {
    let group = unique("bench_dmn_cg");
    let mut props = vec![
        ("accessProto".to_string(), "tcp".to_string()),
        ("nameServer".to_string(), cfg.namesrv.to_string()),
        ("topics".to_string(), cfg.topic.to_string()),
        ("consumerGroup".to_string(), group),
        (
            "fromWhere".to_string(),
            "ConsumeFromFirstOffset".to_string(),
        ),
        ("consumerThreadNums".to_string(), cfg.threads.to_string()),
        ("maxInFlight".to_string(), cfg.max_in_flight.to_string()),
        (
            "consumeMessageBatchMaxSize".to_string(),
            cfg.batch.to_string(),
        ),
    ];
    if let Some(b) = cfg.pull_batch {
        props.push(("consumerBatchSize".into(), b.to_string()));
    }
    daprd
        .init_input(instance, props.into_iter().collect())
        .await
        .map_err(|e| format!("input Init: {e}"))?;
    let snap = Snap::take(pids.0, pids.1);
    let t0 = Instant::now();
    let mut rs = daprd
        .read(instance)
        .await
        .map_err(|e| format!("Read: {e}"))?;
    let mut seen: HashSet<String> = HashSet::with_capacity(n);
    let mut got = 0usize;
    let mut first = None;
    let mut pending = Vec::new();
    let mut timed_out = false;
    while seen.len() < n {
        let left = cfg.limit.saturating_sub(t0.elapsed());
        let m = match tokio::time::timeout(left, rs.messages.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Err("Read stream ended".into()),
            Ok(Err(e)) => return Err(format!("Read stream failed: {e}")),
            Err(_) => {
                timed_out = true;
                break;
            }
        };
        first.get_or_insert_with(Instant::now);
        got += 1;
        if let Some(id) = m.metadata.get("rocketmq-message-id") {
            seen.insert(id.clone());
        }
        let ack = ReadRequest {
            response_data: Default::default(),
            message_id: m.message_id,
            response_error: None,
        };
        match app {
            None => {
                if rs.acks.send(ack).await.is_err() {
                    return Err("ack stream closed".into());
                }
            }
            Some(d) => {
                let tx = rs.acks.clone();
                pending.push(tokio::spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
                    let _ = tx.send(ack).await;
                }));
                if pending.len() > 4096 {
                    pending.retain(|h| !h.is_finished());
                }
            }
        }
    }
    let end = Instant::now();
    let cpu = Snap::take(pids.0, pids.1).since(&snap, got);
    for h in pending {
        let _ = h.await;
    }
    // Let the last acks reach the daemon before the stream is dropped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(rs);
    Ok(Drain {
        n: seen.len(),
        total: end.duration_since(t0),
        steady: end.duration_since(first.unwrap_or(end)),
        duplicates: got.saturating_sub(seen.len()),
        timed_out,
        cpu,
    })
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median run by throughput (its latencies and CPU go with it).
fn median_run(runs: &[Run]) -> Run {
    let mut v: Vec<&Run> = runs.iter().collect();
    v.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    v.get(v.len() / 2).map(|r| (*r).clone()).unwrap_or_default()
}

fn median_drain(runs: &[Drain]) -> Drain {
    let mut v: Vec<&Drain> = runs.iter().collect();
    v.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    v.get(v.len() / 2).map(|r| (*r).clone()).unwrap_or_default()
}

fn run_json(r: &Run) -> Value {
    json!({
        "ok": r.ok, "errors": r.errors, "timed_out": r.timed_out,
        "seconds": r.wall.as_secs_f64(), "per_sec": r.rate(),
        "p50_ms": r.pct(0.50), "p99_ms": r.pct(0.99), "p999_ms": r.pct(0.999),
        "max_ms": r.lat.last().map(|x| *x as f64 / 1000.0),
        "cpu": cpu_json(&r.cpu),
    })
}

fn drain_json(d: &Drain) -> Value {
    json!({
        "messages": d.n, "duplicates": d.duplicates, "timed_out": d.timed_out,
        "steady_per_sec": d.rate(), "total_per_sec": d.rate_total(),
        "first_to_last_s": d.steady.as_secs_f64(), "start_to_last_s": d.total.as_secs_f64(),
        "cpu": cpu_json(&d.cpu),
    })
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

// ------------------------------------------------------------------------------------------
// Phases
// ------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
async fn output_phase(
    label: &str,
    daprd: &Daprd,
    daemon_pid: u32,
    broker_pid: Option<u32>,
    namesrv: &str,
    plan: &Plan,
    rounds: usize,
    count_div: usize,
    table: &mut Vec<String>,
) -> Value {
    let instance = format!("bench-out-{label}");
    let topic = unique(&format!("bench_out_{}", label.replace('-', "_")));
    let props: HashMap<String, String> = [
        ("accessProto", "tcp"),
        ("nameServer", namesrv),
        ("producerGroup", "bench_pg"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Err(e) = daprd.init_output(&instance, props).await {
        eprintln!("bench: output Init on {namesrv} failed: {e}");
        return json!({"error": e.to_string()});
    }
    let body = Bytes::from(vec![b'x'; BODY_SIZE]);
    let host = RawHost::new(&format!("out-{label}"), 4);
    let raw = Arc::new(host.producer(namesrv, &label.replace('-', "_")).await);
    let pids = (Some(daemon_pid), broker_pid);
    // Warm-up: route, topic auto-creation and connections on both paths.
    let warm = if plan.smoke { 20 } else { 500 };
    let _ = drive(warm, 8, plan.limit, pids, raw_fn(&raw, &topic, &body)).await;
    let _ = drive(
        warm,
        8,
        plan.limit,
        pids,
        invoke_fn(daprd, &instance, &topic, &body),
    )
    .await;
    // The broker's send path JIT-compiled before the first measured row, so the first side of
    // round 1 does not run on a cold broker (a cold Java broker cost ~3x the CPU per message).
    if plan.broker_warmup > 0 {
        let _ = drive(
            plan.broker_warmup,
            16,
            plan.limit,
            pids,
            raw_fn(&raw, &topic, &body),
        )
        .await;
    }

    // The gRPC hop with nothing behind it, measured in the same rounds.
    let noop = match NoopProc::spawn().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("bench: {e}");
            return json!({"error": e});
        }
    };
    let noop_pids = (Some(noop.pid), None);
    let _ = drive(
        warm,
        8,
        plan.limit,
        noop_pids,
        invoke_fn(&noop.client, "noop", &topic, &body),
    )
    .await;

    reset_hwm(daemon_pid);
    let mut points = Vec::new();
    table.push(format!(
        "{:<5} {:>4} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6}",
        "side", "C", "msgs", "msg/s", "ratio", "p50 ms", "p99 ms", "p999 ms", "+p99 ms",
        "dmn us", "brk us", "bench us", "brk cor", "mach", "other", "errors"
    ));
    for &c in &plan.conc {
        let n = (plan.count_for(c) / count_div).max(10);
        let (mut raws, mut dmns, mut hops) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate the order so neither side always runs on a warmer broker.
            for side in if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] } {
                if side == 2 {
                    hops.push(
                        drive(
                            n,
                            c,
                            plan.limit,
                            noop_pids,
                            invoke_fn(&noop.client, "noop", &topic, &body),
                        )
                        .await,
                    );
                } else if side == 0 {
                    raws.push(drive(n, c, plan.limit, pids, raw_fn(&raw, &topic, &body)).await);
                } else {
                    dmns.push(
                        drive(
                            n,
                            c,
                            plan.limit,
                            pids,
                            invoke_fn(daprd, &instance, &topic, &body),
                        )
                        .await,
                    );
                }
            }
        }
        let (r, d, h) = (median_run(&raws), median_run(&dmns), median_run(&hops));
        let ratio = d.rate() / r.rate().max(1e-9);
        let added = d.pct(0.99) - r.pct(0.99);
        // What the daemon adds beyond the raw send and the bare gRPC hop, at the median.
        let beyond_hop_us = (d.pct(0.5) - r.pct(0.5) - h.pct(0.5)) * 1000.0;
        for (side, x) in [("raw", &r), ("dmn", &d), ("hop", &h)] {
            table.push(format!(
                "{:<5} {:>4} {:>9} {:>9.0} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>8} {:>8} {:>8.0} {:>8} {:>7.2} {:>7.2} {:>6}",
                side,
                c,
                x.ok,
                x.rate(),
                if side == "dmn" { format!("{ratio:.2}") } else { String::new() },
                x.pct(0.5),
                x.pct(0.99),
                x.pct(0.999),
                if side == "dmn" { format!("{added:+.2}") } else { String::new() },
                if side == "raw" { "-".into() } else { opt(x.cpu.daemon_us, 0) },
                opt(x.cpu.broker_us, 0),
                x.cpu.bench_us,
                opt(x.cpu.broker, 2),
                x.cpu.machine,
                x.cpu.other,
                x.errors,
            ));
        }
        points.push(json!({
            "concurrency": c, "messages": n,
            "raw": run_json(&r), "daemon": run_json(&d),
            "raw_rounds_per_sec": raws.iter().map(Run::rate).collect::<Vec<_>>(),
            "daemon_rounds_per_sec": dmns.iter().map(Run::rate).collect::<Vec<_>>(),
            "ratio_daemon_over_raw": ratio,
            "added_p99_ms": added,
            "added_p50_ms": d.pct(0.5) - r.pct(0.5),
            "hop": run_json(&h),
            "added_p50_beyond_hop_us": beyond_hop_us,
            "daemon_cpu_beyond_raw_producer_us": d.cpu.daemon_us.map(|u| u - r.cpu.bench_us),
        }));
        table.push(format!(
            "{:<5} {:>4} daemon p50 − raw p50 − hop p50 = {beyond_hop_us:+.0} µs; daemon CPU − raw producer CPU = {} µs/msg",
            "",
            c,
            d.cpu
                .daemon_us
                .map(|u| format!("{:+.0}", u - r.cpu.bench_us))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    let peak = hwm_mb(daemon_pid);
    let mut raw = Arc::try_unwrap(raw).ok();
    if let Some(p) = raw.as_mut() {
        p.shutdown().await;
    }
    host.shutdown().await;
    json!({
        "namesrv": namesrv, "topic": topic, "body_bytes": BODY_SIZE, "rounds": rounds,
        "points": points, "daemon_peak_rss_mb": peak,
    })
}

async fn input_phase(
    args: &Args,
    daprd: &Daprd,
    daemon_pid: u32,
    broker_pid: Option<u32>,
    namesrv: &str,
    plan: &Plan,
    table: &mut Vec<String>,
) -> Value {
    let topic = unique("bench_in");
    let n = plan.n;
    let pids = (Some(daemon_pid), broker_pid);
    let host = RawHost::new("in", args.consumer_threads as usize);
    // Backlog: n messages of 1 KiB.
    let body = Bytes::from(vec![b'y'; BODY_SIZE]);
    let raw = Arc::new(host.producer(namesrv, "in").await);
    let fill = drive(n, 64, plan.limit, pids, raw_fn(&raw, &topic, &body)).await;
    eprintln!(
        "bench: input backlog {} messages on {topic} ({:.0} msg/s, {} errors)",
        fill.ok,
        fill.rate(),
        fill.errors
    );
    let mut cfg = InputCfg {
        namesrv,
        topic: &topic,
        threads: args.consumer_threads,
        pull_batch: args.pull_batch,
        batch: 1,
        max_in_flight: args.max_in_flight,
        limit: plan.limit,
    };
    reset_hwm(daemon_pid);
    let mut modes = Vec::new();
    table.push(format!(
        "{:<10} {:<5} {:>7} {:>9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5}",
        "mode",
        "side",
        "msgs",
        "msg/s",
        "ratio",
        "w/start/s",
        "dmn us",
        "brk us",
        "bench us",
        "mach",
        "other",
        "dups"
    ));
    let app_d = Duration::from_millis(args.app_ms);
    let mut tcp_idle = None;
    let mut runs = vec![("immediate", None, 1), ("app", Some(app_d), 1)];
    if plan.consume_batch > 1 {
        runs.push(("batch", None, plan.consume_batch));
    }
    for (mode, app, batch) in runs {
        cfg.batch = batch;
        let (mut rs, mut ds) = (Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            rs.push(raw_drain(&host, &cfg, n, app, pids).await);
            match daemon_drain(daprd, "bench-in", &cfg, n, app, pids).await {
                Ok(d) => ds.push(d),
                Err(e) => eprintln!("bench: daemon input ({mode}): {e}"),
            }
        }
        let (r, d) = (median_drain(&rs), median_drain(&ds));
        let ratio = d.rate() / r.rate().max(1e-9);
        let mode_label = if app.is_some() {
            format!("app {}ms", args.app_ms)
        } else if batch > 1 {
            format!("batch {batch}")
        } else {
            mode.to_string()
        };
        for (side, x) in [("raw", &r), ("dmn", &d)] {
            table.push(format!(
                "{:<10} {:<5} {:>7} {:>9.0} {:>6} {:>9.0} {:>8} {:>8} {:>8.0} {:>7.2} {:>7.2} {:>5}",
                mode_label,
                side,
                x.n,
                x.rate(),
                if side == "dmn" { format!("{ratio:.2}") } else { String::new() },
                x.rate_total(),
                if side == "raw" { "-".into() } else { opt(x.cpu.daemon_us, 0) },
                opt(x.cpu.broker_us, 0),
                x.cpu.bench_us,
                x.cpu.machine,
                x.cpu.other,
                x.duplicates,
            ));
        }
        modes.push(json!({
            "mode": mode, "app_ms": app.map(|d| d.as_millis() as u64),
            "consume_message_batch_max_size": batch,
            "raw": drain_json(&r), "daemon": drain_json(&d),
            "raw_rounds_per_sec": rs.iter().map(Drain::rate).collect::<Vec<_>>(),
            "daemon_rounds_per_sec": ds.iter().map(Drain::rate).collect::<Vec<_>>(),
            "ratio_daemon_over_raw": ratio,
        }));
    }
    let peak = hwm_mb(daemon_pid);
    // Idle CPU of the TCP push consumer with an open Read stream and nothing to consume.
    if let Ok(mut rs) = daprd.read("bench-in").await {
        // Drain any stragglers (redeliveries), then measure.
        while let Ok(Ok(Some(m))) =
            tokio::time::timeout(Duration::from_millis(500), rs.messages.message()).await
        {
            rs.ack(&m.message_id).await;
        }
        let a = proc_cpu(daemon_pid);
        let t = Instant::now();
        tokio::time::sleep(plan.idle).await;
        if let (Some(a), Some(b)) = (a, proc_cpu(daemon_pid)) {
            tcp_idle = Some((b - a) / t.elapsed().as_secs_f64() * 100.0);
        }
    }
    let mut raw = Arc::try_unwrap(raw).ok();
    if let Some(p) = raw.as_mut() {
        p.shutdown().await;
    }
    host.shutdown().await;
    json!({
        "namesrv": namesrv, "topic": topic, "backlog": fill.ok, "rounds": plan.rounds,
        "consumer_threads": args.consumer_threads, "max_in_flight": args.max_in_flight,
        "pull_batch": args.pull_batch, "modes": modes, "daemon_peak_rss_mb": peak,
        "daemon_rss_after_mb": rss_mb(daemon_pid),
        "tcp_idle_consumer_cpu_pct": tcp_idle,
    })
}

async fn http_phase(bin: &Path, log: &Path, plan: &Plan, table: &mut Vec<String>) -> Value {
    let emu = match emulator::spawn(emulator::Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        HTTP_AK,
        HTTP_SK,
    ))
    .await
    {
        Ok(e) => e,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let (mut dp, _, _) = match DaemonProc::spawn(bin, log).await {
        Ok(x) => x,
        Err(e) => return json!({"error": e}),
    };
    let pid = dp.pid;
    let daprd = Daprd::connect(&dp.socket).await;
    let topic = "bench-http";
    let base = [
        ("accessProto", "http".to_string()),
        ("endpoint", emu.endpoint()),
        ("accessKey", HTTP_AK.to_string()),
        ("secretKey", HTTP_SK.to_string()),
        ("topics", topic.to_string()),
        ("consumerGroup", "GID_bench".to_string()),
    ];
    let props: HashMap<String, String> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut out = json!({"endpoint": emu.endpoint(), "messages": plan.http_n});
    if let Err(e) = daprd.init_output("bench-http-out", props.clone()).await {
        return json!({"error": format!("http output Init: {e}")});
    }
    if let Err(e) = daprd.init_input("bench-http-in", props).await {
        return json!({"error": format!("http input Init: {e}")});
    }
    let idle_rss = rss_mb(pid);
    reset_hwm(pid);
    let body = Bytes::from(vec![b'z'; BODY_SIZE]);
    let c = if plan.smoke { 4 } else { 16 };
    let publish = drive(
        plan.http_n,
        c,
        plan.limit,
        (Some(pid), None),
        invoke_fn(&daprd, "bench-http-out", topic, &body),
    )
    .await;
    out["publish"] = run_json(&publish);
    out["publish_concurrency"] = json!(c);
    // Consume + ack everything.
    let snap = Snap::take(Some(pid), None);
    let t0 = Instant::now();
    let mut consumed = 0usize;
    let mut first = None;
    let mut idle_pct = None;
    match daprd.read("bench-http-in").await {
        Ok(mut rs) => {
            while consumed < publish.ok && t0.elapsed() < plan.limit {
                match tokio::time::timeout(Duration::from_secs(35), rs.messages.message()).await {
                    Ok(Ok(Some(m))) => {
                        first.get_or_insert_with(Instant::now);
                        consumed += 1;
                        rs.ack(&m.message_id).await;
                    }
                    _ => break,
                }
            }
            let wall = t0.elapsed();
            let cpu = Snap::take(Some(pid), None).since(&snap, consumed);
            out["consume"] = json!({
                "messages": consumed,
                "per_sec": consumed as f64 / wall.as_secs_f64().max(1e-9),
                "seconds": wall.as_secs_f64(),
                "cpu": cpu_json(&cpu),
            });
            // Idle: the stream stays open, long polls run, nothing arrives.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let a = proc_cpu(pid);
            let t = Instant::now();
            tokio::time::sleep(plan.idle).await;
            if let (Some(a), Some(b)) = (a, proc_cpu(pid)) {
                idle_pct = Some((b - a) / t.elapsed().as_secs_f64() * 100.0);
            }
            drop(rs);
        }
        Err(e) => out["consume"] = json!({"error": e.to_string()}),
    }
    out["idle_consumer_cpu_pct"] = json!(idle_pct);
    out["idle_seconds"] = json!(plan.idle.as_secs_f64());
    out["daemon_idle_rss_mb"] = json!(idle_rss);
    out["daemon_peak_rss_mb"] = json!(hwm_mb(pid));
    out["emulator_messages"] = json!(emu.message_count());
    let cons_rate = out["consume"]["per_sec"].as_f64().unwrap_or(0.0);
    table.push(format!(
        "publish (C={c}): {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, {} errors | consume+ack: {} msgs, {:.0} msg/s | idle long-poll consumer: {} % of one core over {:.0} s | RSS idle {:.1} MB, peak {:.1} MB",
        publish.rate(),
        publish.pct(0.5),
        publish.pct(0.99),
        publish.errors,
        consumed,
        cons_rate,
        opt(idle_pct, 3),
        plan.idle.as_secs_f64(),
        idle_rss,
        hwm_mb(pid),
    ));
    drop(daprd);
    dp.stop().await;
    emu.shutdown().await;
    out
}

async fn startup_phase(bin: &Path, log: &Path, plan: &Plan) -> Value {
    let (mut acc, mut rpc, mut rss, mut stop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.startup_runs {
        match DaemonProc::spawn(bin, log).await {
            Ok((mut d, a, r)) => {
                acc.push(a.as_secs_f64() * 1000.0);
                rpc.push(r.as_secs_f64() * 1000.0);
                rss.push(rss_mb(d.pid));
                stop.push(d.stop().await.as_secs_f64() * 1000.0);
            }
            Err(e) => {
                eprintln!("bench: startup run failed: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let max = |v: &Vec<f64>| v.iter().cloned().fold(0.0, f64::max);
    json!({
        "runs": acc.len(),
        "socket_accepting_ms_median": median(acc.clone()),
        "socket_accepting_ms_max": max(&acc),
        "first_rpc_ms_median": median(rpc.clone()),
        "rss_at_ready_mb_median": median(rss),
        "sigterm_exit_ms_median": median(stop),
        "socket_accepting_ms_all": acc,
    })
}

// ------------------------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(NOOP_FLAG) {
        return noop_binding::serve_main(argv.get(2).map(PathBuf::from));
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench_main())
}

async fn bench_main() -> std::process::ExitCode {
    let args = Args::parse();
    let plan = Plan::new(&args);
    let t_all = Instant::now();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    let bin = match &args.daemon {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent().map(|d| d.join("rocketmq-binding")))
            .unwrap_or_else(|| manifest.join("target/release/rocketmq-binding")),
    };
    if !bin.is_file() {
        eprintln!(
            "bench: daemon binary {} not found; build it first (`cargo build --release --bins`, \
             or `cargo build --bins` for --smoke) or pass --daemon",
            bin.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let json_path = if args.json.is_absolute() {
        args.json.clone()
    } else {
        manifest.join(&args.json)
    };
    let out_dir = json_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join("target/bench"));
    let _ = std::fs::create_dir_all(&out_dir);
    let log = out_dir.join("daemon.log");
    let _ = std::fs::remove_file(&log);

    let mut started = Started {
        pairs: Vec::new(),
        keep: args.keep_servers,
    };
    let needs_tcp = phase(&args, "output") || phase(&args, "input");
    let (namesrv, broker_pid) = match (&args.namesrv, needs_tcp) {
        (Some(ns), _) => (Some(ns.clone()), args.broker_pid),
        (None, false) => (None, None),
        (None, true) => match start_pair(PAIR.0, PAIR.1, PAIR.2, false) {
            Ok(ns) => {
                started.pairs.push(PAIR.0.into());
                (
                    Some(ns),
                    args.broker_pid.or_else(|| pair_broker_pid(PAIR.0)),
                )
            }
            Err(e) => {
                eprintln!(
                    "bench: no --namesrv / ROCKETMQ_BENCH_NAMESRV and the pair could not start \
                     (install the servers: scripts/rocketmq-local.sh install):\n{e}"
                );
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    // Pairs the script runs on our dedicated ports (started here or by scripts/bench.sh).
    let broker_pid = broker_pid.or_else(|| {
        (namesrv.as_deref() == Some(&format!("127.0.0.1:{}", PAIR.1)))
            .then(|| pair_broker_pid(PAIR.0))
            .flatten()
    });
    let mb_namesrv = if args.no_microbatch || !phase(&args, "microbatch") {
        None
    } else if let Some(ns) = &args.microbatch_namesrv {
        Some(ns.clone())
    } else {
        match start_pair(PAIR_MB.0, PAIR_MB.1, PAIR_MB.2, true) {
            Ok(ns) => {
                started.pairs.push(PAIR_MB.0.into());
                Some(ns)
            }
            Err(e) => {
                eprintln!("bench: micro-batching broker skipped: {e}");
                None
            }
        }
    };

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut report = json!({
        "date": utc_now(),
        "cores": cores,
        "mode": if plan.smoke { "smoke" } else { "full" },
        "daemon_binary": bin.display().to_string(),
        "loadavg_start": loadavg(),
        "messages": plan.n, "rounds": plan.rounds, "concurrency": plan.conc,
        "namesrv": namesrv, "microbatch_namesrv": mb_namesrv, "broker_pid": broker_pid,
    });
    let mut text: Vec<String> = Vec::new();
    text.push(format!(
        "rocketmq-binding bench — {} — {cores} cores — {} — load avg at start {}",
        utc_now(),
        if plan.smoke { "SMOKE" } else { "full" },
        loadavg()
    ));

    let mut failed = false;

    if phase(&args, "startup") {
        eprintln!("bench: startup ({} runs)", plan.startup_runs);
        let s = startup_phase(&bin, &log, &plan).await;
        text.push(String::new());
        text.push(format!(
            "STARTUP  exec → socket accepting: median {:.1} ms (max {:.1}, n={}); first gRPC answer {:.1} ms; RSS at ready {:.1} MB; SIGTERM → exit {:.1} ms",
            s["socket_accepting_ms_median"].as_f64().unwrap_or(0.0),
            s["socket_accepting_ms_max"].as_f64().unwrap_or(0.0),
            s["runs"],
            s["first_rpc_ms_median"].as_f64().unwrap_or(0.0),
            s["rss_at_ready_mb_median"].as_f64().unwrap_or(0.0),
            s["sigterm_exit_ms_median"].as_f64().unwrap_or(0.0),
        ));
        failed |= s["runs"].as_u64() == Some(0);
        report["startup"] = s;
    }

    if let Some(ns) = namesrv.as_deref().filter(|_| needs_tcp) {
        match DaemonProc::spawn(&bin, &log).await {
            Err(e) => {
                eprintln!("bench: {e}");
                failed = true;
            }
            Ok((mut dp, _, _)) => {
                let pid = dp.pid;
                let daprd = Daprd::connect(&dp.socket).await;
                // Idle after Init: one output instance (producer started) and one input instance.
                let out_props: HashMap<String, String> = [
                    ("accessProto", "tcp"),
                    ("nameServer", ns),
                    ("producerGroup", "bench_pg"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let in_props: HashMap<String, String> = [
                    ("accessProto", "tcp"),
                    ("nameServer", ns),
                    ("topics", "bench_idle"),
                    ("consumerGroup", "bench_idle_cg"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let r1 = daprd.init_output("bench-out-idle", out_props).await;
                let r2 = daprd.init_input("bench-in", in_props).await;
                if let Err(e) = r1.as_ref().and(r2.as_ref()) {
                    eprintln!("bench: Init failed: {e}");
                    failed = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let idle = rss_mb(pid);
                let idle_hwm = hwm_mb(pid);
                let (file, anon) = rss_split_mb(pid);
                report["memory"] = json!({
                    "daemon_idle_rss_mb": idle, "daemon_hwm_after_init_mb": idle_hwm,
                    "daemon_idle_file_backed_mb": file, "daemon_idle_anonymous_mb": anon,
                });
                text.push(format!(
                    "MEMORY   daemon RSS idle after Init (tcp producer + input instance): {idle:.1} MB (VmHWM so far {idle_hwm:.1} MB); file-backed (code) {file:.1} MB, anonymous {anon:.1} MB"
                ));

                if phase(&args, "output") {
                    eprintln!("bench: output on {ns}");
                    text.push(String::new());
                    text.push(format!(
                        "OUTPUT   create vs raw producer, 1 KiB, broker {ns} (no CommitLog micro-batching), median of {} rounds; CPU in µs/msg and cores",
                        plan.rounds
                    ));
                    let v = output_phase(
                        "nomb",
                        &daprd,
                        pid,
                        broker_pid,
                        ns,
                        &plan,
                        plan.rounds,
                        1,
                        &mut text,
                    )
                    .await;
                    text.push(format!(
                        "         daemon peak RSS during output: {:.1} MB",
                        v["daemon_peak_rss_mb"].as_f64().unwrap_or(0.0)
                    ));
                    failed |= v.get("error").is_some();
                    report["output"] = v;
                }
                if phase(&args, "input") {
                    eprintln!("bench: input on {ns}");
                    text.push(String::new());
                    text.push(format!(
                        "INPUT    Read stream vs raw push consumer, backlog {} × 1 KiB, consumerThreadNums {}, maxInFlight {}, pull batch {}; msg/s = first→last delivery (w/start = from consumer start)",
                        plan.n,
                        args.consumer_threads,
                        args.max_in_flight,
                        args.pull_batch.map(|b| b.to_string()).unwrap_or_else(|| "32".into())
                    ));
                    let v = input_phase(&args, &daprd, pid, broker_pid, ns, &plan, &mut text).await;
                    text.push(format!(
                        "         daemon peak RSS during input: {:.1} MB; idle TCP consumer with open Read stream: {} % of one core",
                        v["daemon_peak_rss_mb"].as_f64().unwrap_or(0.0),
                        opt(v["tcp_idle_consumer_cpu_pct"].as_f64(), 3),
                    ));
                    report["input"] = v;
                }
                if let Some(mb) = mb_namesrv.as_deref() {
                    eprintln!("bench: output on the micro-batching broker {mb}");
                    text.push(String::new());
                    text.push(format!(
                        "OUTPUT (broker default: CommitLog micro-batching on, {mb}), 1 round, a quarter of the messages"
                    ));
                    let mb_pid = (mb == format!("127.0.0.1:{}", PAIR_MB.1))
                        .then(|| pair_broker_pid(PAIR_MB.0))
                        .flatten();
                    let v =
                        output_phase("mb", &daprd, pid, mb_pid, mb, &plan, 1, 4, &mut text).await;
                    report["output_microbatch_broker"] = v;
                }
                let peak = hwm_mb(pid);
                report["memory"]["daemon_rss_end_mb"] = json!(rss_mb(pid));
                drop(daprd);
                let stop = dp.stop().await;
                report["memory"]["sigterm_exit_ms_loaded"] = json!(stop.as_secs_f64() * 1000.0);
                let peaks = [
                    report["output"]["daemon_peak_rss_mb"].as_f64(),
                    report["input"]["daemon_peak_rss_mb"].as_f64(),
                    report["output_microbatch_broker"]["daemon_peak_rss_mb"].as_f64(),
                    Some(peak),
                ];
                let max_peak = peaks.iter().flatten().cloned().fold(idle_hwm, f64::max);
                report["memory"]["daemon_peak_rss_mb"] = json!(max_peak);
                text.push(format!(
                    "MEMORY   daemon peak RSS under the TCP loads: {max_peak:.1} MB; exit after SIGTERM {:.0} ms",
                    stop.as_secs_f64() * 1000.0
                ));
            }
        }
    }

    if phase(&args, "http") {
        eprintln!("bench: http transport against the emulator");
        text.push(String::new());
        text.push("HTTP     (in-process emulator, separate daemon)".into());
        let v = http_phase(&bin, &log, &plan, &mut text).await;
        failed |= v.get("error").is_some();
        report["http"] = v;
    }

    report["loadavg_end"] = json!(loadavg());
    report["seconds"] = json!(t_all.elapsed().as_secs_f64());
    text.push(String::new());
    text.push(format!(
        "done in {:.0} s; load avg at end {}; JSON: {}",
        t_all.elapsed().as_secs_f64(),
        loadavg(),
        json_path.display()
    ));
    println!("{}", text.join("\n"));
    if let Err(e) = std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    ) {
        eprintln!("bench: cannot write {}: {e}", json_path.display());
        failed = true;
    }
    drop(started);
    // A run that measured nothing must not pass: every failed send, timed-out load, error
    // or empty run anywhere in the report fails the benchmark (CI's smoke run included).
    let problems = unmeasured(&report, "");
    for p in &problems {
        eprintln!("bench: {p}");
    }
    failed |= !problems.is_empty();
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Every place in the report where a load failed: `error` entries, runs with failed sends, no
/// successful send, or a timeout, and drains that timed out or saw no message.
fn unmeasured(v: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            if let Some(e) = m.get("error") {
                out.push(format!("{path}: error {e}"));
            }
            if let Some(n) = m.get("errors").and_then(Value::as_u64).filter(|n| *n > 0) {
                out.push(format!("{path}: {n} failed sends"));
            }
            if m.get("ok").and_then(Value::as_u64) == Some(0) && m.contains_key("errors") {
                out.push(format!("{path}: no successful send"));
            }
            if m.get("timed_out").and_then(Value::as_bool) == Some(true) {
                out.push(format!("{path}: timed out"));
            }
            if m.get("messages").and_then(Value::as_u64) == Some(0) && m.contains_key("duplicates")
            {
                out.push(format!("{path}: no message consumed"));
            }
            for (k, x) in m {
                out.extend(unmeasured(x, &format!("{path}.{k}")));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                out.extend(unmeasured(x, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}
