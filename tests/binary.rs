//! The `rocketmq-binding` binary as daprd and Kubernetes see it: socket folder resolution,
//! stale and live sockets, SIGTERM, the healthcheck subcommand, secrets in logs, startup time.

mod common;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Daprd, props};

const BIN: &str = env!("CARGO_BIN_EXE_rocketmq-binding");
const FOLDER_VARS: [&str; 3] = [
    "DAPR_COMPONENTS_SOCKETS_FOLDER",
    "DAPR_COMPONENT_SOCKETS_FOLDER",
    "DAPR_COMPONENT_SOCKET_FOLDER",
];

fn command() -> Command {
    let mut c = Command::new(BIN);
    for v in FOLDER_VARS {
        c.env_remove(v);
    }
    c.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    /// stderr, collected continuously (a full pipe would block the daemon).
    log: std::thread::JoinHandle<String>,
}

impl Daemon {
    fn spawn(mut cmd: Command, socket: PathBuf) -> Daemon {
        let d = Self::start(&mut cmd, socket);
        d.wait_ready();
        d
    }

    fn start(cmd: &mut Command, socket: PathBuf) -> Daemon {
        let mut child = cmd.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Daemon { child, socket, log }
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("socket {} not ready", self.socket.display());
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, wait, return (exit code, stderr).
    fn terminate(mut self) -> (i32, String) {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        let log = std::mem::replace(&mut self.log, std::thread::spawn(String::new));
        (status, log.join().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(t.elapsed() < limit, "process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sock(dir: &Path) -> PathBuf {
    dir.join("rocketmq-pluggable.sock")
}

#[test]
fn each_socket_folder_variable_is_honoured_in_order() {
    for (i, var) in FOLDER_VARS.iter().enumerate() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut cmd = command();
        // Set this variable and every lower-priority one: this one must win.
        for (j, v) in FOLDER_VARS.iter().enumerate().skip(i) {
            cmd.env(v, dirs[j].path().join("sub"));
        }
        let d = Daemon::spawn(cmd, sock(&dirs[i].path().join("sub")));
        let (code, log) = d.terminate();
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(&format!("folder_from={var}")), "{var}: {log}");
    }
    // The flag beats the environment.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.env(FOLDER_VARS[0], a.path())
        .arg("--socket-folder")
        .arg(b.path());
    let d = Daemon::spawn(cmd, sock(b.path()));
    let (_, log) = d.terminate();
    assert!(log.contains("folder_from=--socket-folder"), "{log}");
    assert!(!sock(a.path()).exists());
}

#[test]
fn stale_socket_is_replaced_and_live_socket_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(dir.path());
    // A stale socket file: bound, then the listener is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let first = Daemon::spawn(cmd, path.clone());

    // A second daemon on the same socket must refuse and exit non-zero.
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    // The first one is still serving.
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    let (code, _) = first.terminate();
    assert_eq!(code, 0);
}

#[test]
fn sigterm_removes_the_socket_and_exits_zero_and_mode_is_applied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.args([
        "--socket-name",
        "custom",
        "--socket-mode",
        "0600",
        "--socket-folder",
    ])
    .arg(dir.path().join("nested/folder"));
    let path = dir.path().join("nested/folder/custom.sock");
    let d = Daemon::spawn(cmd, path.clone());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, log) = d.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(!path.exists(), "socket file left behind");
    assert!(log.contains("bindings.custom"), "{log}");
}

#[test]
fn healthcheck_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let hc = |dir: &Path| {
        let mut c = command();
        c.arg("healthcheck").arg("--socket-folder").arg(dir);
        c.output().unwrap()
    };
    // Nothing listening: exit 1.
    let out = hc(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let out = hc(dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
    d.terminate();
    let out = hc(dir.path());
    assert_eq!(out.status.code(), Some(1));
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(prefix))
        .count()
}

