//! `accessProto: http` end to end: a daprd-like client on the daemon's Unix socket, the HTTP
//! transport, and the Aliyun MQ HTTP emulator (in process). Covers issue 4's end-to-end
//! list (500 messages with metadata; app errors → redelivery then exactly-once success;
//! non-UTF-8 bodies; daemon SIGTERM mid-stream with the real binary; emulator restart under
//! an open Read stream), issue 5 item 6 (trace context round trip) and two instances with
//! different consumer groups on one socket.
//!
//! Every test uses fresh topic and group names and its own emulator, so tests run in
//! parallel; every wait is bounded.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Daprd, ReadStream, TestDaemon, props};
use futures::{StreamExt as _, stream};
use rocketmq_binding::{
    dapr::proto::ReadResponse,
    emulator::{self, Config, Emulator},
    transport::DefaultConnector,
};
use tonic::Status;

const AK: &str = "E2EAK";
const SK: &str = "E2ESecret-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_rocketmq-binding");

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Runs a test body with a hard limit, so a hang fails instead of stalling the suite.
async fn bounded<F: Future<Output = ()>>(limit: Duration, f: F) {
    if tokio::time::timeout(limit, f).await.is_err() {
        panic!("test did not finish within {limit:?}");
    }
}

/// A name no other test (or run) uses: `<prefix><12 hex>`.
fn fresh(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..12])
}

async fn start_emulator(addr: SocketAddr, invisibility: Duration) -> Emulator {
    let mut cfg = Config::new(addr, AK, SK);
    cfg.invisibility = invisibility;
    cfg.order_invisibility = invisibility;
    emulator::spawn(cfg).await.expect("emulator starts")
}

/// Component metadata for `accessProto: http` against `endpoint`.
fn component(
    endpoint: &str,
    topics: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut p = props(&[
        ("accessProto", "http"),
        ("endpoint", endpoint),
        ("accessKey", AK),
        ("secretKey", SK),
        ("topics", topics),
        ("consumerGroup", group),
    ]);
    for (k, v) in extra {
        p.insert(k.to_string(), v.to_string());
    }
    p
}

/// An in-process daemon with the real transports, both sides of `name` initialised.
async fn daemon_with(name: &str, p: HashMap<String, String>) -> (TestDaemon, Daprd) {
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let c = d.daprd().await;
    c.init_input(name, p.clone()).await.expect("input Init");
    c.init_output(name, p).await.expect("output Init");
    (d, c)
}

/// What a Read stream did within a time window.
#[derive(Debug)]
enum Event {
    Msg(Box<ReadResponse>),
    Idle,
    Ended,
    Failed(Status),
}

async fn next_event(r: &mut ReadStream, within: Duration) -> Event {
    match tokio::time::timeout(within, r.messages.message()).await {
        Err(_) => Event::Idle,
        Ok(Ok(Some(m))) => Event::Msg(Box::new(m)),
        Ok(Ok(None)) => Event::Ended,
        Ok(Err(s)) => Event::Failed(s),
    }
}

/// The next delivery; panics if the stream ends, fails, or nothing comes within `within`.
async fn expect_msg(r: &mut ReadStream, within: Duration, what: &str) -> ReadResponse {
    match next_event(r, within).await {
        Event::Msg(m) => *m,
        Event::Failed(s) => panic!("{what}: the Read stream failed: {s}"),
        other => panic!("{what}: expected a delivery within {within:?}, got {other:?}"),
    }
}

/// Asserts the stream stays open and silent for `d`.
async fn expect_quiet(r: &mut ReadStream, d: Duration, what: &str) {
    match next_event(r, d).await {
        Event::Idle => {}
        Event::Msg(m) => panic!(
            "{what}: unexpected delivery {:?} {:?}",
            String::from_utf8_lossy(&m.data),
            m.metadata
        ),
        other => panic!("{what}: the Read stream must stay open, got {other:?}"),
    }
}

