//! Interop with the Java reference client `org.apache.rocketmq:rocketmq-client:5.3.3` on the
//! Apache RocketMQ 5.3.3 servers of `scripts/rocketmq-local.sh`: the daemon (in this process,
//! driven through its socket by the daprd-like client) on one side, `tests/java/Peer.java` (a
//! `DefaultMQProducer` / `DefaultMQPushConsumer`, a child process printing one JSON line per
//! event) on the other. `scripts/java-peer.sh classpath` fetches the client jars from Maven
//! Central when missing; the peer is compiled once per run into `target/java-peer/`.
//!
//! Every scenario prints a `SCENARIO` line. Fresh topics and groups per test; the scenarios of
//! one test run concurrently (each JVM takes a few seconds to start, and every retry waits the
//! broker's 10 s first redelivery delay).

mod common;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::{Daprd, TestDaemon, props};
use rocketmq::{acl, drain, namesrv, read_acking, report, unique};
use rocketmq_binding::transport::DefaultConnector;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

// --- the Java peer ------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peer_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("java-peer")
}

/// The client jars' classpath (`<lib-client>/*`) and the compiled peer, once per run.
fn classpath() -> &'static str {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/java-peer.sh"))
            .arg("classpath")
            .output()
            .expect("run scripts/java-peer.sh");
        assert!(
            out.status.success(),
            "scripts/java-peer.sh classpath failed (needs java 17 and mvn):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let classes = peer_dir().join("classes");
        std::fs::create_dir_all(&classes).unwrap();
        let t = Instant::now();
        let javac = std::process::Command::new("javac")
            .args(["-nowarn", "-encoding", "UTF-8", "-d"])
            .arg(&classes)
            .args(["-cp", &lib])
            .arg(root().join("tests/java/Peer.java"))
            .output()
            .expect("run javac (Java 17 JDK)");
        assert!(
            javac.status.success(),
            "javac tests/java/Peer.java failed:\n{}",
            String::from_utf8_lossy(&javac.stderr)
        );
        println!("java peer compiled in {:.1}s", t.elapsed().as_secs_f64());
        format!("{}:{lib}", classes.display())
    })
}

/// One run of the Java peer: its JSON events as they arrive.
struct Java {
    label: String,
    child: Child,
    rx: mpsc::UnboundedReceiver<Value>,
    stderr: PathBuf,
    events: Vec<Value>,
}

impl Java {
    fn spawn(label: &str, args: &[&str]) -> Java {
        let cp = classpath();
        let dir = peer_dir();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let stderr = dir.join(format!("{label}-{}.stderr", std::process::id()));
        let mut child = Command::new("java")
            .args([
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-Xmx192m",
                "-Djava.net.preferIPv4Stack=true",
            ])
            .arg(format!("-Duser.home={}", home.display()))
            .args(["-cp", cp, "Peer"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start java");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let name = label.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&l) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("[{name}] {l}"),
                }
            }
        });
        Java {
            label: label.to_string(),
            child,
            rx,
            stderr,
            events: Vec::new(),
        }
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "java peer {}: {why}\nevents: {:?}\nstderr ({}):\n{}",
            self.label,
            self.events,
            self.stderr.display(),
            self.stderr_tail()
        );
    }

    /// Waits for the event `kind` (`ready`, `done`, …); an `error` or `deadline` event, the end
    /// of the output or `within` passing first fails the test.
    async fn until(&mut self, kind: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Err(_) => self.fail(&format!("no `{kind}` event within {within:?}")),
                Ok(None) => self.fail(&format!("ended before a `{kind}` event")),
                Ok(Some(v)) => {
                    self.events.push(v.clone());
                    match v["event"].as_str() {
                        Some(k) if k == kind => return v,
                        Some("error") | Some("deadline") => self.fail("failed"),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Waits for `done` and the process exit (status 0); returns every event.
    async fn finish(mut self, within: Duration) -> Vec<Value> {
        self.until("done", within).await;
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(s)) if s.success() => {}
            other => self.fail(&format!("exit after done: {other:?}")),
        }
        std::mem::take(&mut self.events)
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s(v))
        .expect("base64 body")
}

