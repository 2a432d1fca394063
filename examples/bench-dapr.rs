//! Side-by-side benchmark through the real daprd: Dapr's Go `bindings.rocketmq` vs ours
//! (`bindings.rocketmq-pluggable`), same daprd build, same broker, same run.
//!
//! ```sh
//! scripts/bench-dapr.sh            # release build, its own Java 5.3.3 pair, the full run
//! scripts/bench-dapr.sh --smoke    # seconds of load (CI): fails on any error or lost message
//! ```
//!
//! Every side runs in a daprd of its own, started from the same binary with the same flags:
//! `go` = daprd with one Go `bindings.rocketmq` Component (and an empty pluggable-socket
//! folder); `ours` = daprd with one `bindings.rocketmq-pluggable` Component plus our daemon on
//! its socket; in output rows also `noop` = daprd with one `bindings.noop-pluggable` Component
//! plus a do-nothing pluggable `OutputBinding` on its socket (examples/support/noop_binding.rs,
//! this example re-executed; Invoke answers at once with an empty success, as the Go binding's
//! create does, and no broker). (The Go binding keeps global clients, so a daprd can hold only
//! one instance of it; one daprd per side also makes every process's CPU and RSS belong to one
//! side.) Under each output concurrency the table prints daprd's own cost of the pluggable path
//! (daprd CPU per create with `noop` minus with `go`, and noop's latency and throughput against
//! go) and what our component adds beyond a component that does nothing (ours − noop).
//!
//! * Output: this process posts `create` to daprd's HTTP API (`POST /v1.0/bindings/<name>`,
//!   one keep-alive HTTP/1.1 connection per worker) and calls gRPC `Dapr/InvokeBinding` (one
//!   HTTP/2 channel), 1 KiB bodies, at each concurrency, the sides alternating row by row
//!   (which goes first rotates with the round).
//! * Input: a backlog of N messages is sent to a fresh topic with no consumer running; then
//!   daprd (and our daemon) start with a fresh consumer group and deliver everything to an app
//!   in this process (HTTP: `POST /<name>`; gRPC: `AppCallback/OnBindingEvent`) that answers at
//!   once or after sleeping 1 ms. Timed from the first to the last delivery (and from daprd's
//!   exec: "w/start").
//!
//! CPU per message for every process (daprd, daemon, broker, this process = load generator in
//! output rows / app in input rows) is the utime+stime delta in /proc/<pid>/stat over the row
//! divided by the messages of the row; RSS is VmHWM (reset through clear_refs at the start of
//! the row). `mach` = busy cores of the whole machine, `other` = the part no listed process
//! explains (other users of the machine, the name server).

#![recursion_limit = "256"]

#[path = "support/noop_binding.rs"]
mod noop_binding;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpListener as StdTcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use noop_binding::{NOOP_FLAG, NOOP_SOCKET_NAME};
use rocketmq_binding::transport::tcp::host::ClientHost;
use rocketmq_client_rust::{ClientConfig, DefaultMQProducer};
use rocketmq_model::common::message::message_single::Message;
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::Notify};
use tonic::codegen::{BoxFuture, http};

const BODY: usize = 1024;

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Dapr's Go bindings.rocketmq vs bindings.rocketmq-pluggable under the same daprd"
)]
struct Args {
    /// Seconds of load: one round, concurrency 4, 200 messages per row. Fails on any error.
    #[arg(long)]
    smoke: bool,
    /// Name server of the broker (127.0.0.1:port).
    #[arg(long)]
    namesrv: String,
    /// Broker pid (for its CPU per message).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Name server pid (JSON only).
    #[arg(long)]
    namesrv_pid: Option<u32>,
    /// The daprd binary (scripts/daprd-local.sh path).
    #[arg(long)]
    daprd: PathBuf,
    /// Our daemon. Default: rocketmq-binding next to this example's profile dir.
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Messages per output row at concurrency >= 16 (a quarter at lower concurrency).
    /// Default 20000 (smoke 200).
    #[arg(long)]
    messages: Option<usize>,
    /// Input backlog per row. Default 20000 (smoke 200).
    #[arg(long)]
    backlog: Option<usize>,
    /// Messages a raw producer in this process sends to a topic of its own before the first
    /// row (not recorded), so the broker's JIT-compiled send path is warm for every side, not
    /// only for the sides after the first. Default 30000 (smoke 0).
    #[arg(long)]
    broker_warmup: Option<usize>,
    /// Rounds; which side goes first rotates (go, ours, noop). Default 3 (smoke 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Output concurrencies. Default 1,16,64 (smoke 4).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// maxInFlight (and consumerThreadNums) of our input Component. Default 20: the Go
    /// binding's fixed ConsumeGoroutineNums (20 consume goroutines per topic in
    /// rocketmq-client-go's push consumer), so both sides have the same messages in flight.
    #[arg(long, alias = "consumer-threads", default_value_t = 20)]
    in_flight: u32,
    /// Extra metadata of our Components (input and output), `KEY=VALUE`, repeatable: e.g.
    /// `--ours-md maxSendBatch=1` for sends without coalescing.
    #[arg(long = "ours-md", value_parser = parse_kv)]
    ours_md: Vec<(String, String)>,
    /// App time per message in the slow input rows, milliseconds.
    #[arg(long, default_value_t = 1)]
    app_ms: u64,
    /// Phases: output,input (default both).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Time limit of each single load, seconds. Default 120 (smoke 30).
    #[arg(long)]
    limit_secs: Option<u64>,
    /// JSON results file.
    #[arg(long, default_value = "target/bench/bench-dapr.json")]
    json: PathBuf,
    /// Work folder (component files, sockets, logs, pid files of what this run starts).
    #[arg(long, default_value = "target/bench/dapr")]
    work: PathBuf,
}

// ------------------------------------------------------------------------------------------
// Dapr runtime API messages (dapr/proto/runtime/v1: binding.proto, appcallback.proto), only
// the fields used here, with daprd's field numbers.
// ------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct InvokeBindingRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
    #[prost(map = "string, string", tag = "3")]
    metadata: std::collections::HashMap<String, String>,
    #[prost(string, tag = "4")]
    operation: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InvokeBindingResponse {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
    #[prost(map = "string, string", tag = "2")]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BindingEventRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
    #[prost(map = "string, string", tag = "3")]
    metadata: std::collections::HashMap<String, String>,
}

/// `store_name`, `states`, `to`, `concurrency` stay unset: daprd then does nothing more.
#[derive(Clone, PartialEq, prost::Message)]
struct BindingEventResponse {
    #[prost(bytes = "bytes", tag = "4")]
    data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
struct ListInputBindingsResponse {
    #[prost(string, repeated, tag = "1")]
    bindings: Vec<String>,
}

// ------------------------------------------------------------------------------------------
// /proc
// ------------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime in seconds.
fn proc_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let u: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((u + st) / clk_tck())
}

/// Busy seconds of the whole machine.
fn machine_busy() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return 0.0;
    }
    (v.iter().sum::<f64>() - v[3] - v[4]) / clk_tck()
}

fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

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

/// The processes of one row.
#[derive(Clone, Copy, Default)]
struct Pids {
    daprd: Option<u32>,
    daemon: Option<u32>,
    broker: Option<u32>,
    namesrv: Option<u32>,
}

#[derive(Clone, Copy)]
struct Snap {
    t: Instant,
    cpu: [Option<f64>; 5],
    busy: f64,
}

impl Snap {
    fn take(p: &Pids) -> Snap {
        Snap {
            t: Instant::now(),
            cpu: [
                p.daprd.and_then(proc_cpu),
                p.daemon.and_then(proc_cpu),
                p.broker.and_then(proc_cpu),
                p.namesrv.and_then(proc_cpu),
                proc_cpu(std::process::id()),
            ],
            busy: machine_busy(),
        }
    }
}

/// CPU over a row: µs per message and cores, per process.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// daprd, daemon, broker, name server, this process (load generator / app).
    us: [Option<f64>; 5],
    cores: [Option<f64>; 5],
    machine: f64,
    other: f64,
}

fn cpu_between(a: &Snap, b: &Snap, msgs: usize) -> Cpu {
    let wall = b.t.duration_since(a.t).as_secs_f64().max(1e-6);
    let mut c = Cpu::default();
    let mut listed = 0.0;
    for i in 0..5 {
        if let (Some(x), Some(y)) = (a.cpu[i], b.cpu[i]) {
            let d = (y - x).max(0.0);
            listed += d;
            c.us[i] = Some(d * 1e6 / msgs.max(1) as f64);
            c.cores[i] = Some(d / wall);
        }
    }
    let busy = (b.busy - a.busy).max(0.0);
    c.machine = busy / wall;
    c.other = ((busy - listed) / wall).max(0.0);
    c
}

// ------------------------------------------------------------------------------------------
// Child processes
// ------------------------------------------------------------------------------------------

/// A child of this run: killed with us (PR_SET_PDEATHSIG), on drop, and its pid is in a file
/// of the work folder so scripts/bench-dapr.sh can stop it if this process is killed.
struct Proc {
    name: String,
    child: Child,
    pidfile: PathBuf,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, work: &Path) -> Result<Proc, String> {
        let log = work.join("logs").join(format!("{name}.log"));
        let f = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pidfile = work.join("pids").join(format!("{name}.pid"));
        let _ = std::fs::write(&pidfile, child.id().to_string());
        Ok(Proc {
            name: name.into(),
            child,
            pidfile,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self, bytes: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let cut = s.len().saturating_sub(bytes);
        let cut = (cut..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        format!(
            "----- {} ({})\n{}",
            self.name,
            self.log.display(),
            &s[cut..]
        )
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) {
        if self.alive() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + grace;
            while self.alive() && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 100_000_000;
    format!("{prefix}-{t}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// GET on 127.0.0.1:port, returns the status code.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

// ------------------------------------------------------------------------------------------
// Sides, daprd, daemon
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Go,
    Ours,
    /// Output only: the do-nothing pluggable binding (examples/support/noop_binding.rs).
    Noop,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Go => "go",
            Side::Ours => "ours",
            Side::Noop => "noop",
        }
    }

    /// The Component's `spec.type`.
    fn component_type(self) -> &'static str {
        match self {
            Side::Go => "bindings.rocketmq",
            Side::Ours => "bindings.rocketmq-pluggable",
            Side::Noop => "bindings.noop-pluggable",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Http,
    Grpc,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Http => "http",
            Api::Grpc => "grpc",
        }
    }
}

struct Env {
    namesrv: String,
    broker_pid: Option<u32>,
    namesrv_pid: Option<u32>,
    daprd_bin: PathBuf,
    daemon_bin: PathBuf,
    work: PathBuf,
    in_flight: u32,
    /// `--ours-md`.
    ours_md: Vec<(String, String)>,
    limit: Duration,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

const DAPRD_CONFIG: &str = "apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: bench
spec:
  nameResolution:
    component: kubernetes
";

fn component_yaml(side: Side, name: &str, md: &[(&str, String)]) -> String {
    let ty = side.component_type();
    let mut s = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n"
    );
    for (k, v) in md {
        s.push_str(&format!("    - name: {k}\n      value: {}\n", json!(v)));
    }
    s
}

/// One side's daprd (and daemon), on fresh ports and folders.
struct Sidecar {
    side: Side,
    component: String,
    daprd: Proc,
    daemon: Option<Proc>,
    http_port: u16,
    grpc_port: u16,
}

impl Sidecar {
    fn pids(&self, env: &Env) -> Pids {
        Pids {
            daprd: Some(self.daprd.pid()),
            daemon: self.daemon.as_ref().map(Proc::pid),
            broker: env.broker_pid,
            namesrv: env.namesrv_pid,
        }
    }

    fn reset_hwm(&self) {
        reset_hwm(self.daprd.pid());
        if let Some(d) = &self.daemon {
            reset_hwm(d.pid());
        }
    }

    /// (daprd, daemon) VmHWM in MB.
    fn hwm(&self) -> (f64, Option<f64>) {
        (
            status_mb(self.daprd.pid(), "VmHWM:").unwrap_or(0.0),
            self.daemon
                .as_ref()
                .map(|d| status_mb(d.pid(), "VmHWM:").unwrap_or(0.0)),
        )
    }

    fn logs(&self) -> String {
        let mut s = self.daprd.log_tail(4000);
        if let Some(d) = &self.daemon {
            s.push('\n');
            s.push_str(&d.log_tail(2000));
        }
        s
    }

    async fn check_alive(&mut self) -> Result<(), String> {
        let dead = !self.daprd.alive() || self.daemon.as_mut().is_some_and(|d| !d.alive());
        if dead {
            return Err(format!(
                "{} side: a process exited\n{}",
                self.side.name(),
                self.logs()
            ));
        }
        Ok(())
    }

    async fn stop(mut self) {
        // daprd first: it holds the daemon's connections.
        self.daprd.stop(Duration::from_secs(5)).await;
        if let Some(d) = self.daemon.as_mut() {
            d.stop(Duration::from_secs(5)).await;
        }
    }

    /// Starts daemon (ours) then daprd with one Component; waits for /v1.0/healthz/outbound.
    async fn start(
        env: &Env,
        side: Side,
        tag: &str,
        metadata: &[(&str, String)],
        app: Option<(u16, Api)>,
    ) -> Result<Sidecar, String> {
        let dir = env.work.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        let res = dir.join("res");
        let sockets = dir.join("s");
        std::fs::create_dir_all(&res).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&sockets).map_err(|e| e.to_string())?;
        let component = format!("bench-{}", side.name());
        let mut metadata = metadata.to_vec();
        if side == Side::Ours {
            // `--ours-md` replaces a key the bench set itself (e.g. `maxInFlight=64`).
            metadata.retain(|(k, _)| !env.ours_md.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)));
            metadata.extend(env.ours_md.iter().map(|(k, v)| (k.as_str(), v.clone())));
        }
        std::fs::write(
            res.join("component.yaml"),
            component_yaml(side, &component, &metadata),
        )
        .map_err(|e| e.to_string())?;
        let config = dir.join("config.yaml");
        std::fs::write(&config, DAPRD_CONFIG).map_err(|e| e.to_string())?;

        // The pluggable side's process must accept on its socket before daprd starts: daprd
        // scans the folder once, at startup.
        let daemon = if side != Side::Go {
            let (cmd, sock) = if side == Side::Ours {
                let mut cmd = Command::new(&env.daemon_bin);
                cmd.arg("--socket-folder").arg(&sockets);
                (cmd, sockets.join("rocketmq-pluggable.sock"))
            } else {
                let sock = sockets.join(format!("{NOOP_SOCKET_NAME}.sock"));
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut cmd = Command::new(exe);
                cmd.arg(NOOP_FLAG).arg(&sock);
                (cmd, sock)
            };
            let mut d = Proc::spawn(&format!("{tag}-{}", side.name()), cmd, &env.work)?;
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                    break;
                }
                if !d.alive() || Instant::now() > end {
                    return Err(format!(
                        "{} server did not open {}\n{}",
                        side.name(),
                        sock.display(),
                        d.log_tail(3000)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(d)
        } else {
            None
        };

        let (http_port, grpc_port, internal) = (free_port(), free_port(), free_port());
        let mut cmd = Command::new(&env.daprd_bin);
        cmd.args(["--app-id", tag])
            .arg("--resources-path")
            .arg(&res)
            .args(["--dapr-http-port", &http_port.to_string()])
            .args(["--dapr-grpc-port", &grpc_port.to_string()])
            .args(["--dapr-internal-grpc-port", &internal.to_string()])
            .args(["--dapr-listen-addresses", "127.0.0.1"])
            .args(["--dapr-internal-grpc-listen-address", "127.0.0.1"])
            .args([
                "--enable-metrics=false",
                "--dapr-graceful-shutdown-seconds",
                "1",
            ])
            .arg("--config")
            .arg(&config)
            .env("DAPR_COMPONENTS_SOCKETS_FOLDER", &sockets);
        if let Some((port, api)) = app {
            cmd.args(["--app-port", &port.to_string()])
                .args(["--app-protocol", api.name()])
                .args(["--app-channel-address", "127.0.0.1"]);
        }
        let daprd = Proc::spawn(&format!("{tag}-daprd"), cmd, &env.work)?;
        let mut sc = Sidecar {
            side,
            component,
            daprd,
            daemon,
            http_port,
            grpc_port,
        };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            sc.check_alive().await?;
            if http_status(http_port, "/v1.0/healthz/outbound").await == Some(204) {
                break;
            }
            if Instant::now() > end {
                return Err(format!("daprd not healthy after 60 s\n{}", sc.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(sc)
    }
}

// ------------------------------------------------------------------------------------------
// Rows
// ------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Row {
    side: &'static str,
    /// "out-http", "out-grpc", "in-http", "in-grpc".
    kind: String,
    /// Output: concurrency; input: app ms.
    param: u64,
    round: usize,
    target: usize,
    ok: usize,
    errors: usize,
    dups: usize,
    timed_out: bool,
    rate: f64,
    /// Input: N / (last delivery - daprd exec).
    rate_w_start: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    cpu: Cpu,
    rss_daprd: f64,
    rss_daemon: Option<f64>,
    first_error: Option<String>,
}

impl Row {
    fn key(&self) -> (String, u64) {
        (self.kind.clone(), self.param)
    }

    fn failed(&self) -> bool {
        self.errors > 0 || self.ok < self.target || self.timed_out || self.dups > 0
    }

    fn json(&self) -> Value {
        let names = ["daprd", "daemon", "broker", "namesrv", "bench"];
        let mut us = serde_json::Map::new();
        let mut cores = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            us.insert((*n).into(), json!(self.cpu.us[i]));
            cores.insert((*n).into(), json!(self.cpu.cores[i]));
        }
        json!({
            "side": self.side, "kind": self.kind, "param": self.param, "round": self.round,
            "target": self.target, "ok": self.ok, "errors": self.errors, "dups": self.dups,
            "timed_out": self.timed_out, "msg_per_s": self.rate,
            "msg_per_s_with_start": self.rate_w_start,
            "p50_ms": self.p50, "p99_ms": self.p99, "p999_ms": self.p999,
            "cpu_us_per_msg": us, "cores": cores,
            "machine_cores": self.cpu.machine, "other_cores": self.cpu.other,
            "rss_mb": {"daprd": self.rss_daprd, "daemon": self.rss_daemon},
            "first_error": self.first_error,
        })
    }
}

fn pct(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1000.0)
}