#[test]
fn worker_threads_default_to_one_and_follow_the_flag_and_env() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, env, want) in [
        (None, None, 1),
        (Some("3"), None, 3),
        (None, Some("2"), 2),
        (Some("4"), Some("2"), 4),
    ] {
        let mut cmd = command();
        cmd.arg("--socket-folder").arg(dir.path());
        if let Some(n) = flag {
            cmd.args(["--worker-threads", n]);
        }
        if let Some(n) = env {
            cmd.env("ROCKETMQ_BINDING_WORKER_THREADS", n);
        }
        let d = Daemon::spawn(cmd, sock(dir.path()));
        // Worker threads name themselves once they start, which can be just after the socket
        // accepts: wait (bounded) for the expected count, then settle and count again so an
        // extra thread would still show.
        let pid = d.child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads_named(pid, "tokio-rt-worker") < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let got = threads_named(pid, "tokio-rt-worker");
        let (code, log) = d.terminate();
        assert_eq!(got, want, "flag {flag:?} env {env:?}");
        assert_eq!(code, 0, "{log}");
    }
    // Zero is refused with the flag named, before anything listens.
    let out = command()
        .args(["--worker-threads", "0", "--socket-folder"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--worker-threads"));
    assert!(!sock(dir.path()).exists());
}

#[test]
fn version_flag() {
    let out = command().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn socket_accepts_connections_quickly_after_exec() {
    // The budget is 50 ms on this machine; the assertion is loose to keep CI stable
    // under load, and the measured figure is printed (see the README for the benchmark).
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(dir.path());
        let t = Instant::now();
        let mut cmd = command();
        cmd.arg("--socket-folder").arg(dir.path());
        let d = Daemon::start(&mut cmd, path);
        d.wait_ready();
        best = best.min(t.elapsed());
        d.terminate();
    }
    println!("socket ready after exec: best of 5 = {best:?}");
    assert!(
        best < Duration::from_millis(500),
        "socket ready after {best:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_or_errors_even_at_trace_level() {
    let secret = "SK-very-secret-7f3a9c";
    let token = "STS-token-secret-55e1";
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.env("RUST_LOG", "trace")
        .arg("--socket-folder")
        .arg(dir.path());
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let c = Daprd::connect(&d.socket).await;
    let p = props(&[
        // Nothing listens on port 1: Init fails after decoding the secrets.
        ("nameServer", "127.0.0.1:1"),
        ("topics", "t"),
        ("accessKey", "AK-visible"),
        ("secretKey", secret),
        ("securityToken", token),
    ]);
    let e1 = c.init_input("sec", p.clone()).await.err();
    let e2 = c.init_output("sec", p.clone()).await.err();
    let mut http = p.clone();
    http.insert("accessProto".into(), "http".into());
    http.insert("endpoint".into(), "http://127.0.0.1:1".into());
    let e3 = c.init_output("sec-http", http).await.err();
    // A rejected secret-bearing request.
    let mut bad = p.clone();
    bad.insert("consumerBatchSize".into(), "nope".into());
    let e4 = c.init_input("sec-bad", bad).await.err();
    for e in [&e1, &e2, &e3, &e4].into_iter().flatten() {
        assert!(
            !e.message().contains(secret) && !e.message().contains(token),
            "{}",
            e.message()
        );
    }
    assert!(e4.is_some());
    drop(c);
    let (_, log) = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(!log.contains(secret), "secret key in logs");
    assert!(!log.contains(token), "security token in logs");
}

#[test]
fn sighup_stops_cleanly_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let path = sock(dir.path());
    let mut d = Daemon::spawn(cmd, path.clone());
    d.signal(libc::SIGHUP);
    let code = wait_timeout(&mut d.child, Duration::from_secs(30));
    assert_eq!(code, 0, "SIGHUP must not kill the daemon with 129");
    assert!(!path.exists(), "socket file left behind after SIGHUP");
}

/// Daemon A's socket file is deleted and daemon B binds the same path: A notices it lost
/// its socket and exits non-zero (its supervisor restarts it), and leaves B's file alone.
#[test]
fn a_lost_socket_is_noticed_and_another_daemons_socket_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(dir.path());
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let mut a = Daemon::spawn(cmd, path.clone());
    std::fs::remove_file(&path).unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let b = Daemon::spawn(cmd, path.clone());
    let code = wait_timeout(&mut a.child, Duration::from_secs(15));
    let log = std::mem::replace(&mut a.log, std::thread::spawn(String::new))
        .join()
        .unwrap();
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("was removed or replaced"), "{log}");
    assert!(log.contains("not ours any more"), "{log}");
    assert!(path.exists(), "A removed B's socket");
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_ok(),
        "B unreachable"
    );
    let (code, _) = b.terminate();
    assert_eq!(code, 0);
    assert!(!path.exists());
}

