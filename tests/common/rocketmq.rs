//! Real RocketMQ servers for the TCP tests, via `scripts/rocketmq-local.sh`.
//!
//! Shared pairs: the addresses come from `ROCKETMQ_NAMESRV` / `ROCKETMQ_ACL_NAMESRV` (set by
//! `.ci/run` from the script's env file). When a variable is missing the fixture starts the
//! pair itself with the script (which needs the servers installed: `scripts/rocketmq-local.sh
//! install`) and fails with a clear message if that is impossible. Tests that stop or kill a
//! broker use a [`PrivatePair`] on free random ports, so they never disturb other tests.
//! The script's `RMQ_SERVER` (java = Apache 5.3.3, the default; java4 = 4.9.7; rust) and
//! `RMQ_STATE_DIR` reach it from the test's environment, so private pairs run the same server as
//! the shared ones; [`server`] names it (`ROCKETMQ_SERVER` from the env file).

#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    net::TcpListener,
    path::PathBuf,
    process::Command,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use crate::common::{Daprd, ReadStream};
use rocketmq_binding::dapr::proto::ReadResponse;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rocketmq-local.sh")
}

pub fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
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

fn env_file() -> HashMap<String, String> {
    run_script(&["env"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

static START_LOCK: Mutex<()> = Mutex::new(());

fn shared(var: &str, start: &[&str]) -> String {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return v;
    }
    let _g = START_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = env_file().get(var) {
        // Started by an earlier test binary; check it still listens.
        if std::net::TcpStream::connect(v.as_str()).is_ok() {
            return v.clone();
        }
    }
    if let Err(e) = run_script(start) {
        panic!(
            "{var} is not set and the fixture could not start the servers itself.\n\
             Run `scripts/rocketmq-local.sh install && scripts/rocketmq-local.sh start && \
             scripts/rocketmq-local.sh start-acl` and export the variables from \
             `scripts/rocketmq-local.sh env`.\n{e}"
        );
    }
    env_file()
        .get(var)
        .cloned()
        .unwrap_or_else(|| panic!("{var} missing from the script's env file after start"))
}

/// The shared name server (no authentication).
pub fn namesrv() -> String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| shared("ROCKETMQ_NAMESRV", &["start"]))
        .clone()
}

/// The authenticating pair: (name server, access key, secret key).
pub fn acl() -> (String, String, String) {
    static V: OnceLock<(String, String, String)> = OnceLock::new();
    V.get_or_init(|| {
        let ns = shared("ROCKETMQ_ACL_NAMESRV", &["start-acl"]);
        let env = env_file();
        let ak = std::env::var("ROCKETMQ_ACL_ACCESS_KEY")
            .ok()
            .or_else(|| env.get("ROCKETMQ_ACL_ACCESS_KEY").cloned())
            .unwrap_or_else(|| "rocketmq".into());
        let sk = std::env::var("ROCKETMQ_ACL_SECRET_KEY")
            .ok()
            .or_else(|| env.get("ROCKETMQ_ACL_SECRET_KEY").cloned())
            .unwrap_or_else(|| "12345678".into());
        (ns, ak, sk)
    })
    .clone()
}

/// The server of the shared pairs, `<rust|java|java4>-<version>` (`ROCKETMQ_SERVER`, else the
/// script's env file; empty when unknown).
pub fn server() -> String {
    let _ = namesrv();
    std::env::var("ROCKETMQ_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| env_file().get("ROCKETMQ_SERVER").cloned())
        .unwrap_or_default()
}

/// 5.x timer messages (`TIMER_DELIVER_MS`, `TIMER_DELAY_*`): the Rust servers and Apache 5.x
/// have them, Apache 4.x does not (it stores the property and delivers at once).
pub fn server_has_timers() -> bool {
    !server().starts_with("java4-")
}

/// A fresh name (topics, groups): `<prefix>_<random>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn free_port_block() -> (u16, u16) {
    // Name server P, broker B with B-2 and B+1: all must be free.
    for _ in 0..200 {
        let base = 30000 + (rand_u16() % 25000);
        let np = base;
        let bp = base + 10;
        let ports = [np, bp, bp - 2, bp + 1];
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return (np, bp);
        }
    }
    panic!("no free port block found");
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([b[0], b[1]])
}

/// A name server + broker only this test uses (may be stopped, killed and restarted).
pub struct PrivatePair {
    pub name: String,
    pub namesrv: String,
}