/// One output worker's connection to daprd.
enum Conn {
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
}

async fn http_conn(port: u16) -> Result<Conn, String> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn::Http(send))
}

struct OutReq {
    name: String,
    http_body: Bytes,
    grpc: InvokeBindingRequest,
    port: u16,
}

/// One `create`; Err = the status or transport error.
async fn invoke(conn: &mut Conn, r: &OutReq) -> Result<(), String> {
    match conn {
        Conn::Http(send) => {
            send.ready().await.map_err(|e| e.to_string())?;
            let req = http::Request::post(format!("/v1.0/bindings/{}", r.name))
                .header("host", format!("127.0.0.1:{}", r.port))
                .header("content-type", "application/json")
                .body(Full::new(r.http_body.clone()))
                .map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body.to_bytes())
                ))
            }
        }
        Conn::Grpc(g) => {
            g.ready().await.map_err(|e| e.to_string())?;
            let path =
                http::uri::PathAndQuery::from_static("/dapr.proto.runtime.v1.Dapr/InvokeBinding");
            let res: Result<tonic::Response<InvokeBindingResponse>, tonic::Status> = g
                .unary(
                    tonic::Request::new(r.grpc.clone()),
                    path,
                    tonic_prost::ProstCodec::default(),
                )
                .await;
            res.map(|_| ())
                .map_err(|e| format!("gRPC {:?}: {}", e.code(), e.message()))
        }
    }
}

async fn connect_all(api: Api, sc: &Sidecar, c: usize) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(c);
    match api {
        Api::Http => {
            for _ in 0..c {
                conns.push(http_conn(sc.http_port).await?);
            }
        }
        Api::Grpc => {
            let ch = tonic::transport::Endpoint::from_shared(format!(
                "http://127.0.0.1:{}",
                sc.grpc_port
            ))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
            for _ in 0..c {
                conns.push(Conn::Grpc(tonic::client::Grpc::new(ch.clone())));
            }
        }
    }
    Ok(conns)
}