fn java_props(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), s(v).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn sha_short(b: &[u8]) -> String {
    // A short, stable digest for messages (no crypto needed): FNV-1a-64.
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// W3C trace context as daprd passes it (a user property of that name on the wire).
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// --- the daemon side ----------------------------------------------------------------------------

async fn daemon() -> (TestDaemon, Daprd) {
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let c = d.daprd().await;
    (d, c)
}

fn props_with(base: &[(&str, &str)], extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut p = props(base);
    p.extend(props(extra));
    p
}

fn input_props(
    ns: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    props_with(
        &[
            ("nameServer", ns),
            ("topics", topic),
            ("consumerGroup", group),
            ("fromWhere", "ConsumeFromFirstOffset"),
        ],
        extra,
    )
}

/// A body of `len` bytes that compresses well (what triggers the producers' zlib path is the
/// size, not the content) but is not text: zero bytes and invalid UTF-8 included.
fn daemon_body(tag: &str, len: usize) -> Vec<u8> {
    let mut b = format!("dmn-{tag}-").into_bytes();
    b.extend((0..len).map(|k| (k % 253) as u8));
    b.truncate(len);
    b
}

// --- scenarios ----------------------------------------------------------------------------------

/// Java producer → daemon Read stream: bodies (small, around the 4 KiB compression threshold,
/// and large), tag, keys, user properties, message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn java_producer_to_daemon_read_stream() {
    let ns = namesrv();
    let (_d, daprd) = daemon().await;
    let topic = unique("j2d");
    let group = unique("g");
    let t = Instant::now();
    let sizes = "32,4095,4096,8192,200000";
    let java = Java::spawn(
        "produce-j2d",
        &[
            "produce",
            "--namesrv",
            &ns,
            "--topic",
            &topic,
            "--tag",
            "TagJ",
            "--keys",
            "order-1 order-2",
            "--prop",
            "color=blue",
            "--prop",
            "city=Zürich",
            "--prop",
            "spaced=a b",
            "--prop",
            &format!("traceparent={TRACEPARENT}"),
            "--sizes",
            sizes,
        ],
    );
    let events = java.finish(Duration::from_secs(120)).await;
    let sent = of_kind(&events, "sent");
    assert_eq!(sent.len(), 5, "{events:?}");
    // The Java producer compresses a body of at least `compressMsgBodyOverHowmuch` bytes
    // (zlib, sysFlag COMPRESSED): 4096 is its default, and the sizes lie on both sides of it,
    // so compressed and plain bodies both reach the daemon.
    let ready = of_kind(&events, "ready");
    let compress_over = ready
        .first()
        .and_then(|e| e["compressOver"].as_u64())
        .unwrap_or_else(|| panic!("no compressOver in {ready:?}"));
    assert_eq!(
        compress_over, 4096,
        "the Java producer's compression threshold"
    );
    let lens: Vec<u64> = sent.iter().map(|e| e["len"].as_u64().unwrap()).collect();
    assert!(
        lens.iter().filter(|l| **l < compress_over).count() >= 2
            && lens.iter().filter(|l| **l >= compress_over).count() >= 3
            && lens.contains(&(compress_over - 1))
            && lens.contains(&compress_over),
        "body sizes {lens:?} straddle {compress_over}"
    );
    let by_id: HashMap<&str, &Value> = sent.iter().map(|e| (s(&e["msgId"]), *e)).collect();

    daprd
        .init_input("in", input_props(&ns, &topic, &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let seen = read_acking(
        &mut rs,
        sent.len(),
        Duration::from_secs(90),
        Duration::from_secs(45),
    )
    .await;
    let elapsed = t.elapsed();
    let extra = drain(&mut rs, Duration::from_secs(3)).await;
    let got: HashSet<&str> = seen.ids.iter().map(String::as_str).collect();
    let lost = by_id.keys().filter(|id| !got.contains(*id)).count();
    report(
        "java-producer-to-daemon",
        sent.len(),
        seen.ids.len(),
        lost,
        seen.duplicates() + extra.ids.len(),
        elapsed,
    );
    for (id, data, md) in &seen.msgs {
        let Some(e) = by_id.get(id.as_str()) else {
            panic!(
                "delivered id {id} is none of Java's SendResult msgIds {:?}; metadata {md:?}",
                by_id.keys()
            );
        };
        let want = b64(&e["body"]);
        println!(
            "  idx {} len {} -> delivered len {} digest {} (sent {}) id {id}",
            e["idx"],
            want.len(),
            data.len(),
            sha_short(data),
            sha_short(&want)
        );
        assert_eq!(data.len(), want.len(), "body length of idx {}", e["idx"]);
        assert!(*data == want, "body bytes of idx {} differ", e["idx"]);
        assert_eq!(md["rocketmq-topic"], topic);
        assert_eq!(md["rocketmq-tag"], "TagJ");
        assert_eq!(md["rocketmq-keys"], "order-1,order-2");
        assert_eq!(md["rocketmq-property-color"], "blue");
        assert_eq!(md["rocketmq-property-city"], "Z%C3%BCrich");
        assert_eq!(md["rocketmq-property-spaced"], "a b");
        assert_eq!(md["traceparent"], TRACEPARENT, "a Java app's trace context");
        assert_eq!(md["rocketmq-property-idx"], e["idx"].to_string());
        assert_eq!(md["rocketmq-reconsume-times"], "0");
        assert_eq!(md["rocketmq-consumer-group"], group);
        let user: Vec<&String> = md
            .keys()
            .filter(|k| k.starts_with("rocketmq-property-"))
            .collect();
        assert_eq!(user.len(), 4, "user properties {user:?}");
    }
    assert_eq!(lost, 0);
    assert_eq!(seen.duplicates() + extra.ids.len(), 0);
}

/// Daemon output → Java push consumers: one with a tag expression, one with an SQL92 selector
/// on a user property (same topic, own groups). Ids, bodies (one above 4 KiB), tag, keys and
/// properties as Java sees them; non-matching messages are not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_output_to_java_push_consumers_by_tag_and_sql() {
    let ns = namesrv();
    let (_d, daprd) = daemon().await;
    let topic = unique("d2j");
    daprd
        .init_output("out", props(&[("nameServer", ns.as_str())]))
        .await
        .unwrap();
    let t = Instant::now();
    // (tag, color, n, body length)
    let plan = [
        ("TagA", "blue", "1", 20),
        ("TagB", "red", "2", 20),
        ("TagC", "blue", "3", 20),
        ("TagA", "blue", "4", 8192),
        ("TagA", "green", "5", 20),
        ("TagC", "red", "6", 20),
    ];
    // id -> (tag, color, n, body)
    let mut sent: HashMap<String, (&str, &str, &str, Vec<u8>)> = HashMap::new();
    let mut by_tag = HashSet::new();
    let mut by_sql = HashSet::new();
    for (tag, color, n, len) in plan {
        let body = daemon_body(n, len);
        let r = daprd
            .invoke(
                "out",
                "create",
                &body,
                &[
                    ("rocketmq-topic", &topic),
                    ("rocketmq-tag", tag),
                    ("rocketmq-key", "k1,k2"),
                    ("rocketmq-property-color", color),
                    ("rocketmq-property-n", n),
                    ("traceparent", TRACEPARENT),
                ],
            )
            .await
            .unwrap();
        let id = r.metadata["rocketmq-message-id"].clone();
        if tag == "TagA" || tag == "TagB" {
            by_tag.insert(id.clone());
        }
        if color == "blue" && n.parse::<u32>().unwrap() > 1 {
            by_sql.insert(id.clone());
        }
        sent.insert(id, (tag, color, n, body));
    }
    let send_time = t.elapsed();
    let (g_tag, g_sql) = (unique("gtag"), unique("gsql"));
    let expect_tag = by_tag.len().to_string();
    let expect_sql = by_sql.len().to_string();
    let tag_peer = Java::spawn(
        "consume-tag",
        &[
            "consume",
            "--namesrv",
            &ns,
            "--topic",
            &topic,
            "--group",
            &g_tag,
            "--tags",
            "TagA || TagB",
            "--expect",
            &expect_tag,
            "--linger",
            "4",
            "--deadline",
            "100",
        ],
    );
    let sql_peer = Java::spawn(
        "consume-sql",
        &[
            "consume",
            "--namesrv",
            &ns,
            "--topic",
            &topic,
            "--group",
            &g_sql,
            "--sql",
            "color = 'blue' AND n > 1",
            "--expect",
            &expect_sql,
            "--linger",
            "4",
            "--deadline",
            "100",
        ],
    );
    let (ev_tag, ev_sql) = tokio::join!(
        tag_peer.finish(Duration::from_secs(120)),
        sql_peer.finish(Duration::from_secs(120))
    );
    let elapsed = t.elapsed();
    println!("  daemon send phase {:.2}s", send_time.as_secs_f64());
    let mut failures = Vec::new();
    for (name, events, want) in [
        ("daemon-to-java-tag-filter", &ev_tag, &by_tag),
        ("daemon-to-java-sql92", &ev_sql, &by_sql),
    ] {
        let got = of_kind(events, "delivered");
        let ids: Vec<&str> = got.iter().map(|e| s(&e["msgId"])).collect();
        let distinct: HashSet<&str> = ids.iter().copied().collect();
        let lost = want
            .iter()
            .filter(|id| !distinct.contains(id.as_str()))
            .count();
        let unwanted: Vec<&str> = distinct
            .iter()
            .filter(|id| !want.contains(**id))
            .copied()
            .collect();
        report(
            name,
            want.len(),
            ids.len(),
            lost,
            ids.len() - distinct.len(),
            elapsed,
        );
        println!("  {name}: delivered but not selected: {unwanted:?}");
        if lost > 0 || !unwanted.is_empty() || ids.len() != distinct.len() {
            failures.push(format!(
                "{name}: lost {lost}, unwanted {unwanted:?}, ids {ids:?}"
            ));
        }
        for e in got {
            let Some((tag, color, n, body)) = sent.get(s(&e["msgId"])) else {
                continue;
            };
            let data = b64(&e["body"]);
            println!(
                "  {name}: n={n} len {} sysFlag {} tag {} keys {:?} props {:?}",
                data.len(),
                e["sysFlag"],
                s(&e["tags"]),
                s(&e["keys"]),
                java_props(&e["props"])
            );
            assert!(
                data == *body,
                "{name}: body of n={n} differs (len {} vs {})",
                data.len(),
                body.len()
            );
            assert_eq!(s(&e["topic"]), topic);
            assert_eq!(s(&e["tags"]), *tag);
            assert_eq!(s(&e["keys"]), "k1 k2", "Java keys are space separated");
            assert_eq!(e["reconsumeTimes"], 0);
            let want_props: BTreeMap<String, String> = [
                ("color".to_string(), color.to_string()),
                ("n".to_string(), n.to_string()),
                ("traceparent".to_string(), TRACEPARENT.to_string()),
            ]
            .into();
            assert_eq!(
                java_props(&e["props"]),
                want_props,
                "{name}: user properties of n={n}"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Redelivery both ways: the Java consumer's RECONSUME_LATER for a message the daemon sent, and
/// the daemon's error ack for a message Java sent. Both must come back once, with
/// reconsume times 1 and the same id, body and properties; nothing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivery_both_ways() {
    let ns = namesrv();
    let (_d, daprd) = daemon().await;
    let t = Instant::now();
    tokio::join!(
        java_reconsume_later_of_a_daemon_message(&daprd, &ns, t),
        daemon_error_ack_of_a_java_message(&daprd, &ns, t)
    );
}

async fn java_reconsume_later_of_a_daemon_message(daprd: &Daprd, ns: &str, t: Instant) {
    let topic = unique("rl");
    let group = unique("g");
    daprd
        .init_output("out-rl", props(&[("nameServer", ns)]))
        .await
        .unwrap();
    let failing = daprd
        .invoke(
            "out-rl",
            "create",
            b"fail me once",
            &[
                ("rocketmq-topic", &topic),
                ("rocketmq-tag", "TagR"),
                ("rocketmq-property-fail", "once"),
            ],
        )
        .await
        .unwrap()
        .metadata["rocketmq-message-id"]
        .clone();
    let fine = daprd
        .invoke(
            "out-rl",
            "create",
            b"fine",
            &[("rocketmq-topic", &topic), ("rocketmq-tag", "TagR")],
        )
        .await
        .unwrap()
        .metadata["rocketmq-message-id"]
        .clone();
    let peer = Java::spawn(
        "consume-retry",
        &[
            "consume",
            "--namesrv",
            ns,
            "--topic",
            &topic,
            "--group",
            &group,
            "--fail-once-prop",
            "fail",
            "--expect",
            "2",
            "--linger",
            "4",
            "--deadline",
            "110",
        ],
    );
    let events = peer.finish(Duration::from_secs(130)).await;
    let got = of_kind(&events, "delivered");
    let summary: Vec<(String, i64, String)> = got
        .iter()
        .map(|e| {
            (
                s(&e["msgId"]).to_string(),
                e["reconsumeTimes"].as_i64().unwrap_or(-1),
                s(&e["status"]).to_string(),
            )
        })
        .collect();
    let distinct: HashSet<&str> = got.iter().map(|e| s(&e["msgId"])).collect();
    let lost = [&failing, &fine]
        .iter()
        .filter(|id| !distinct.contains(id.as_str()))
        .count();
    report(
        "java-reconsume-later-of-daemon-message",
        2,
        got.len(),
        lost,
        got.len().saturating_sub(3),
        t.elapsed(),
    );
    println!("  deliveries (id, reconsumeTimes, status): {summary:?}");
    let want: HashSet<(String, i64, String)> = [
        (failing.clone(), 0, "RECONSUME_LATER".to_string()),
        (failing.clone(), 1, "CONSUME_SUCCESS".to_string()),
        (fine.clone(), 0, "CONSUME_SUCCESS".to_string()),
    ]
    .into();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert_eq!(summary.iter().cloned().collect::<HashSet<_>>(), want);
    for e in got.iter().filter(|e| s(&e["msgId"]) == failing) {
        assert_eq!(b64(&e["body"]), b"fail me once");
        assert_eq!(s(&e["topic"]), topic, "retry shows the real topic");
        assert_eq!(s(&e["tags"]), "TagR");
        assert_eq!(java_props(&e["props"])["fail"], "once");
    }
}

async fn daemon_error_ack_of_a_java_message(daprd: &Daprd, ns: &str, t: Instant) {
    let topic = unique("ea");
    let group = unique("g");
    let events = Java::spawn(
        "produce-retry",
        &[
            "produce",
            "--namesrv",
            ns,
            "--topic",
            &topic,
            "--tag",
            "TagE",
            "--prop",
            "p=v",
            "--sizes",
            "16,16",
        ],
    )
    .finish(Duration::from_secs(120))
    .await;
    let sent = of_kind(&events, "sent");
    assert_eq!(sent.len(), 2);
    let ids: Vec<String> = sent.iter().map(|e| s(&e["msgId"]).to_string()).collect();
    daprd
        .init_input("in-ea", input_props(ns, &topic, &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("in-ea").await.unwrap();
    // (id, reconsume times, acked)
    let mut log: Vec<(String, String, bool)> = Vec::new();
    let mut acked = HashSet::new();
    let limit = Instant::now() + Duration::from_secs(90);
    while acked.len() < 2 && Instant::now() < limit {
        let Some(m) = rs.next_within(Duration::from_secs(45)).await else {
            break;
        };
        let id = m.metadata["rocketmq-message-id"].clone();
        let idx = m.metadata["rocketmq-property-idx"].clone();
        let times = m.metadata["rocketmq-reconsume-times"].clone();
        assert_eq!(m.metadata["rocketmq-property-p"], "v");
        assert_eq!(m.metadata["rocketmq-tag"], "TagE");
        assert_eq!(
            m.data.as_ref(),
            b64(&sent[idx.parse::<usize>().unwrap()]["body"])
        );
        let first = !log.iter().any(|(i, _, _)| *i == id);
        if idx == "0" && first {
            rs.nack(&m.message_id, "app failed").await;
            log.push((id, times, false));
        } else {
            rs.ack(&m.message_id).await;
            acked.insert(id.clone());
            log.push((id, times, true));
        }
    }
    let extra = drain(&mut rs, Duration::from_secs(4)).await;
    let lost = ids.iter().filter(|id| !acked.contains(*id)).count();
    report(
        "daemon-error-ack-of-java-message",
        2,
        log.len(),
        lost,
        extra.ids.len() + log.len().saturating_sub(3),
        t.elapsed(),
    );
    println!("  deliveries (id, rocketmq-reconsume-times, acked): {log:?}");
    let want: HashSet<(String, String, bool)> = [
        (ids[0].clone(), "0".to_string(), false),
        (ids[0].clone(), "1".to_string(), true),
        (ids[1].clone(), "0".to_string(), true),
    ]
    .into();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log.into_iter().collect::<HashSet<_>>(), want);
    assert!(extra.ids.is_empty(), "after the acks: {:?}", extra.ids);
}

/// ACL and `instanceId` namespaces on both sides, on the authenticating pair: Java producers in
/// namespaces X and Y write the same topic name; the daemon's input with instanceId X gets only
/// X's messages and the one with Y only Y's. And back: the daemon's outputs with X and Y write
/// one topic name; the Java consumer in namespace X gets only X's, the one in Y only Y's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_and_instance_id_namespaces_both_ways() {
    let (ns, ak, sk) = acl();
    let (_d, daprd) = daemon().await;
    let (x, y) = (unique("MQ_INST_x"), unique("MQ_INST_y"));
    let t = Instant::now();
    tokio::join!(
        java_namespaces_to_daemon(&daprd, (&ns, &ak, &sk), (&x, &y), t),
        daemon_namespaces_to_java(&daprd, (&ns, &ak, &sk), (&x, &y), t)
    );
}

async fn java_namespaces_to_daemon(
    daprd: &Daprd,
    (ns, ak, sk): (&str, &str, &str),
    (x, y): (&str, &str),
    t: Instant,
) {
    let topic = unique("nsj");
    let produce = |inst: &str, sizes: &str| {
        Java::spawn(
            &format!("produce-{inst}"),
            &[
                "produce",
                "--namesrv",
                ns,
                "--ak",
                ak,
                "--sk",
                sk,
                "--namespace",
                inst,
                "--topic",
                &topic,
                "--prop",
                &format!("from={inst}"),
                "--sizes",
                sizes,
            ],
        )
    };
    let (px, py) = (produce(x, "10,10"), produce(y, "10"));
    let (ex, ey) = tokio::join!(
        px.finish(Duration::from_secs(120)),
        py.finish(Duration::from_secs(120))
    );
    let ids_x: HashSet<String> = of_kind(&ex, "sent")
        .iter()
        .map(|e| s(&e["msgId"]).to_string())
        .collect();
    let ids_y: HashSet<String> = of_kind(&ey, "sent")
        .iter()
        .map(|e| s(&e["msgId"]).to_string())
        .collect();
    assert_eq!((ids_x.len(), ids_y.len()), (2, 1));
    let mut streams = Vec::new();
    for inst in [x, y] {
        let name = format!("in-{inst}");
        let group = unique("g");
        daprd
            .init_input(
                &name,
                input_props(
                    ns,
                    &topic,
                    &group,
                    &[("accessKey", ak), ("secretKey", sk), ("instanceId", inst)],
                ),
            )
            .await
            .unwrap();
        streams.push(daprd.read(&name).await.unwrap());
    }
    let (mut rx, mut ry) = (streams.remove(0), streams.remove(0));
    let (sx, sy) = tokio::join!(
        read_acking(&mut rx, 2, Duration::from_secs(90), Duration::from_secs(45)),
        read_acking(&mut ry, 1, Duration::from_secs(90), Duration::from_secs(45))
    );
    let (xx, xy) = tokio::join!(
        drain(&mut rx, Duration::from_secs(3)),
        drain(&mut ry, Duration::from_secs(3))
    );
    let got_x: HashSet<String> = sx.ids.iter().chain(&xx.ids).cloned().collect();
    let got_y: HashSet<String> = sy.ids.iter().chain(&xy.ids).cloned().collect();
    let lost = ids_x.difference(&got_x).count() + ids_y.difference(&got_y).count();
    let crossed = got_x.difference(&ids_x).count() + got_y.difference(&ids_y).count();
    let received = sx.ids.len() + sy.ids.len() + xx.ids.len() + xy.ids.len();
    report(
        "acl-namespaces-java-to-daemon",
        3,
        received,
        lost,
        received - got_x.len() - got_y.len(),
        t.elapsed(),
    );
    println!("  crossed between instanceIds: {crossed} (expected 0)");
    for (inst, seen) in [(x, &sx), (y, &sy)] {
        for (_, _, md) in &seen.msgs {
            assert_eq!(md["rocketmq-topic"], topic, "topic without namespace");
            assert_eq!(md["rocketmq-property-from"], inst);
        }
    }
    assert_eq!(crossed, 0);
    assert_eq!(lost, 0);
    assert_eq!(received, 3, "duplicates");
}

async fn daemon_namespaces_to_java(
    daprd: &Daprd,
    (ns, ak, sk): (&str, &str, &str),
    (x, y): (&str, &str),
    t: Instant,
) {
    let topic = unique("nsd");
    let mut ids: HashMap<&str, HashSet<String>> = HashMap::new();
    for (inst, n) in [(x, 2), (y, 1)] {
        let name = format!("out-{inst}");
        daprd
            .init_output(
                &name,
                props(&[
                    ("nameServer", ns),
                    ("accessKey", ak),
                    ("secretKey", sk),
                    ("instanceId", inst),
                    // The first send creates the namespaced topic on the ACL broker while JVMs
                    // start beside it on 2 cores: the default 3 s timed out once in CI.
                    // This test is about names, not latency.
                    ("sendTimeout", "10s"),
                ]),
            )
            .await
            .unwrap();
        for i in 0..n {
            let r = daprd
                .invoke(
                    &name,
                    "create",
                    format!("{inst}-{i}").as_bytes(),
                    &[("rocketmq-topic", &topic), ("rocketmq-property-from", inst)],
                )
                .await
                .unwrap();
            ids.entry(inst)
                .or_default()
                .insert(r.metadata["rocketmq-message-id"].clone());
        }
    }
    let consume = |inst: &str, expect: &str| {
        let group = unique("gj");
        Java::spawn(
            &format!("consume-{inst}"),
            &[
                "consume",
                "--namesrv",
                ns,
                "--ak",
                ak,
                "--sk",
                sk,
                "--namespace",
                inst,
                "--topic",
                &topic,
                "--group",
                &group,
                "--expect",
                expect,
                "--linger",
                "4",
                "--deadline",
                "100",
            ],
        )
    };
    let (cx, cy) = (consume(x, "2"), consume(y, "1"));
    let (ex, ey) = tokio::join!(
        cx.finish(Duration::from_secs(120)),
        cy.finish(Duration::from_secs(120))
    );
    let mut lost = 0;
    let mut crossed = 0;
    let mut received = 0;
    let mut distinct = 0;
    for (inst, events) in [(x, &ex), (y, &ey)] {
        let got = of_kind(events, "delivered");
        received += got.len();
        let set: HashSet<String> = got.iter().map(|e| s(&e["msgId"]).to_string()).collect();
        distinct += set.len();
        lost += ids[inst].difference(&set).count();
        crossed += set.difference(&ids[inst]).count();
        for e in got {
            assert_eq!(
                s(&e["topic"]),
                topic,
                "Java shows the topic without namespace"
            );
            assert_eq!(java_props(&e["props"])["from"], inst);
        }
    }
    report(
        "acl-namespaces-daemon-to-java",
        3,
        received,
        lost,
        received - distinct,
        t.elapsed(),
    );
    println!("  crossed between namespaces: {crossed} (expected 0)");
    assert_eq!(crossed, 0);
    assert_eq!(lost, 0);
    assert_eq!(received, 3, "duplicates");
}