impl PrivatePair {
    pub fn start(extra: &[&str]) -> PrivatePair {
        // Make sure the servers are installed / the shared setup works first.
        let _ = namesrv();
        let name = unique("priv");
        let (np, bp) = free_port_block();
        let (nps, bps) = (np.to_string(), bp.to_string());
        let mut args = vec![
            "start",
            "--name",
            &name,
            "--namesrv-port",
            &nps,
            "--broker-port",
            &bps,
        ];
        args.extend_from_slice(extra);
        run_script(&args).unwrap_or_else(|e| panic!("private pair: {e}"));
        PrivatePair {
            name: name.clone(),
            namesrv: format!("127.0.0.1:{np}"),
        }
    }

    /// Stops the broker (SIGKILL when `kill`), keeping its store.
    pub fn broker_stop(&self, kill: bool) {
        let mut args = vec!["broker-stop", self.name.as_str()];
        if kill {
            args.push("--kill");
        }
        run_script(&args).unwrap();
    }

    /// Starts the broker again on the same store.
    pub fn broker_start(&self) {
        run_script(&["broker-start", &self.name]).unwrap();
    }
}

impl Drop for PrivatePair {
    fn drop(&mut self) {
        let _ = run_script(&["stop", "--name", &self.name]);
        let dir = env_file()
            .get("RMQ_STATE_DIR")
            .map(|d| PathBuf::from(d).join(&self.name));
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Sends `n` messages through `daprd` (instance `out`) with the given metadata (plus an
/// index property); returns the message ids from the receipts, in order.
pub async fn send_n(
    daprd: &Daprd,
    out: &str,
    n: usize,
    body: impl Fn(usize) -> Vec<u8>,
    md: &[(&str, &str)],
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let idx = i.to_string();
        let mut m: Vec<(&str, &str)> = md.to_vec();
        m.push(("rocketmq-property-idx", idx.as_str()));
        let r = daprd
            .invoke(out, "create", &body(i), &m)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        ids.push(r.metadata["rocketmq-message-id"].clone());
    }
    ids
}

/// What a reader saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Message ids in arrival order (duplicates kept).
    pub ids: Vec<String>,
    /// Full responses.
    pub msgs: Vec<(String, Vec<u8>, HashMap<String, String>)>,
}

impl Seen {
    pub fn distinct(&self) -> usize {
        self.ids.iter().collect::<HashSet<_>>().len()
    }
    pub fn duplicates(&self) -> usize {
        self.ids.len() - self.distinct()
    }
    /// Records one delivery under its broker message id.
    pub fn record(&mut self, m: ReadResponse) {
        let id = m
            .metadata
            .get("rocketmq-message-id")
            .cloned()
            .unwrap_or_default();
        self.ids.push(id.clone());
        self.msgs.push((id, m.data.to_vec(), m.metadata));
    }
}

/// Reads until `want` distinct messages arrived (acking each), or `limit` passed, or no
/// message for `idle`.
pub async fn read_acking(
    rs: &mut ReadStream,
    want: usize,
    limit: Duration,
    idle: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let t = Instant::now();
    while seen.distinct() < want && t.elapsed() < limit {
        let Some(m) = rs.next_within(idle).await else {
            break;
        };
        rs.ack(&m.message_id).await;
        seen.record(m);
    }
    seen
}

/// [`read_acking`], then [`drain`] for `quiet`: everything that arrived, including what
/// should not have.
pub async fn read_then_quiet(
    rs: &mut ReadStream,
    want: usize,
    limit: Duration,
    idle: Duration,
    quiet: Duration,
) -> Seen {
    let mut seen = read_acking(rs, want, limit, idle).await;
    let extra = drain(rs, quiet).await;
    seen.ids.extend(extra.ids);
    seen.msgs.extend(extra.msgs);
    seen
}

/// Keeps reading for `quiet` and returns anything that still arrived (acked).
pub async fn drain(rs: &mut ReadStream, quiet: Duration) -> Seen {
    let mut seen = Seen::default();
    while let Some(m) = rs.next_within(quiet).await {
        rs.ack(&m.message_id).await;
        seen.record(m);
    }
    seen
}

/// Prints one scenario line the report quotes.
pub fn report(scenario: &str, sent: usize, received: usize, lost: usize, dup: usize, t: Duration) {
    println!(
        "SCENARIO {scenario}: sent={sent} received={received} lost={lost} duplicated={dup} time={:.2}s",
        t.as_secs_f64()
    );
}