/// Issue 13, item 6 and the log half of item 5: a 1 MB bad value comes back cut with its length
/// (still INVALID_ARGUMENT, not RESOURCE_EXHAUSTED), URL credentials never appear in errors or
/// logs, Init errors say "Init metadata", and a `\n` in an ack's message id or an app's error
/// text cannot forge a log line.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_are_cut_escaped_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.env("RUST_LOG", "debug")
        .arg("--socket-folder")
        .arg(dir.path());
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let c = Daprd::connect(&d.socket).await;
    let ns = rocketmq::namesrv();

    // A 1 MB bad value.
    let huge = "9".repeat(1 << 20) + "x";
    let e = c
        .init_input(
            "huge",
            props(&[
                ("nameServer", &ns),
                ("topics", "t"),
                ("consumerBatchSize", &huge),
            ]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::InvalidArgument,
        "{}",
        &e.message()[..200]
    );
    assert!(e.message().len() < 1024, "{} bytes", e.message().len());
    assert!(
        e.message().contains("`consumerBatchSize`"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("(1048577 bytes)"), "{}", e.message());
    assert!(
        e.message().starts_with("Init metadata rejected"),
        "{}",
        e.message()
    );

    // Credentials in URLs.
    let e = c
        .init_output(
            "creds-http",
            props(&[
                ("accessProto", "http"),
                ("endpoint", "http://mquser:hunter2-endpoint@127.0.0.1:1"),
                ("accessKey", "AK"),
                ("secretKey", "SK-not-shown"),
                ("topics", "t"),
            ]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("Init metadata `endpoint`"),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("http://***@127.0.0.1:1"),
        "{}",
        e.message()
    );
    let e = c
        .init_output(
            "creds-domain",
            props(&[
                (
                    "nameServerDomain",
                    "http://nsuser:hunter2-domain@127.0.0.1:1/ns",
                ),
                ("topics", "t"),
            ]),
        )
        .await
        .unwrap_err();
    assert!(
        e.message().contains("http://***@127.0.0.1:1/ns"),
        "{}",
        e.message()
    );

    // A bad request value, 1 MB long, on a working output.
    let topic = rocketmq::unique("hostile");
    c.init_output("ok", props(&[("nameServer", &ns), ("topics", &topic)]))
        .await
        .unwrap();
    let big = "7".repeat(1 << 20);
    let e = c
        .invoke(
            "ok",
            "create",
            b"x",
            &[("rocketmq-delaylevel", big.as_str())],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().len() < 1024, "{} bytes", e.message().len());
    assert!(e.message().contains("(1048576 bytes)"), "{}", e.message());

    // Forged log lines through an ack.
    c.init_input("in", props(&[("nameServer", &ns), ("topics", &topic)]))
        .await
        .unwrap();
    let stream = c.read("in").await.unwrap();
    stream.ack("m1\nFORGED-ACK-LINE all messages acked").await;
    stream.nack("m2", "boom\r\nFORGED-ERR-LINE").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    drop(c);
    let (_, log) = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    for l in log.lines() {
        assert!(!l.starts_with("FORGED"), "forged line: {l}");
    }
    assert!(
        log.contains("m1\\nFORGED-ACK-LINE"),
        "the ack was logged escaped"
    );
    assert!(!log.contains("hunter2"), "URL credentials in the log");
    assert!(
        log.lines().all(|l| l.len() < 20 * 1024),
        "a log line longer than 20 KiB"
    );
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Issue 13, item 3: at the fd limit the accept loop backs off and logs instead of spinning,
/// and a well-behaved client is served once descriptors free up; beyond --max-connections a
/// connection is closed at once; an abandoned connection is closed after --conn-idle-timeout
/// while a live idle client (answering keepalive pings) keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_bounded_backed_off_and_reaped() {
    use std::os::unix::net::UnixStream;

    // The fd limit.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {BIN} --socket-folder {} --max-connections 1000",
            dir.path().display()
        ))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let pid = d.child.id();
    let mut idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_seconds(pid) - cpu0;
    assert!(
        busy < 0.4,
        "daemon used {busy:.2} s of CPU in 2 s at the fd limit"
    );
    idle.truncate(10);
    let t = Instant::now();
    let c = tokio::time::timeout(Duration::from_secs(5), Daprd::connect(&d.socket))
        .await
        .expect("a client is served once descriptors are free");
    assert!(!c.list_services_v1alpha().await.is_empty());
    eprintln!("served {:?} after the fds were freed", t.elapsed());
    drop(c);
    drop(idle);
    let (_, log) = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    assert!(log.contains("accept failed"), "{log}");
    assert!(
        log.matches("accept failed").count() <= 2,
        "accept errors are rate-limited in the log"
    );

    // --max-connections and --conn-idle-timeout.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path()).args([
        "--max-connections",
        "4",
        "--conn-idle-timeout",
        "2s",
    ]);
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let live = Daprd::connect(&d.socket).await;
    assert!(!live.list_services_v1alpha().await.is_empty());
    let raw: Vec<UnixStream> = (0..5)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let closed_within = |s: &UnixStream, limit: Duration| {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut b = [0u8; 64];
        let t = Instant::now();
        loop {
            match (&*s).read(&mut b) {
                Ok(0) => return Some(t.elapsed()),
                Ok(_) => continue, // server preface / settings
                Err(_) => return None,
            }
        }
    };
    // 1 live + 5 raw > 4: at least two raw ones are closed at once.
    let refused = raw
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(300)).is_some())
        .count();
    assert!(refused >= 2, "{refused} connections refused");
    let abandoned = raw.len() - refused;
    // The accepted raw ones never speak: closed after the idle timeout.
    for s in &raw {
        let after = closed_within(s, Duration::from_secs(5));
        assert!(after.is_some(), "an abandoned connection stayed open");
    }
    // The live client stayed idle past the timeout (its last request was before the raw
    // connections, > 2 s + 3 s ago) but answered keepalive pings, so it was not reaped. A
    // tonic Channel would reconnect by itself after a reap, so a working request proves
    // nothing: the daemon's log must name exactly the abandoned connections.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!live.list_services_v1alpha().await.is_empty());
    drop(live);
    let (_, log) = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .unwrap();
    assert!(log.contains("connection refused"), "{log}");
    let reaped = log
        .matches("closing a connection nothing was read from")
        .count();
    assert_eq!(
        reaped, abandoned,
        "exactly the {abandoned} abandoned connections are reaped, the live one is not:\n{log}"
    );
}