fn out_request(sc: &Sidecar, topic: &str) -> OutReq {
    let pad: String = "x".repeat(BODY);
    let md = [("rocketmq-topic", topic), ("rocketmq-tag", "bench")];
    let http_body = json!({
        "operation": "create",
        "data": pad,
        "metadata": md.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
    .to_string();
    OutReq {
        name: sc.component.clone(),
        http_body: Bytes::from(http_body),
        grpc: InvokeBindingRequest {
            name: sc.component.clone(),
            data: Bytes::from(pad.into_bytes()),
            metadata: md.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            operation: "create".into(),
        },
        port: sc.http_port,
    }
}

/// `c` workers send `n` creates in total through daprd.
async fn output_row(
    env: &Env,
    sc: &mut Sidecar,
    api: Api,
    topic: &str,
    c: usize,
    n: usize,
    round: usize,
) -> Result<Row, String> {
    let conns = connect_all(api, sc, c).await?;
    let req = Arc::new(out_request(sc, topic));
    let next = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let pids = sc.pids(env);
    sc.reset_hwm();
    let limit = env.limit;
    let a = Snap::take(&pids);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (next, req, first_error) = (next.clone(), req.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(n / c + 1);
            let (mut err, mut timed_out) = (0usize, false);
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
                if start.elapsed() > limit {
                    timed_out = true;
                    break;
                }
                let t = Instant::now();
                match invoke(&mut conn, &req).await {
                    Ok(()) => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(e) => {
                        err += 1;
                        first_error.lock().unwrap().get_or_insert(e);
                        if err > 20 {
                            break; // a broken side: stop hammering it
                        }
                    }
                }
            }
            (lat, err, timed_out)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut row = Row {
        side: sc.side.name(),
        kind: format!("out-{}", api.name()),
        param: c as u64,
        round,
        target: n,
        ..Row::default()
    };
    for t in tasks {
        let (l, e, to) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        row.errors += e;
        row.timed_out |= to;
    }
    let wall = start.elapsed();
    let b = Snap::take(&pids);
    lat.sort_unstable();
    row.ok = lat.len();
    row.rate = row.ok as f64 / wall.as_secs_f64().max(1e-9);
    row.p50 = pct(&lat, 0.50);
    row.p99 = pct(&lat, 0.99);
    row.p999 = pct(&lat, 0.999);
    row.cpu = cpu_between(&a, &b, row.ok);
    (row.rss_daprd, row.rss_daemon) = sc.hwm();
    row.first_error = first_error.lock().unwrap().take();
    sc.check_alive().await?;
    Ok(row)
}

// ------------------------------------------------------------------------------------------
// Apps (input)
// ------------------------------------------------------------------------------------------

struct AppState {
    route: String,
    n: usize,
    seen: Vec<AtomicU64>,
    count: AtomicUsize,
    dups: AtomicUsize,
    unparsed: AtomicUsize,
    first: OnceLock<Instant>,
    done: OnceLock<Instant>,
    first_n: Notify,
    done_n: Notify,
    delay: Option<Duration>,
}

impl AppState {
    fn new(route: &str, n: usize, delay: Option<Duration>) -> AppState {
        AppState {
            route: route.into(),
            n,
            seen: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
            dups: AtomicUsize::new(0),
            unparsed: AtomicUsize::new(0),
            first: OnceLock::new(),
            done: OnceLock::new(),
            first_n: Notify::new(),
            done_n: Notify::new(),
            delay,
        }
    }

    /// Handles one delivery (after the app's "work").
    fn record(&self, body: &[u8]) {
        if self.first.set(Instant::now()).is_ok() {
            self.first_n.notify_one();
        }
        let Some(i) = body_index(body).filter(|&i| i < self.n) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let bit = 1u64 << (i % 64);
        if self.seen[i / 64].fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            self.dups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            let _ = self.done.set(Instant::now());
            self.done_n.notify_one();
        }
    }

    async fn work(&self) {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
    }
}

/// The index in a backlog body `{"i":123,"p":"..."}`.
fn body_index(b: &[u8]) -> Option<usize> {
    let rest = b.strip_prefix(b"{\"i\":")?;
    let end = rest.iter().position(|c| !c.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn backlog_body(i: usize) -> Bytes {
    let head = format!("{{\"i\":{i},\"p\":\"");
    let mut s = head.clone();
    s.push_str(&"y".repeat(BODY.saturating_sub(head.len() + 2)));
    s.push_str("\"}");
    Bytes::from(s)
}

/// A running app; dropping it stops the server.
struct App {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn http_app(state: Arc<AppState>) -> Result<App, String> {
    use hyper::{Method, Response, StatusCode, body::Incoming, service::service_fn};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = l.accept().await else { break };
            let _ = s.set_nodelay(true);
            let state = state.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let ok = req.uri().path().strip_prefix('/') == Some(state.route.as_str());
                        let status = match (req.method(), ok) {
                            (&Method::OPTIONS, true) => StatusCode::OK,
                            (&Method::POST, true) => {
                                let body = req.into_body().collect().await?.to_bytes();
                                state.work().await;
                                state.record(&body);
                                StatusCode::OK
                            }
                            _ => StatusCode::NOT_FOUND,
                        };
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status;
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Ok(App { port, task })
}

/// `dapr.proto.runtime.v1.AppCallback` with ListInputBindings and OnBindingEvent; every other
/// method answers UNIMPLEMENTED (what daprd expects of an app without pub/sub).
#[derive(Clone)]
struct AppCallback(Arc<AppState>);

impl tonic::server::NamedService for AppCallback {
    const NAME: &'static str = "dapr.proto.runtime.v1.AppCallback";
}

struct OnBindingEvent(Arc<AppState>);

impl tonic::server::UnaryService<BindingEventRequest> for OnBindingEvent {
    type Response = BindingEventResponse;
    type Future = BoxFuture<tonic::Response<BindingEventResponse>, tonic::Status>;
    fn call(&mut self, req: tonic::Request<BindingEventRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let req = req.into_inner();
            if req.name != state.route {
                return Err(tonic::Status::not_found(format!("no binding {}", req.name)));
            }
            state.work().await;
            state.record(&req.data);
            Ok(tonic::Response::new(BindingEventResponse::default()))
        })
    }
}

struct ListInputBindings(Arc<AppState>);

impl tonic::server::UnaryService<Empty> for ListInputBindings {
    type Response = ListInputBindingsResponse;
    type Future = BoxFuture<tonic::Response<ListInputBindingsResponse>, tonic::Status>;
    fn call(&mut self, _req: tonic::Request<Empty>) -> Self::Future {
        let name = self.0.route.clone();
        Box::pin(async move {
            Ok(tonic::Response::new(ListInputBindingsResponse {
                bindings: vec![name],
            }))
        })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for AppCallback
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.0.clone();
        match req.uri().path() {
            "/dapr.proto.runtime.v1.AppCallback/OnBindingEvent" => Box::pin(async move {
                let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(g.unary(OnBindingEvent(state), req).await)
            }),
            "/dapr.proto.runtime.v1.AppCallback/ListInputBindings" => Box::pin(async move {
                let mut g = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(g.unary(ListInputBindings(state), req).await)
            }),
            _ => Box::pin(async move {
                let mut r = http::Response::new(tonic::body::Body::default());
                let h = r.headers_mut();
                h.insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                h.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(r)
            }),
        }
    }
}

async fn grpc_app(state: Arc<AppState>) -> Result<App, String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    // serve_with_incoming ignores the builder's tcp_nodelay: set it on each connection.
    let incoming =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(l), |r| {
            r.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(AppCallback(state))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(App { port, task })
}

// ------------------------------------------------------------------------------------------
// Backlog producer
// ------------------------------------------------------------------------------------------

struct Loader {
    host: ClientHost,
    producer: Arc<DefaultMQProducer>,
}

impl Loader {
    async fn new(namesrv: &str) -> Result<Loader, String> {
        let host = ClientHost::new("bench-dapr-loader", 4).map_err(|e| e.to_string())?;
        let cfg = ClientConfig::builder()
            .namesrv_addr(namesrv.to_string())
            .instance_name(unique("bench-dapr-loader"))
            .build()
            .map_err(|e| e.to_string())?;
        let mut p = DefaultMQProducer::builder(host.client_runtime())
            .client_config(cfg)
            .producer_group("bench_dapr_loader".to_string())
            .send_msg_timeout(3000)
            .retry_times_when_send_failed(2)
            .build();
        p.start()
            .await
            .map_err(|e| format!("backlog producer start: {e}"))?;
        Ok(Loader {
            host,
            producer: Arc::new(p),
        })
    }

    /// Sends bodies 0..n to `topic` with 32 senders; every send must succeed.
    async fn load(&self, topic: &str, n: usize, limit: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (p, next, topic) = (self.producer.clone(), next.clone(), topic.to_string());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    if t0.elapsed() > limit {
                        return Err(format!("backlog load over {} s", limit.as_secs()));
                    }
                    let msg = Message::builder()
                        .topic(topic.clone())
                        .tags("bench".to_string())
                        .body(backlog_body(i))
                        .build_unchecked();
                    match p.send_with_timeout(msg, 3000).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return Err("backlog send: no result".to_string()),
                        Err(e) => return Err(format!("backlog send: {e}")),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(t0.elapsed())
    }
}

/// Backlog of `n` on a fresh topic, then daprd (+ daemon) start and deliver all to the app.
async fn input_row(
    env: &Env,
    loader: &Loader,
    side: Side,
    api: Api,
    app_ms: u64,
    n: usize,
    round: usize,
) -> Result<Row, String> {
    let topic = unique(&format!("bdi-{}", side.name()));
    let group = unique(&format!("GID_bdi_{}", side.name())).replace('-', "_");
    let load_t = loader.load(&topic, n, env.limit).await?;
    eprintln!(
        "bench-dapr:   backlog {n} on {topic} in {:.1} s",
        load_t.as_secs_f64()
    );
    let component = format!("bench-{}", side.name());
    let state = Arc::new(AppState::new(
        &component,
        n,
        (app_ms > 0).then(|| Duration::from_millis(app_ms)),
    ));
    let app = match api {
        Api::Http => http_app(state.clone()).await?,
        Api::Grpc => grpc_app(state.clone()).await?,
    };
    let mut md = vec![
        ("accessProto", "tcp".to_string()),
        ("nameServer", env.namesrv.clone()),
        ("topics", topic.clone()),
        ("consumerGroup", group),
        ("direction", "input".to_string()),
    ];
    if side == Side::Ours {
        // A new group starts at the first offset either way; the Go binding cannot be told.
        md.push(("fromWhere", "ConsumeFromFirstOffset".to_string()));
        // The same deliveries at the app at most as the Go push consumer's 20 consume
        // goroutines per topic: `maxInFlight` bounds the concurrent (pull) input,
        // `consumerThreadNums` the orderly one.
        md.push(("maxInFlight", env.in_flight.to_string()));
        md.push(("consumerThreadNums", env.in_flight.to_string()));
    }
    let tag = format!("in-{}-{}-{}ms-r{round}", side.name(), api.name(), app_ms);
    let exec = Instant::now();
    let mut sc = Sidecar::start(env, side, &tag, &md, Some((app.port, api))).await?;
    let pids = sc.pids(env);
    let limit_at = exec + env.limit;
    // First delivery: start of the measured window.
    let a = loop {
        tokio::select! {
            _ = state.first_n.notified() => break Snap::take(&pids),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Err(e) = sc.check_alive().await {
            sc.stop().await;
            return Err(e);
        }
        if Instant::now() > limit_at {
            let logs = sc.logs();
            sc.stop().await;
            return Err(format!(
                "no delivery within {} s\n{logs}",
                env.limit.as_secs()
            ));
        }
    };
    let count_a = state.count.load(Ordering::Acquire);
    let mut timed_out = false;
    let b = loop {
        tokio::select! {
            _ = state.done_n.notified() => break Snap::take(&pids),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if sc.check_alive().await.is_err() || Instant::now() > limit_at {
            timed_out = true;
            break Snap::take(&pids);
        }
    };
    // Give duplicates a moment to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_daprd, rss_daemon) = sc.hwm();
    let count = state.count.load(Ordering::Acquire);
    let first = *state.first.get().expect("first delivery");
    let last = state.done.get().copied().unwrap_or_else(Instant::now);
    let mut row = Row {
        side: side.name(),
        kind: format!("in-{}", api.name()),
        param: app_ms,
        round,
        target: n,
        ok: count,
        dups: state.dups.load(Ordering::Relaxed),
        timed_out,
        rate: (count.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
        rate_w_start: Some(count as f64 / last.duration_since(exec).as_secs_f64().max(1e-9)),
        cpu: cpu_between(&a, &b, count.saturating_sub(count_a)),
        rss_daprd,
        rss_daemon,
        ..Row::default()
    };
    let unparsed = state.unparsed.load(Ordering::Relaxed);
    if unparsed > 0 {
        row.errors += unparsed;
        row.first_error = Some(format!("{unparsed} deliveries without a backlog index"));
    }
    if row.failed() && row.first_error.is_none() {
        row.first_error = Some(format!(
            "{} of {n} delivered, {} duplicates\n{}",
            row.ok,
            row.dups,
            sc.logs()
        ));
    }
    sc.stop().await;
    drop(app);
    Ok(row)
}

// ------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Median over rounds of each figure of one side's rows of one key.
#[derive(Default, Clone)]
struct Med {
    ok: usize,
    errors: usize,
    dups: usize,
    rate: Option<f64>,
    rate_w_start: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    us: [Option<f64>; 5],
    machine: Option<f64>,
    other: Option<f64>,
    rss_daprd: Option<f64>,
    rss_daemon: Option<f64>,
}

fn med_of(rows: &[&Row]) -> Med {
    let m = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(|r| f(r)).collect());
    let mut us = [None; 5];
    for (i, u) in us.iter_mut().enumerate() {
        *u = m(&|r| r.cpu.us[i]);
    }
    Med {
        ok: rows.iter().map(|r| r.ok).sum(),
        errors: rows.iter().map(|r| r.errors).sum(),
        dups: rows.iter().map(|r| r.dups).sum(),
        rate: m(&|r| Some(r.rate)),
        rate_w_start: m(&|r| r.rate_w_start),
        p50: m(&|r| r.p50),
        p99: m(&|r| r.p99),
        p999: m(&|r| r.p999),
        us,
        machine: m(&|r| Some(r.cpu.machine)),
        other: m(&|r| Some(r.cpu.other)),
        rss_daprd: m(&|r| Some(r.rss_daprd)),
        rss_daemon: m(&|r| r.rss_daemon),
    }
}

fn f(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) => format!("{x:.prec$}"),
        None => "-".into(),
    }
}

/// Per key, the medians of each side (`noop` only in output rows).
struct Sides {
    go: Med,
    ours: Med,
    noop: Option<Med>,
}

type Table = BTreeMap<(String, u64), Sides>;

fn summarize(rows: &[Row]) -> Table {
    let mut keys: Vec<(String, u64)> = rows.iter().map(Row::key).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let side = |s: &str| {
                let v: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.key() == k && r.side == s)
                    .collect();
                (!v.is_empty()).then(|| med_of(&v))
            };
            let sides = Sides {
                go: side("go").unwrap_or_default(),
                ours: side("ours").unwrap_or_default(),
                noop: side("noop"),
            };
            (k, sides)
        })
        .collect()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? / a?.max(1e-9))
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// `+1.23` / `-0.40` / `-`.
fn signed(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) => format!("{x:+.prec$}"),
        None => "-".into(),
    }
}