fn body(m: &ReadResponse) -> String {
    String::from_utf8(m.data.to_vec()).expect("utf-8 body")
}

// ---------------------------------------------------------------------------------------------
// 1. 500 messages with metadata
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_messages_round_trip_with_metadata() {
    bounded(Duration::from_secs(60), async {
        const N: usize = 500;
        let invisibility = Duration::from_secs(4);
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), invisibility).await;
        let (topic, group) = (fresh("bulk"), fresh("GID_bulk"));
        let p = component(&emu.endpoint(), &topic, &group, &[("consumerThreadNums", "2")]);
        let (_d, c) = daemon_with("bulk", p).await;
        let mut read = c.read("bulk").await.unwrap();

        let t0 = Instant::now();
        // Publish with 16 concurrent Invokes; remember each broker message id.
        let ids: HashMap<usize, String> = stream::iter(0..N)
            .map(|i| {
                let c = c.clone();
                let topic = topic.clone();
                async move {
                    let tag = format!("Tag{}", i % 4);
                    let keys = format!("k{i},kk{i}");
                    let seq = i.to_string();
                    let sk = format!("sk{}", i % 7);
                    let r = c
                        .invoke(
                            "bulk",
                            "create",
                            format!("{{\"seq\":{i},\"text\":\"message <{i}> & more\"}}").as_bytes(),
                            &[
                                ("rocketmq-topic", &topic),
                                ("rocketmq-tag", &tag),
                                ("rocketmq-key", &keys),
                                ("rocketmq-property-seq", &seq),
                                ("rocketmq-property-origin", "e2e-bulk"),
                                ("rocketmq-shardingkey", &sk),
                            ],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("invoke {i}: {e}"));
                    assert_eq!(r.metadata["rocketmq-topic"], topic);
                    assert_eq!(r.metadata["rocketmq-send-status"], "SEND_OK");
                    (i, r.metadata["rocketmq-message-id"].clone())
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        assert_eq!(ids.len(), N);
        let distinct_ids: BTreeSet<_> = ids.values().collect();
        assert_eq!(distinct_ids.len(), N, "broker message ids are unique");

        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        let mut deliveries = 0usize;
        while seen.len() < N {
            let m = expect_msg(&mut read, Duration::from_secs(15), "bulk").await;
            deliveries += 1;
            let md = &m.metadata;
            let i: usize = md["rocketmq-property-seq"].parse().unwrap();
            assert!(i < N);
            assert_eq!(
                body(&m),
                format!("{{\"seq\":{i},\"text\":\"message <{i}> & more\"}}")
            );
            assert_eq!(md["rocketmq-topic"], topic);
            assert_eq!(md["rocketmq-consumer-group"], group);
            assert_eq!(md["rocketmq-message-id"], ids[&i], "message id of {i}");
            assert_eq!(md["rocketmq-tag"], format!("Tag{}", i % 4));
            assert_eq!(md["rocketmq-keys"], format!("k{i},kk{i}"));
            assert_eq!(md["rocketmq-shardingkey"], format!("sk{}", i % 7));
            assert_eq!(md["rocketmq-property-origin"], "e2e-bulk");
            assert_eq!(md["rocketmq-reconsume-times"], "0", "{md:?}");
            assert!(
                !md.keys().any(|k| k.contains("dapr-body-encoding")),
                "{md:?}"
            );
            *seen.entry(i).or_default() += 1;
            read.ack(&m.message_id).await;
        }
        let elapsed = t0.elapsed();
        // Anything not acked in time would come back after the invisibility time.
        let quiet = invisibility + Duration::from_millis(1500);
        let t1 = Instant::now();
        while t1.elapsed() < quiet {
            match next_event(&mut read, quiet.saturating_sub(t1.elapsed())).await {
                Event::Idle => break,
                Event::Msg(m) => {
                    deliveries += 1;
                    let i: usize = m.metadata["rocketmq-property-seq"].parse().unwrap();
                    *seen.entry(i).or_default() += 1;
                    read.ack(&m.message_id).await;
                }
                other => panic!("bulk: stream {other:?}"),
            }
        }
        let lost = (0..N).filter(|i| !seen.contains_key(i)).count();
        let duplicated: usize = seen.values().map(|n| n - 1).sum();
        println!(
            "http e2e bulk: messages={N} deliveries={deliveries} seconds={:.2} lost={lost} duplicated={duplicated}",
            elapsed.as_secs_f64()
        );
        assert_eq!(lost, 0);
        assert_eq!(duplicated, 0, "{seen:?}");
        assert_eq!(deliveries, N);
        assert_eq!(emu.message_count(), N);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. App errors → redelivery → exactly-once success
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_errors_are_redelivered_once_then_consumed_exactly_once() {
    bounded(Duration::from_secs(60), async {
        const N: usize = 60;
        let invisibility = Duration::from_secs(2);
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), invisibility).await;
        let (topic, group) = (fresh("retry"), fresh("GID_retry"));
        let p = component(
            &emu.endpoint(),
            &topic,
            &group,
            &[("consumerThreadNums", "2"), ("consumerBatchSize", "8")],
        );
        let (_d, c) = daemon_with("retry", p).await;
        let mut read = c.read("retry").await.unwrap();
        for i in 0..N {
            c.invoke("retry", "create", format!("r{i}").as_bytes(), &[])
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        // Per body: reconsume-times of every delivery, in order.
        let mut log: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut ids: BTreeMap<usize, String> = BTreeMap::new();
        let mut acked = 0usize;
        let mut failed = 0usize;
        while acked < N {
            let m = expect_msg(&mut read, Duration::from_secs(15), "retry").await;
            let i: usize = body(&m)[1..].parse().unwrap();
            let broker_id = m.metadata["rocketmq-message-id"].clone();
            assert_eq!(ids.entry(i).or_insert_with(|| broker_id.clone()), &broker_id);
            let times = log.entry(i).or_default();
            times.push(m.metadata["rocketmq-reconsume-times"].clone());
            if i.is_multiple_of(3) && times.len() == 1 {
                read.nack(&m.message_id, "app failed on purpose").await;
                failed += 1;
            } else {
                read.ack(&m.message_id).await;
                acked += 1;
            }
        }
        let elapsed = t0.elapsed();
        expect_quiet(&mut read, invisibility + Duration::from_millis(1500), "retry").await;
        let mut redelivered = 0;
        for i in 0..N {
            let times = &log[&i];
            if i.is_multiple_of(3) {
                assert_eq!(times, &["0", "1"], "message r{i}: failed once, then once more");
                redelivered += 1;
            } else {
                assert_eq!(times, &["0"], "message r{i}: consumed exactly once");
            }
        }
        let duplicated: usize = log
            .iter()
            .map(|(i, t)| t.len() - if i.is_multiple_of(3) { 2 } else { 1 })
            .sum();
        println!(
            "http e2e retry: messages={N} app_errors={failed} redelivered={redelivered} seconds={:.2} lost=0 duplicated={duplicated}",
            elapsed.as_secs_f64()
        );
        assert_eq!(failed, N / 3);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Bytes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_and_empty_bodies_round_trip_through_the_daemon() {
    bounded(Duration::from_secs(60), async {
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), Duration::from_secs(10)).await;
        let (topic, group) = (fresh("bytes"), fresh("GID_bytes"));
        let p = component(&emu.endpoint(), &topic, &group, &[]);
        let (_d, c) = daemon_with("bytes", p).await;
        let mut read = c.read("bytes").await.unwrap();
        let bodies: Vec<Vec<u8>> = vec![
            (0..=255u8).collect(),
            (0..=255u8).rev().collect(),
            Vec::new(),
            vec![0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc],
            vec![0],
            b"(empty)".to_vec(),
            b"plain <xml> & text".to_vec(),
        ];
        let mut want: HashMap<String, Vec<u8>> = HashMap::new();
        for (n, b) in bodies.iter().enumerate() {
            let r = c
                .invoke("bytes", "create", b, &[("rocketmq-property-n", &n.to_string())])
                .await
                .unwrap_or_else(|e| panic!("body {n}: {e}"));
            want.insert(r.metadata["rocketmq-message-id"].clone(), b.clone());
        }
        for _ in 0..bodies.len() {
            let m = expect_msg(&mut read, Duration::from_secs(15), "bytes").await;
            let n: usize = m.metadata["rocketmq-property-n"].parse().unwrap();
            let expected = want
                .remove(&m.metadata["rocketmq-message-id"])
                .unwrap_or_else(|| panic!("unknown or repeated delivery of body {n}"));
            assert_eq!(expected, bodies[n]);
            assert_eq!(m.data.to_vec(), expected, "body {n} changed in transit");
            assert!(
                !m.metadata.keys().any(|k| k.contains("dapr-body-encoding")),
                "{:?}",
                m.metadata
            );
            read.ack(&m.message_id).await;
        }
        assert!(want.is_empty());
        println!(
            "http e2e bytes: bodies={} (256 byte values both orders, empty, invalid UTF-8, NUL) lost=0",
            bodies.len()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM mid-stream with the real binary
// ---------------------------------------------------------------------------------------------

/// The `rocketmq-binding` binary on a socket in `folder`.
struct Binary {
    child: Child,
    socket: PathBuf,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Binary {
    fn spawn(folder: &Path, extra: &[&str]) -> Binary {
        let mut cmd = Command::new(BIN);
        for v in [
            "DAPR_COMPONENTS_SOCKETS_FOLDER",
            "DAPR_COMPONENT_SOCKETS_FOLDER",
            "DAPR_COMPONENT_SOCKET_FOLDER",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("RUST_LOG", "info")
            .arg("--socket-folder")
            .arg(folder)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("daemon binary starts");
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let socket = folder.join("rocketmq-pluggable.sock");
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "socket not ready");
            std::thread::sleep(Duration::from_millis(5));
        }
        Binary {
            child,
            socket,
            log: Some(log),
        }
    }

    /// SIGTERM; waits up to 20 s; (exit code, stderr).
    fn terminate(mut self) -> (i32, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code().unwrap_or(-1);
            }
            assert!(t.elapsed() < Duration::from_secs(20), "daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        (code, self.log.take().unwrap().join().unwrap())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Sum of the Prometheus samples `name{…}` whose labels contain all of `want`.
async fn metric(addr: SocketAddr, name: &str, want: &[&str]) -> f64 {
    let Ok(r) = reqwest::get(format!("http://{addr}/metrics")).await else {
        return -1.0;
    };
    common::metric_sample(&r.text().await.unwrap_or_default(), name, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_sigterm_mid_stream_loses_nothing_and_never_confirms_unacked() {
    bounded(Duration::from_secs(60), async {
        const N: usize = 80;
        const READ_FIRST: usize = 30;
        // Delivery positions (in arrival order) the app holds without acking. Fewer than the
        // consumer's poll loops, so holding them cannot stall the first daemon.
        const HOLD_AT: [usize; 3] = [1, 6, 12];
        let invisibility = Duration::from_secs(4);
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), invisibility).await;
        let (topic, group) = (fresh("term"), fresh("GID_term"));
        let p = component(
            &emu.endpoint(),
            &topic,
            &group,
            &[("consumerThreadNums", "4"), ("consumerBatchSize", "4")],
        );
        let folder = tempfile::tempdir().unwrap();
        let metrics_addr = free_addr();

        // First daemon: publish the backlog, read part of it.
        let first = tokio::task::spawn_blocking({
            let folder = folder.path().to_path_buf();
            let m = metrics_addr.to_string();
            move || {
                Binary::spawn(
                    &folder,
                    &["--shutdown-timeout", "1s", "--metrics-addr", m.as_str()],
                )
            }
        })
        .await
        .unwrap();
        let c = Daprd::connect(&first.socket).await;
        c.init_input("term", p.clone()).await.unwrap();
        c.init_output("term", p.clone()).await.unwrap();
        for i in 0..N {
            c.invoke("term", "create", format!("t{i}").as_bytes(), &[])
                .await
                .unwrap();
        }
        let mut read = c.read("term").await.unwrap();
        let mut acked: BTreeSet<usize> = BTreeSet::new();
        let mut held: BTreeSet<usize> = BTreeSet::new();
        let mut held_msgs = Vec::new();
        for pos in 0..READ_FIRST {
            let m = expect_msg(&mut read, Duration::from_secs(15), "first daemon").await;
            let i: usize = body(&m)[1..].parse().unwrap();
            assert!(
                !acked.contains(&i) && !held.contains(&i),
                "t{i} delivered twice to the first daemon"
            );
            if HOLD_AT.contains(&pos) {
                held.insert(i);
                held_msgs.push(m);
            } else {
                acked.insert(i);
                read.ack(&m.message_id).await;
            }
        }
        // The daemon has taken every ack the app sent (its own counter says so).
        let t = Instant::now();
        let want = acked.len() as f64;
        loop {
            let n = metric(
                metrics_addr,
                "rocketmq_binding_acks_total",
                &[r#"instance="term""#, r#"outcome="success""#],
            )
            .await;
            if n == want {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "daemon saw {n} acks, app sent {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // SIGTERM while the held deliveries are still unacknowledged.
        let t_term = Instant::now();
        let (code, log) = tokio::task::spawn_blocking(move || first.terminate())
            .await
            .unwrap();
        let stop_took = t_term.elapsed();
        assert_eq!(code, 0, "first daemon exit code; log:\n{log}");
        assert!(
            log.contains("shutdown drain timeout"),
            "held deliveries kept the drain waiting; log:\n{log}"
        );
        drop(held_msgs);
        drop(read);
        drop(c);

        // Second daemon on the same folder: reads what is left.
        let second = tokio::task::spawn_blocking({
            let folder = folder.path().to_path_buf();
            move || Binary::spawn(&folder, &["--shutdown-timeout", "1s"])
        })
        .await
        .unwrap();
        let c = Daprd::connect(&second.socket).await;
        c.init_input("term", p.clone()).await.unwrap();
        let mut read = c.read("term").await.unwrap();
        let rest: BTreeSet<usize> = (0..N).filter(|i| !acked.contains(i)).collect();
        let mut got: BTreeMap<usize, usize> = BTreeMap::new();
        let mut held_back = BTreeMap::new();
        let mut again_acked = Vec::new();
        let t2 = Instant::now();
        while !rest.iter().all(|i| got.contains_key(i)) {
            let m = expect_msg(&mut read, Duration::from_secs(15), "second daemon").await;
            let i: usize = body(&m)[1..].parse().unwrap();
            if acked.contains(&i) {
                again_acked.push(i);
            }
            if held.contains(&i) {
                held_back.insert(i, m.metadata["rocketmq-reconsume-times"].clone());
            }
            *got.entry(i).or_default() += 1;
            read.ack(&m.message_id).await;
        }
        let second_took = t2.elapsed();
        // Anything acked late (or not at all) would surface within one invisibility time.
        let quiet = invisibility + Duration::from_millis(500);
        let t3 = Instant::now();
        while t3.elapsed() < quiet {
            match next_event(&mut read, quiet.saturating_sub(t3.elapsed())).await {
                Event::Idle => break,
                Event::Msg(m) => {
                    let i: usize = body(&m)[1..].parse().unwrap();
                    if acked.contains(&i) {
                        again_acked.push(i);
                    }
                    *got.entry(i).or_default() += 1;
                    read.ack(&m.message_id).await;
                }
                other => panic!("second daemon: stream {other:?}"),
            }
        }
        let lost = (0..N)
            .filter(|i| !acked.contains(i) && !got.contains_key(i))
            .count();
        let duplicated: usize = got.values().map(|n| n - 1).sum::<usize>() + again_acked.len();
        println!(
            "http e2e sigterm: messages={N} acked_before_sigterm={} held={} daemon_stop={:.2}s \
             second_daemon_got={} in {:.2}s lost={lost} duplicated={duplicated} acked_again={}",
            acked.len(),
            held.len(),
            stop_took.as_secs_f64(),
            got.len(),
            second_took.as_secs_f64(),
            again_acked.len()
        );
        assert_eq!(acked.len() + held.len(), READ_FIRST);
        assert!(
            again_acked.is_empty(),
            "acked before SIGTERM, delivered again: {again_acked:?}"
        );
        assert_eq!(lost, 0);
        assert_eq!(
            held_back.keys().copied().collect::<BTreeSet<_>>(),
            held,
            "every delivery the app never acked comes back"
        );
        for (i, times) in &held_back {
            assert_ne!(times, "0", "t{i} is a redelivery");
        }
        assert_eq!(duplicated, 0, "{got:?}");
        drop(read);
        drop(c);
        let (code, log) = tokio::task::spawn_blocking(move || second.terminate())
            .await
            .unwrap();
        assert_eq!(code, 0, "second daemon exit code; log:\n{log}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Emulator restart under an open Read stream
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_restart_keeps_the_read_stream_open_and_delivery_resumes() {
    bounded(Duration::from_secs(60), async {
        // The process-wide recorder; the instance label "restart" is this test's alone.
        let metrics = rocketmq_binding::telemetry::metrics::install();
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), Duration::from_secs(10)).await;
        let addr = emu.local_addr();
        let (topic, group) = (fresh("restart"), fresh("GID_restart"));
        let p = component(&emu.endpoint(), &topic, &group, &[("consumerThreadNums", "2")]);
        let (_d, c) = daemon_with("restart", p).await;
        let mut read = c.read("restart").await.unwrap();
        c.invoke("restart", "create", b"before", &[]).await.unwrap();
        let m = expect_msg(&mut read, Duration::from_secs(15), "before the restart").await;
        assert_eq!(&m.data[..], b"before");
        read.ack(&m.message_id).await;
        // Let the consumer go back to long polling, then kill the emulator under it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        emu.shutdown().await;
        let down = Instant::now();
        // While it is down: sends fail, the Read stream neither ends nor errors.
        let e = c.invoke("restart", "create", b"lost", &[]).await;
        assert!(e.is_err(), "a send with the endpoint down must fail");
        expect_quiet(&mut read, Duration::from_millis(1500), "emulator down").await;

        let emu2 = start_emulator(addr, Duration::from_secs(10)).await;
        let restarted = Instant::now();
        const AFTER: usize = 5;
        for i in 0..AFTER {
            c.invoke("restart", "create", format!("after{i}").as_bytes(), &[])
                .await
                .unwrap_or_else(|e| panic!("send {i} after the restart: {e}"));
        }
        let mut got = BTreeSet::new();
        let mut first_after = None;
        while got.len() < AFTER {
            let m = expect_msg(&mut read, Duration::from_secs(20), "after the restart").await;
            first_after.get_or_insert_with(|| restarted.elapsed());
            let b = body(&m);
            assert!(b.starts_with("after"), "{b}");
            assert!(got.insert(b.clone()), "{b} delivered twice");
            read.ack(&m.message_id).await;
        }
        expect_quiet(&mut read, Duration::from_millis(500), "after the restart").await;
        // Each of the two poll loops failed while the endpoint was down; the ones that have
        // polled successfully since are counted as recoveries (at least the one that delivered).
        let reconnects = common::metric_sample(
            &metrics.render(),
            "rocketmq_binding_reconnects_total",
            &[r#"instance="restart""#, r#"transport="http""#],
        );
        assert!((1.0..=2.0).contains(&reconnects), "reconnects {reconnects}");
        println!(
            "http e2e restart: reconnects counted={reconnects}"
        );
        println!(
            "http e2e restart: down={:.2}s first delivery {:.2}s after restart, messages_after={AFTER} lost=0",
            (restarted - down).as_secs_f64(),
            first_after.unwrap().as_secs_f64()
        );
        assert_eq!(emu2.message_count(), AFTER);
        drop(read);
        emu2.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Trace context
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_round_trips_unchanged() {
    bounded(Duration::from_secs(60), async {
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), Duration::from_secs(10)).await;
        let (topic, group) = (fresh("trace"), fresh("GID_trace"));
        let p = component(&emu.endpoint(), &topic, &group, &[]);
        let (_d, c) = daemon_with("trace", p).await;
        let mut read = c.read("trace").await.unwrap();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (
                "w3c",
                vec![
                    ("traceparent", tp),
                    ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                    (
                        "baggage",
                        "userId=alice,serverNode=DF%2028,isProduction=false",
                    ),
                ],
            ),
            (
                "colon",
                vec![
                    ("traceparent", tp),
                    ("tracestate", "vendor=a:b:c,congo=t61rcWkgMzE"),
                    ("baggage", "userId=alice,serverNode=DF%2028"),
                ],
            ),
            (
                "hostile",
                vec![
                    ("tracestate", "x=<a>|\"b\"&'c'%41"),
                    ("baggage", "url=http://example.com:8080/a?b=c|d"),
                ],
            ),
            ("parent-only", vec![("traceparent", tp)]),
        ];
        for (name, md) in &cases {
            let mut md = md.clone();
            md.push(("rocketmq-property-case", name));
            c.invoke("trace", "create", name.as_bytes(), &md)
                .await
                .unwrap_or_else(|e| {
                    panic!("case {name}: trace context must never fail a send: {e}")
                });
        }
        let mut seen = BTreeSet::new();
        for _ in 0..cases.len() {
            let m = expect_msg(&mut read, Duration::from_secs(15), "trace").await;
            let name = m.metadata["rocketmq-property-case"].clone();
            let (_, want) = cases
                .iter()
                .find(|(n, _)| *n == name)
                .expect("a known case");
            for k in ["traceparent", "tracestate", "baggage"] {
                let expected = want.iter().find(|(wk, _)| *wk == k).map(|(_, v)| *v);
                assert_eq!(
                    m.metadata.get(k).map(String::as_str),
                    expected,
                    "case {name}, key {k}: {:?}",
                    m.metadata
                );
            }
            assert!(
                !m.metadata.keys().any(|k| k.contains("trace-encoding")),
                "marker leaked: {:?}",
                m.metadata
            );
            assert_eq!(body(&m), name);
            seen.insert(name);
            read.ack(&m.message_id).await;
        }
        assert_eq!(seen.len(), cases.len());
        println!(
            "http e2e trace: cases={} round-tripped unchanged",
            cases.len()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Two instances, two consumer groups, one socket
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_their_own_groups_are_isolated() {
    bounded(Duration::from_secs(60), async {
        const N: usize = 20;
        const ONLY_A: usize = 5;
        let invisibility = Duration::from_secs(2);
        let emu = start_emulator("127.0.0.1:0".parse().unwrap(), invisibility).await;
        let shared = fresh("shared");
        let only_a = fresh("onlya");
        let (ga, gb) = (fresh("GID_a"), fresh("GID_b"));
        let opts = [("consumerThreadNums", "2"), ("consumerBatchSize", "8")];
        let pa = component(&emu.endpoint(), &format!("{shared},{only_a}"), &ga, &opts);
        let pb = component(&emu.endpoint(), &shared, &gb, &opts);
        let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
        let c = d.daprd().await;
        c.init_input("inst-a", pa.clone()).await.unwrap();
        c.init_output("inst-a", pa).await.unwrap();
        c.init_input("inst-b", pb.clone()).await.unwrap();
        c.init_output("inst-b", pb).await.unwrap();
        let mut ra = c.read("inst-a").await.unwrap();
        let mut rb = c.read("inst-b").await.unwrap();

        for i in 0..N {
            let r = c
                .invoke("inst-a", "create", format!("s{i}").as_bytes(), &[("rocketmq-topic", &shared)])
                .await
                .unwrap();
            assert_eq!(r.metadata["rocketmq-topic"], shared);
        }
        for i in 0..ONLY_A {
            c.invoke("inst-a", "create", format!("a{i}").as_bytes(), &[("rocketmq-topic", &only_a)])
                .await
                .unwrap();
        }
        // No topic: instance b's own configuration decides (its only topic is the shared one).
        let r = c.invoke("inst-b", "create", b"from-b", &[]).await.unwrap();
        assert_eq!(r.metadata["rocketmq-topic"], shared);

        // Instance a acks everything; instance b fails every first delivery.
        let read_a = async {
            let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let want = N + ONLY_A + 1;
            while got.len() < want {
                let m = expect_msg(&mut ra, Duration::from_secs(15), "instance a").await;
                assert_eq!(m.metadata["rocketmq-consumer-group"], ga);
                let b = body(&m);
                let topic = &m.metadata["rocketmq-topic"];
                if b.starts_with('a') {
                    assert_eq!(topic, &only_a);
                } else {
                    assert_eq!(topic, &shared);
                }
                got.entry(b)
                    .or_default()
                    .push(m.metadata["rocketmq-reconsume-times"].clone());
                ra.ack(&m.message_id).await;
            }
            expect_quiet(&mut ra, invisibility + Duration::from_millis(1500), "instance a").await;
            got
        };
        let read_b = async {
            let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let want = N + 1;
            let mut acked = 0;
            while acked < want {
                let m = expect_msg(&mut rb, Duration::from_secs(15), "instance b").await;
                assert_eq!(m.metadata["rocketmq-consumer-group"], gb);
                assert_eq!(m.metadata["rocketmq-topic"], shared);
                let b = body(&m);
                let times = got.entry(b).or_default();
                times.push(m.metadata["rocketmq-reconsume-times"].clone());
                if times.len() == 1 {
                    rb.nack(&m.message_id, "instance b fails first").await;
                } else {
                    rb.ack(&m.message_id).await;
                    acked += 1;
                }
            }
            expect_quiet(&mut rb, invisibility + Duration::from_millis(1500), "instance b").await;
            got
        };
        let (got_a, got_b) = tokio::join!(read_a, read_b);

        // Group a: every message once (b's failures did not touch a's progress).
        assert_eq!(got_a.len(), N + ONLY_A + 1);
        for (b, times) in &got_a {
            assert_eq!(times, &["0"], "instance a, {b}");
        }
        // Group b: every shared-topic message, independently, failed once then once more;
        // nothing of a's other topic.
        let mut want_b: BTreeSet<String> = (0..N).map(|i| format!("s{i}")).collect();
        want_b.insert("from-b".into());
        assert_eq!(got_b.keys().cloned().collect::<BTreeSet<_>>(), want_b);
        for (b, times) in &got_b {
            assert_eq!(times, &["0", "1"], "instance b, {b}");
        }
        println!(
            "http e2e two instances: group a deliveries={} group b deliveries={} (b failed each once) lost=0 duplicated=0",
            got_a.values().map(Vec::len).sum::<usize>(),
            got_b.values().map(Vec::len).sum::<usize>()
        );
    })
    .await;
}