/// Issue 13, item 8: --max-instances caps distinct instances; re-Init of an existing one is
/// always allowed.
#[tokio::test(flavor = "multi_thread")]
async fn instances_are_capped_by_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder")
        .arg(dir.path())
        .args(["--max-instances", "3"]);
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let c = Daprd::connect(&d.socket).await;
    let ns = rocketmq::namesrv();
    let p = props(&[("nameServer", &ns), ("topics", "cap-t")]);
    c.init_output("a", p.clone()).await.unwrap();
    c.init_input("a", p.clone()).await.unwrap();
    c.init_output("b", p.clone()).await.unwrap();
    let e = c.init_output("c", p.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("--max-instances"), "{}", e.message());
    c.init_output("a", p.clone()).await.unwrap();
    c.init_input("a", p).await.unwrap();
    drop(c);
    let _ = tokio::task::spawn_blocking(move || d.terminate()).await;
}

/// Issue 13, item 7: a `nameServer` that is not a name server fails Init, saying what it is:
/// a broker port (speaks remoting, does not serve routes), a socket that accepts and hangs,
/// a server that answers something else.
#[tokio::test(flavor = "multi_thread")]
async fn init_fails_when_the_name_server_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder").arg(dir.path());
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let c = Daprd::connect(&d.socket).await;
    let ns = rocketmq::namesrv();
    // The broker of the shared pair, from the script's status table.
    let status = rocketmq::run_script(&["status"]).unwrap();
    let line = status
        .lines()
        .find(|l| l.contains(&format!("name server {ns} ")))
        .unwrap_or_else(|| panic!("no pair with {ns} in:\n{status}"));
    let broker = line
        .split("broker ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();

    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = garbage.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let cases = [
        (broker.clone(), "a broker port, not a name server"),
        (
            hang.local_addr().unwrap().to_string(),
            "no remoting answer within",
        ),
        (garbage_addr, "not RocketMQ remoting"),
    ];
    for (addr, why) in cases {
        for role in ["input", "output"] {
            let p = props(&[("nameServer", &addr), ("topics", "probe-t")]);
            let t = Instant::now();
            let e = match role {
                "input" => c.init_input("probe", p).await,
                _ => c.init_output("probe", p).await,
            }
            .unwrap_err();
            assert_eq!(
                e.code(),
                tonic::Code::Unavailable,
                "{addr}: {}",
                e.message()
            );
            assert!(
                e.message().contains(why),
                "{addr} ({role}): {}",
                e.message()
            );
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
    }
    // The real name server still passes.
    c.init_output(
        "probe",
        props(&[("nameServer", &ns), ("topics", "probe-t")]),
    )
    .await
    .unwrap();
    drop(c);
    let _ = tokio::task::spawn_blocking(move || d.terminate()).await;
}

fn rss_kib_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// The cost of one Component instance (issue 13, item 8), measured: N outputs (producer
/// started at Init) and N inputs with an open Read stream (consumer running). Prints the RSS
/// and fd deltas; a measurement, not a check, so it is `#[ignore]`d:
/// `cargo test --test binary -- --ignored --nocapture instance_cost`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn instance_cost() {
    let n: usize = std::env::var("INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.arg("--socket-folder")
        .arg(dir.path())
        .args(["--max-instances", "10000"])
        .env("RUST_LOG", "warn");
    let d = Daemon::spawn(cmd, sock(dir.path()));
    let pid = d.child.id();
    let c = Daprd::connect(&d.socket).await;
    let ns = rocketmq::namesrv();
    let topic = rocketmq::unique("cost");
    c.init_output("warm", props(&[("nameServer", &ns), ("topics", &topic)]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, fds0) = rss_kib_and_fds(pid);
    for i in 0..n {
        c.init_output(
            &format!("out{i}"),
            props(&[("nameServer", &ns), ("topics", &topic)]),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss1, fds1) = rss_kib_and_fds(pid);
    let mut streams = Vec::new();
    for i in 0..n {
        let name = format!("in{i}");
        c.init_input(&name, props(&[("nameServer", &ns), ("topics", &topic)]))
            .await
            .unwrap();
        streams.push(c.read(&name).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss2, fds2) = rss_kib_and_fds(pid);
    eprintln!(
        "INSTANCE COST: {n} outputs: +{} KiB RSS, +{} fds ({} KiB, {:.1} fds each); \
         {n} inputs with a Read stream: +{} KiB RSS, +{} fds ({} KiB, {:.1} fds each)",
        rss1 as i64 - rss0 as i64,
        fds1 as i64 - fds0 as i64,
        (rss1 as i64 - rss0 as i64) / n as i64,
        (fds1 as f64 - fds0 as f64) / n as f64,
        rss2 as i64 - rss1 as i64,
        fds2 as i64 - fds1 as i64,
        (rss2 as i64 - rss1 as i64) / n as i64,
        (fds2 as f64 - fds1 as f64) / n as f64,
    );
    drop(streams);
    drop(c);
    let _ = tokio::task::spawn_blocking(move || d.terminate()).await;
}