/// What the do-nothing pluggable binding shows about one output row: daprd's own cost of the
/// pluggable path (noop − go) and what our component adds on top of it (ours − noop).
struct Pluggable {
    /// daprd CPU µs per create: go, noop, ours.
    daprd_us: [Option<f64>; 3],
    /// daprd CPU(noop) − daprd CPU(go).
    overhead_us: Option<f64>,
    noop_vs_go: Deltas,
    ours_vs_noop: Deltas,
    /// daprd CPU(ours) − daprd CPU(noop).
    ours_daprd_us: Option<f64>,
    /// Component process CPU per create: daemon(ours) − noop server.
    ours_component_us: Option<f64>,
}

/// `b` relative to `a`: throughput difference and ratio, p50/p99 differences (ms).
struct Deltas {
    rate: Option<f64>,
    ratio: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

impl Deltas {
    fn of(a: &Med, b: &Med) -> Deltas {
        Deltas {
            rate: diff(a.rate, b.rate),
            ratio: ratio(a.rate, b.rate),
            p50: diff(a.p50, b.p50),
            p99: diff(a.p99, b.p99),
        }
    }

    fn text(&self) -> String {
        format!(
            "msg/s {} ({}×), p50 {} ms, p99 {} ms",
            signed(self.rate, 0),
            f(self.ratio, 2),
            signed(self.p50, 2),
            signed(self.p99, 2)
        )
    }

