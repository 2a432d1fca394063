//! `accessProto: tcp` under faults: a broker killed and restarted mid-stream (its own private
//! name server + broker pair), a topic that does not exist with auto-create off, and the real
//! daemon binary stopped with SIGTERM or SIGKILL mid-stream. Every scenario prints a
//! `SCENARIO` line with its numbers.

mod common;
#[path = "common/daemon_bin.rs"]
mod daemon_bin;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{TestDaemon, props};
use daemon_bin::Bin;
use rocketmq::{PrivatePair, drain, namesrv, read_acking, report, send_n, unique};
use rocketmq_binding::transport::DefaultConnector;
use tonic::Code;

fn input_props(ns: &str, topic: &str, group: &str) -> HashMap<String, String> {
    props(&[
        ("nameServer", ns),
        ("topics", topic),
        ("consumerGroup", group),
        ("fromWhere", "ConsumeFromFirstOffset"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_and_restarted_mid_stream() {
    // The process-wide recorder; the instance label "out" is this test's alone.
    let metrics = rocketmq_binding::telemetry::metrics::install();
    let pair = PrivatePair::start(&[]);
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let daprd = d.daprd().await;
    let topic = unique("kill");
    let group = unique("g");
    daprd
        .init_output(
            "out",
            props(&[("nameServer", &pair.namesrv), ("sendTimeout", "2s")]),
        )
        .await
        .unwrap();
    daprd
        .invoke("out", "create", b"warm-up", &[("rocketmq-topic", &topic)])
        .await
        .unwrap();
    daprd
        .init_input("in", input_props(&pair.namesrv, &topic, &group))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let m = rs.next().await;
    rs.ack(&m.message_id).await;

    let t = Instant::now();
    // Sender: 400 messages, one every ~10 ms, retrying each until stored (as an app would).
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let failures: Arc<Mutex<Vec<(Code, Duration, String)>>> = Arc::default();
    let sender = {
        let (daprd, topic, sent, failures) =
            (daprd.clone(), topic.clone(), sent.clone(), failures.clone());
        tokio::spawn(async move {
            for i in 0..400 {
                loop {
                    let t0 = Instant::now();
                    match daprd
                        .invoke(
                            "out",
                            "create",
                            format!("k{i}").as_bytes(),
                            &[("rocketmq-topic", &topic)],
                        )
                        .await
                    {
                        Ok(r) => {
                            sent.lock()
                                .unwrap()
                                .push(r.metadata["rocketmq-message-id"].clone());
                            break;
                        }
                        Err(e) => {
                            failures.lock().unwrap().push((
                                e.code(),
                                t0.elapsed(),
                                e.message().to_string(),
                            ));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut seen = read_acking(
        &mut rs,
        100,
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
    pair.broker_stop(true);
    let killed_at = t.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    pair.broker_start();
    let restarted_at = t.elapsed();
    // Keep reading until the sender is done and everything it stored has arrived.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let done = sender.is_finished();
        let want: HashSet<String> = sent.lock().unwrap().iter().cloned().collect();
        let got: HashSet<String> = seen.ids.iter().cloned().collect();
        if done && want.is_subset(&got) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        // Panics if the Read stream fails: it must stay open across the broker restart.
        if let Some(m) = rs.next_within(Duration::from_secs(5)).await {
            rs.ack(&m.message_id).await;
            seen.ids.push(m.metadata["rocketmq-message-id"].clone());
        }
    }
    sender.abort();
    let extra = drain(&mut rs, Duration::from_secs(3)).await;
    let elapsed = t.elapsed();
    let want: HashSet<String> = sent.lock().unwrap().iter().cloned().collect();
    let got: HashSet<String> = seen.ids.iter().chain(extra.ids.iter()).cloned().collect();
    let lost = want.difference(&got).count();
    let total = seen.ids.len() + extra.ids.len();
    let dup = total - got.len();
    report("broker-kill-restart", want.len(), total, lost, dup, elapsed);
    let f = failures.lock().unwrap();
    let worst = f.iter().map(|x| x.1).max().unwrap_or_default();
    let codes: HashSet<Code> = f.iter().map(|x| x.0).collect();
    println!(
        "  broker SIGKILLed at {:.1}s, restarted at {:.1}s; failed sends while down: {} (codes {codes:?}, slowest {:.2}s with sendTimeout 2s)",
        killed_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        f.len(),
        worst.as_secs_f64()
    );
    if let Some(x) = f.first() {
        println!("  first failure: {:?}: {}", x.0, x.2);
    }
    assert_eq!(
        want.len(),
        400,
        "the producer recovered and stored everything"
    );
    assert_eq!(lost, 0);
    assert!(codes.iter().all(|c| *c == Code::Unavailable), "{codes:?}");
    assert!(worst < Duration::from_secs(4), "failure took {worst:?}");
    // Sends failed while the broker was down and succeeded after: a counted recovery.
    assert!(!f.is_empty(), "no send failed while the broker was down");
    let reconnects = common::metric_sample(
        &metrics.render(),
        "rocketmq_binding_reconnects_total",
        &[r#"instance="out""#, r#"transport="tcp""#],
    );
    println!("  reconnects counted: {reconnects}");
    assert!(reconnects >= 1.0, "reconnects {reconnects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_topic_with_auto_create_off_is_not_found() {
    let pair = PrivatePair::start(&["--no-auto-create"]);
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let daprd = d.daprd().await;
    daprd
        .init_output("out", props(&[("nameServer", &pair.namesrv)]))
        .await
        .unwrap();
    let topic = unique("nope");
    let e = daprd
        .invoke("out", "create", b"x", &[("rocketmq-topic", &topic)])
        .await
        .unwrap_err();
    println!("SCENARIO unknown-topic: {:?}: {}", e.code(), e.message());
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains(&topic));
}

// ---- the real binary -------------------------------------------------------------------

/// Sends 200, reads and acks 60 and holds 5 more unacked, stops the daemon with `sig`,
/// restarts it and reads the rest. Returns (acked before, seen after).
async fn stop_mid_stream(sig: i32, name: &str) {
    let ns = namesrv();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique(name);
    let group = unique("g");
    let t = Instant::now();
    // The daemon's own account of both runs, shown when an assertion fails.
    let log = dir.path().join("daemon.log");
    let start = || Bin::start_logging(dir.path(), "warn,rocketmq_binding=debug", &log);
    let mut bin = start();
    let daprd = bin.daprd().await;
    daprd
        .init_output("out", props(&[("nameServer", &ns)]))
        .await
        .unwrap();
    let ids = send_n(
        &daprd,
        "out",
        200,
        |i| format!("m{i}").into_bytes(),
        &[("rocketmq-topic", &topic)],
    )
    .await;
    daprd
        .init_input("in", input_props(&ns, &topic, &group))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let before = read_acking(
        &mut rs,
        60,
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
    let mut held = Vec::new();
    while held.len() < 5 {
        let m = rs.next().await;
        held.push(m.metadata["rocketmq-message-id"].clone());
    }
    // Ten more acked right before the stop. The pause lets the acks cross the socket (a
    // dropped connection loses what it had not sent yet) but is shorter than the commit
    // interval (500 ms), so usually only the final commit at close confirms them.
    let mut late = Vec::new();
    while late.len() < 10 {
        let m = rs.next().await;
        rs.ack(&m.message_id).await;
        late.push(m.metadata["rocketmq-message-id"].clone());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(rs);
    drop(daprd);
    let exit = bin.signal(sig);
    println!(
        "  {name}: the daemon exited {:.2}s after the signal",
        exit.as_secs_f64()
    );

    let mut bin = start();
    let daprd = bin.daprd().await;
    daprd
        .init_input("in", input_props(&ns, &topic, &group))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let acked: HashSet<&String> = before.ids.iter().chain(late.iter()).collect();
    let remaining: HashSet<&String> = ids.iter().filter(|i| !acked.contains(i)).collect();
    // Released messages come back through the retry topic (~10 s delay), so allow time.
    let mut after = rocketmq::Seen::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && !remaining.iter().all(|r| after.ids.contains(*r)) {
        let Some(m) = rs.next_within(Duration::from_secs(30)).await else {
            break;
        };
        rs.ack(&m.message_id).await;
        after.ids.push(m.metadata["rocketmq-message-id"].clone());
    }
    let extra = drain(&mut rs, Duration::from_secs(3)).await;
    let got: HashSet<&String> = before
        .ids
        .iter()
        .chain(late.iter())
        .chain(after.ids.iter())
        .chain(extra.ids.iter())
        .collect();
    let lost = ids.iter().filter(|i| !got.contains(i)).count();
    let acked_again = after
        .ids
        .iter()
        .chain(extra.ids.iter())
        .filter(|i| acked.contains(i))
        .count();
    let held_back = held
        .iter()
        .filter(|h| after.ids.contains(h) || extra.ids.contains(h))
        .count();
    let total = before.ids.len() + late.len() + after.ids.len() + extra.ids.len();
    report(name, 200, total, lost, total - got.len(), t.elapsed());
    println!(
        "  acked before stop: {} (the last {} just before it), unacked-in-flight at stop: {}, of them redelivered after restart: {held_back}, acked messages delivered again: {acked_again}",
        before.ids.len() + late.len(),
        late.len(),
        held.len()
    );
    let account = daemon_account(&log);
    assert_eq!(lost, 0, "{account}");
    assert_eq!(
        held_back,
        held.len(),
        "every unacked message comes back\n{account}"
    );
    if sig == libc::SIGTERM {
        assert_eq!(
            acked_again, 0,
            "nothing acked is delivered again after a clean stop\n{account}"
        );
        // The consumer's pulls sit in the broker's long poll at the stop; close must not wait
        // them out (it took 10-13 s when it did).
        assert!(
            exit < Duration::from_secs(3),
            "a clean stop with an input took {exit:?}\n{account}"
        );
    }
    bin.signal(libc::SIGTERM);
}

/// The daemon's log without the per-delivery lines: starts, stream ends, stop, close,
/// commits and every warning or error.
fn daemon_account(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("pull: delivery"))
        .collect();
    format!(
        "daemon log ({} lines, per-delivery lines left out):\n{}",
        lines.len(),
        lines[lines.len().saturating_sub(200)..].join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_sigterm_mid_stream() {
    stop_mid_stream(libc::SIGTERM, "sigterm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_sigkill_mid_stream() {
    stop_mid_stream(libc::SIGKILL, "sigkill").await;
}