    fn json(&self) -> Value {
        json!({"msg_per_s": self.rate, "ratio": self.ratio, "p50_ms": self.p50, "p99_ms": self.p99})
    }
}

impl Pluggable {
    fn of(s: &Sides) -> Option<Pluggable> {
        let n = s.noop.as_ref()?;
        Some(Pluggable {
            daprd_us: [s.go.us[0], n.us[0], s.ours.us[0]],
            overhead_us: diff(s.go.us[0], n.us[0]),
            noop_vs_go: Deltas::of(&s.go, n),
            ours_vs_noop: Deltas::of(n, &s.ours),
            ours_daprd_us: diff(n.us[0], s.ours.us[0]),
            ours_component_us: diff(n.us[1], s.ours.us[1]),
        })
    }

    fn lines(&self, c: u64) -> [String; 2] {
        let [g, n, _] = self.daprd_us;
        [
            format!(
                "  C={c:<3} daprd's pluggable overhead = daprd CPU(noop) − daprd CPU(Go) = {} − {} = {} µs/create; noop − go: {}",
                f(n, 0),
                f(g, 0),
                signed(self.overhead_us, 0),
                self.noop_vs_go.text()
            ),
            format!(
                "  C={c:<3} ours − noop: {}; daprd CPU {} µs/create, component CPU (daemon − noop server) {} µs/create",
                self.ours_vs_noop.text(),
                signed(self.ours_daprd_us, 0),
                signed(self.ours_component_us, 0)
            ),
        ]
    }

    fn json(&self, kind: &str, c: u64) -> Value {
        json!({
            "row": format!("{kind} C={c}"),
            "daprd_us_per_create": {"go": self.daprd_us[0], "noop": self.daprd_us[1], "ours": self.daprd_us[2]},
            "daprd_pluggable_overhead_us": self.overhead_us,
            "noop_minus_go": self.noop_vs_go.json(),
            "ours_minus_noop": self.ours_vs_noop.json(),
            "ours_minus_noop_daprd_us": self.ours_daprd_us,
            "ours_minus_noop_component_us": self.ours_component_us,
        })
    }
}

/// The pluggable-path figures of every output row (JSON).
fn pluggable_json(t: &Table) -> Value {
    Value::Array(
        t.iter()
            .filter_map(|((kind, c), s)| Pluggable::of(s).map(|p| p.json(kind, *c)))
            .collect(),
    )
}

fn print_tables(t: &Table, out: &mut Vec<String>, rounds: usize) {
    let head_cpu = "daprd us   dmn us   brk us";
    for kind in ["out-http", "out-grpc"] {
        let api = if kind == "out-http" {
            "HTTP POST /v1.0/bindings"
        } else {
            "gRPC InvokeBinding"
        };
        out.push(String::new());
        out.push(format!(
            "OUTPUT  {api}, create 1 KiB, median of {rounds} round(s); CPU in µs per message; RSS = VmHWM MB"
        ));
        out.push(
            "        noop = a do-nothing pluggable OutputBinding (bindings.noop-pluggable) under the same daprd; dmn = our daemon / the noop server; ratio and +p99 vs go".into(),
        );
        out.push(format!(
            "side    C     msgs    msg/s  ratio  p50 ms  p99 ms p999 ms +p99 ms {head_cpu}   gen us daprd MB dmn MB  sum MB   mach  other errs"
        ));
        for ((_, c), s) in t.iter().filter(|((k, _), _)| k == kind) {
            let g = &s.go;
            let mut sides = vec![("go", g), ("ours", &s.ours)];
            if let Some(n) = &s.noop {
                sides.push(("noop", n));
            }
            for (name, m) in sides {
                let vs_go = name != "go";
                let sum = m.rss_daprd.map(|d| d + m.rss_daemon.unwrap_or(0.0));
                out.push(format!(
                    "{name:<5} {c:>3} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>4}",
                    m.ok,
                    f(m.rate, 0),
                    if vs_go { f(ratio(g.rate, m.rate), 2) } else { String::new() },
                    f(m.p50, 2),
                    f(m.p99, 2),
                    f(m.p999, 2),
                    if vs_go { signed(diff(g.p99, m.p99), 2) } else { String::new() },
                    f(m.us[0], 0),
                    f(m.us[1], 0),
                    f(m.us[2], 0),
                    f(m.us[4], 0),
                    f(m.rss_daprd, 1),
                    f(m.rss_daemon, 1),
                    f(sum, 1),
                    f(m.machine, 2),
                    f(m.other, 2),
                    m.errors,
                ));
            }
            if let Some(p) = Pluggable::of(s) {
                out.extend(p.lines(*c));
            }
        }
    }
    for kind in ["in-http", "in-grpc"] {
        let app = if kind == "in-http" {
            "HTTP app (POST /<name>)"
        } else {
            "gRPC app (OnBindingEvent)"
        };
        out.push(String::new());
        out.push(format!(
            "INPUT   backlog → {app}, 1 KiB, median of {rounds} round(s); msg/s = first→last delivery, w/start = from daprd exec"
        ));
        out.push(format!(
            "side  app     msgs    msg/s  ratio w/start/s {head_cpu}   app us daprd MB dmn MB  sum MB   mach  other dups errs"
        ));
        for ((_, ms), s) in t.iter().filter(|((k, _), _)| k == kind) {
            let (g, o) = (&s.go, &s.ours);
            for (name, m) in [("go", g), ("ours", o)] {
                let is_ours = name == "ours";
                let sum = m.rss_daprd.map(|d| d + m.rss_daemon.unwrap_or(0.0));
                let app = if *ms == 0 {
                    "0 ms".to_string()
                } else {
                    format!("{ms} ms")
                };
                out.push(format!(
                    "{name:<5} {app:<5} {:>6} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>4} {:>4}",
                    m.ok,
                    f(m.rate, 0),
                    if is_ours { f(ratio(g.rate, o.rate), 2) } else { String::new() },
                    f(m.rate_w_start, 0),
                    f(m.us[0], 0),
                    f(m.us[1], 0),
                    f(m.us[2], 0),
                    f(m.us[4], 0),
                    f(m.rss_daprd, 1),
                    f(m.rss_daemon, 1),
                    f(sum, 1),
                    f(m.machine, 2),
                    f(m.other, 2),
                    m.dups,
                    m.errors,
                ));
            }
        }
    }
}

/// The targets, one line each: throughput ≥ 1.0× Go, p99 ≤ Go + 0.3 ms, RSS ≤ Go + 15 MB;
/// output rows also show the do-nothing pluggable binding's throughput against Go (what
/// any pluggable component can reach under this daprd).
fn print_targets(t: &Table, out: &mut Vec<String>) -> Value {
    out.push(String::new());
    out.push("TARGETS (ours vs go, medians; noop = do-nothing pluggable binding vs go)".into());
    let mut v = Vec::new();
    for ((kind, p), s) in t {
        let (g, o) = (&s.go, &s.ours);
        let label = if kind.starts_with("out") {
            format!("{kind} C={p}")
        } else {
            format!("{kind} app {p} ms")
        };
        let r = ratio(g.rate, o.rate);
        let noop_r = s.noop.as_ref().and_then(|n| ratio(g.rate, n.rate));
        let dp99 = diff(g.p99, o.p99);
        let rss_go = g.rss_daprd;
        let rss_ours = o.rss_daprd.map(|d| d + o.rss_daemon.unwrap_or(0.0));
        let drss = diff(rss_go, rss_ours);
        let mark = |ok: Option<bool>| match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        let t_ok = r.map(|r| r >= 1.0);
        let p_ok = dp99.map(|d| d <= 0.3);
        let m_ok = drss.map(|d| d <= 15.0);
        out.push(format!(
            "{label:<22} throughput {:>5}× {:<6}  p99 {:>6} ms {:<6}  RSS {:>6} MB {:<6}{}",
            f(r, 2),
            mark(t_ok),
            signed(dp99, 2),
            if kind.starts_with("out") {
                mark(p_ok)
            } else {
                "n/a"
            },
            signed(drss, 1),
            mark(m_ok),
            if s.noop.is_some() {
                format!("  (noop {}×)", f(noop_r, 2))
            } else {
                String::new()
            },
        ));
        v.push(json!({
            "row": label, "throughput_ratio": r, "throughput_met": t_ok,
            "noop_throughput_ratio": noop_r,
            "p99_delta_ms": dp99, "p99_met": if kind.starts_with("out") { p_ok } else { None },
            "rss_go_mb": rss_go, "rss_ours_mb": rss_ours, "rss_delta_mb": drss, "rss_met": m_ok,
        }));
    }
    Value::Array(v)
}

fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    out.unwrap_or_default()
}

fn phase(a: &Args, name: &str) -> bool {
    a.only
        .as_ref()
        .is_none_or(|v| v.iter().any(|p| p.eq_ignore_ascii_case(name)))
}

// ------------------------------------------------------------------------------------------
// main
// ------------------------------------------------------------------------------------------

async fn run(args: &Args, env: &Env, rows: &mut Vec<Row>) -> Result<(), String> {
    let smoke = args.smoke;
    let rounds = args.rounds.unwrap_or(if smoke { 1 } else { 3 }).max(1);
    let conc = args
        .concurrency
        .clone()
        .unwrap_or_else(|| if smoke { vec![4] } else { vec![1, 16, 64] });
    let n = args
        .messages
        .unwrap_or(if smoke { 200 } else { 20_000 })
        .max(10);
    let backlog = args
        .backlog
        .unwrap_or(if smoke { 200 } else { 20_000 })
        .max(10);
    let count_for = |c: usize| if c < 16 && !smoke { (n / 4).max(10) } else { n };

    let warmup = args.broker_warmup.unwrap_or(if smoke { 0 } else { 30_000 });
    let input = phase(args, "input");
    let loader = if input || warmup > 0 {
        Some(Loader::new(&env.namesrv).await?)
    } else {
        None
    };
    if warmup > 0
        && let Some(loader) = &loader
    {
        let took = loader
            .load(&unique("bd-warmup"), warmup, Duration::from_secs(300))
            .await?;
        eprintln!(
            "bench-dapr: broker warm-up: {warmup} sends in {:.1} s (not recorded)",
            took.as_secs_f64()
        );
    }

    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Side::Go, Side::Ours]
        } else {
            [Side::Ours, Side::Go]
        };
        if phase(args, "output") {
            // Output has a third side, the do-nothing pluggable binding; who goes first rotates.
            let mut out_order = [Side::Go, Side::Ours, Side::Noop];
            out_order.rotate_left(round % 3);
            eprintln!(
                "bench-dapr: round {} output ({} first)",
                round + 1,
                out_order[0].name()
            );
            let mut cars = Vec::new();
            let mut topics = Vec::new();
            for side in out_order {
                let topic = unique(&format!("bdo-{}", side.name()));
                let md = vec![
                    ("accessProto", "tcp".to_string()),
                    ("nameServer", env.namesrv.clone()),
                    ("topics", topic.clone()),
                    ("direction", "output".to_string()),
                ];
                let tag = format!("out-{}-r{round}", side.name());
                cars.push(Sidecar::start(env, side, &tag, &md, None).await?);
                topics.push(topic);
            }
            // Warm-up (not recorded): creates the topics and routes, warms both paths.
            for (sc, topic) in cars.iter_mut().zip(&topics) {
                for api in [Api::Http, Api::Grpc] {
                    let w = output_row(env, sc, api, topic, 8, if smoke { 40 } else { 400 }, round)
                        .await?;
                    if w.errors > 0 || w.ok < w.target {
                        return Err(format!(
                            "{} warm-up through {} failed: {}\n{}",
                            sc.side.name(),
                            api.name(),
                            w.first_error.unwrap_or_default(),
                            sc.logs()
                        ));
                    }
                }
            }
            for api in [Api::Http, Api::Grpc] {
                for &c in &conc {
                    for (sc, topic) in cars.iter_mut().zip(&topics) {
                        let r = output_row(env, sc, api, topic, c, count_for(c), round).await?;
                        eprintln!(
                            "bench-dapr:   out {:<4} {:<4} C={c:<3} {:>6} ok {:>3} err {:>7.0} msg/s p99 {} ms{}",
                            r.side,
                            api.name(),
                            r.ok,
                            r.errors,
                            r.rate,
                            f(r.p99, 2),
                            r.first_error
                                .as_deref()
                                .map(|e| format!(" — {e}"))
                                .unwrap_or_default()
                        );
                        rows.push(r);
                    }
                }
            }
            for sc in cars {
                sc.stop().await;
            }
        }
        if input && let Some(loader) = &loader {
            eprintln!(
                "bench-dapr: round {} input ({} first)",
                round + 1,
                order[0].name()
            );
            for api in [Api::Http, Api::Grpc] {
                for app_ms in [0, args.app_ms] {
                    for side in order {
                        let r = input_row(env, loader, side, api, app_ms, backlog, round).await?;
                        eprintln!(
                            "bench-dapr:   in  {:<4} {:<4} app {app_ms} ms {:>6}/{} delivered {:>7.0} msg/s, {} dups{}",
                            r.side,
                            api.name(),
                            r.ok,
                            r.target,
                            r.rate,
                            r.dups,
                            r.first_error
                                .as_deref()
                                .map(|e| format!(" — {e}"))
                                .unwrap_or_default()
                        );
                        rows.push(r);
                    }
                }
            }
        }
    }
    if let Some(l) = loader {
        l.host
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(NOOP_FLAG) {
        return noop_binding::serve_main(argv.get(2).map(PathBuf::from));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench_main())
}

async fn bench_main() -> std::process::ExitCode {
    let args = Args::parse();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            manifest.join(p)
        }
    };
    let daemon_bin = args.daemon.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent().map(|d| d.join("rocketmq-binding")))
            .unwrap_or_else(|| manifest.join("target/release/rocketmq-binding"))
    });
    let work = abs(&args.work);
    let _ = std::fs::remove_dir_all(&work);
    for d in ["logs", "pids"] {
        if let Err(e) = std::fs::create_dir_all(work.join(d)) {
            eprintln!("bench-dapr: {}: {e}", work.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let smoke = args.smoke;
    let env = Env {
        namesrv: args.namesrv.clone(),
        broker_pid: args.broker_pid,
        namesrv_pid: args.namesrv_pid,
        daprd_bin: args.daprd.clone(),
        daemon_bin: daemon_bin.clone(),
        work: work.clone(),
        in_flight: args.in_flight,
        ours_md: args.ours_md.clone(),
        limit: Duration::from_secs(args.limit_secs.unwrap_or(if smoke { 30 } else { 120 })),
    };
    for (what, p) in [("daprd", &env.daprd_bin), ("daemon", &env.daemon_bin)] {
        if !p.is_file() {
            eprintln!("bench-dapr: {what} binary {} not found", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started = utc_now();
    let load_start = loadavg();
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let res = run(&args, &env, &mut rows).await;

    let rounds = args.rounds.unwrap_or(if smoke { 1 } else { 3 }).max(1);
    let table = summarize(&rows);
    let mut out = vec![format!(
        "rocketmq-binding bench-dapr — {started} — {cores} cores — {} — load avg at start {load_start}, at end {} — {:.0} s",
        if smoke { "SMOKE" } else { "full" },
        loadavg(),
        t0.elapsed().as_secs_f64()
    )];
    out.push(format!(
        "daprd {} (same binary and flags for every side, one daprd per side); broker {} (pid {}); ours: maxInFlight and consumerThreadNums {}{}",
        env.daprd_bin.display(),
        env.namesrv,
        env.broker_pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        env.in_flight,
        env.ours_md
            .iter()
            .map(|(k, v)| format!(", {k} {v}"))
            .collect::<String>()
    ));
    print_tables(&table, &mut out, rounds);
    let targets = print_targets(&table, &mut out);
    let failures: Vec<String> = rows
        .iter()
        .filter(|r| r.failed())
        .map(|r| {
            format!(
                "{} {} {} round {}: {}/{} ok, {} errors, {} dups{}{}",
                r.side,
                r.kind,
                r.param,
                r.round + 1,
                r.ok,
                r.target,
                r.errors,
                r.dups,
                if r.timed_out { ", timed out" } else { "" },
                r.first_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    for l in &out {
        println!("{l}");
    }
    let report = json!({
        "date": started, "cores": cores, "mode": if smoke { "smoke" } else { "full" },
        "loadavg_start": load_start, "loadavg_end": loadavg(),
        "seconds": t0.elapsed().as_secs_f64(),
        "daprd": env.daprd_bin.display().to_string(), "daemon": daemon_bin.display().to_string(),
        "namesrv": env.namesrv, "broker_pid": env.broker_pid,
        "in_flight_ours": env.in_flight,
        "ours_md": env.ours_md.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "targets": targets,
        "pluggable": pluggable_json(&table),
        "error": res.as_ref().err(),
        "failures": failures,
        "table": out,
    });
    let json_path = abs(&args.json);
    if let Some(d) = json_path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::File::create(&json_path)
        .and_then(|mut fh| fh.write_all(serde_json::to_string_pretty(&report).unwrap().as_bytes()))
    {
        Ok(()) => eprintln!("bench-dapr: wrote {}", json_path.display()),
        Err(e) => eprintln!("bench-dapr: {}: {e}", json_path.display()),
    }
    let mut bad = false;
    if let Err(e) = &res {
        eprintln!("bench-dapr: FAILED: {e}");
        bad = true;
    }
    for f in &failures {
        eprintln!("bench-dapr: FAILED row: {f}");
        bad = true;
    }
    if rows.is_empty() {
        bad = true;
    }
    if bad {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
