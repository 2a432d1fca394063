//! What the TCP input costs, measured on the real daemon binary against the real broker:
//! components that never ack cannot delay another component, and a backlog of large
//! messages does not fill the daemon's memory (it follows `maxInFlight` and the pull
//! thresholds, not the backlog). Every scenario prints a `SCENARIO` line with its numbers.

mod common;
#[path = "common/daemon_bin.rs"]
mod daemon_bin;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{ReadStream, TestDaemon, props};
use daemon_bin::Bin;
use rocketmq::{namesrv, send_n, unique};
use rocketmq_binding::transport::DefaultConnector;

const MIB: usize = 1024 * 1024;

fn input_props(
    ns: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut p = props(&[
        ("nameServer", ns),
        ("topics", topic),
        ("consumerGroup", group),
        ("fromWhere", "ConsumeFromFirstOffset"),
    ]);
    for (k, v) in extra {
        p.insert(k.to_string(), v.to_string());
    }
    p
}

/// Reads without acking until `n` deliveries are held or nothing came for `idle`.
async fn hold(rs: &mut ReadStream, n: usize, idle: Duration) -> Vec<String> {
    let mut held = Vec::new();
    while held.len() < n {
        match rs.next_within(idle).await {
            Some(m) => held.push(m.message_id),
            None => break,
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_acking_components_do_not_delay_another() {
    let ns = namesrv();
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(dir.path());
    let daprd = bin.daprd().await;
    daprd
        .init_output("out", props(&[("nameServer", &ns)]))
        .await
        .unwrap();
    // Two stuck components with a backlog larger than they may hold, at high concurrency
    // (the push consumer parked a thread per held message: 256 each).
    let in_flight = 400;
    let mut stuck = Vec::new();
    for name in ["stuck-a", "stuck-b"] {
        let topic = unique(name);
        send_n(
            &daprd,
            "out",
            in_flight + 100,
            |i| format!("{name}-{i}").into_bytes(),
            &[("rocketmq-topic", &topic)],
        )
        .await;
        let limit = in_flight.to_string();
        daprd
            .init_input(
                name,
                input_props(
                    &ns,
                    &topic,
                    &unique("g"),
                    &[("consumerThreadNums", "256"), ("maxInFlight", &limit)],
                ),
            )
            .await
            .unwrap();
        stuck.push(daprd.read(name).await.unwrap());
    }
    let t = Instant::now();
    let mut held = Vec::new();
    for rs in &mut stuck {
        held.push(hold(rs, in_flight, Duration::from_secs(60)).await.len());
    }
    println!(
        "  held without acks: {held:?} in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for h in &held {
        assert_eq!(
            *h, in_flight,
            "each stuck component holds maxInFlight deliveries"
        );
    }
    // Nothing more than maxInFlight reaches a stuck reader.
    for rs in &mut stuck {
        assert!(rs.next_within(Duration::from_secs(2)).await.is_none());
    }

    // A third component: Init and deliveries are not slowed by the other two.
    let topic = unique("free");
    let t = Instant::now();
    daprd
        .init_input("free", input_props(&ns, &topic, &unique("g"), &[]))
        .await
        .unwrap();
    let init = t.elapsed();
    let mut rs = daprd.read("free").await.unwrap();
    // The first delivery waits for the new group's first rebalance (up to ~20 s).
    daprd
        .invoke("out", "create", b"warm-up", &[("rocketmq-topic", &topic)])
        .await
        .unwrap();
    let m = rs
        .next_within(Duration::from_secs(60))
        .await
        .expect("warm-up delivered");
    rs.ack(&m.message_id).await;
    let mut worst = Duration::ZERO;
    let n = 50;
    for i in 0..n {
        let body = format!("free-{i}");
        let t = Instant::now();
        let r = daprd
            .invoke(
                "out",
                "create",
                body.as_bytes(),
                &[("rocketmq-topic", &topic)],
            )
            .await
            .unwrap();
        let m = rs
            .next_within(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("message {i} not delivered within 5 s"));
        let took = t.elapsed();
        worst = worst.max(took);
        assert_eq!(
            m.metadata["rocketmq-message-id"],
            r.metadata["rocketmq-message-id"]
        );
        rs.ack(&m.message_id).await;
    }
    println!(
        "SCENARIO isolation: 2 components holding {in_flight} unacked each; third: Init {:.0} ms, {n} messages, worst send→delivery {:.0} ms",
        init.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    assert!(init < Duration::from_secs(2), "Init took {init:?}");
    assert!(worst < Duration::from_secs(1), "worst delivery {worst:?}");
}

/// A backlog of `n` × 1 MiB messages on a fresh topic, sent by another daemon (in this
/// process), so that only the input side counts in the measured daemon's memory.
async fn large_backlog(ns: &str, n: usize, body: usize) -> String {
    let topic = unique("big");
    let sender = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let daprd = sender.daprd().await;
    daprd
        .init_output("out", props(&[("nameServer", ns), ("sendTimeout", "10s")]))
        .await
        .unwrap();
    send_n(
        &daprd,
        "out",
        n,
        |i| {
            let mut b = vec![(i % 251) as u8; body];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            b
        },
        &[("rocketmq-topic", &topic)],
    )
    .await;
    sender.shutdown().await;
    topic
}

/// What the measured daemon did with the backlog.
struct Drained {
    seen: usize,
    queues: usize,
    took: Duration,
    idle_rss: usize,
    peak_rss: usize,
    hwm: usize,
}

/// Reads the backlog with a slow app (5 ms per message) through the daemon binary.
async fn drain_backlog(
    ns: &str,
    topic: &str,
    n: usize,
    body: usize,
    extra: &[(&str, &str)],
) -> Drained {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(dir.path());
    let daprd = bin.daprd().await;
    daprd
        .init_input("in", input_props(ns, topic, &unique("g"), extra))
        .await
        .unwrap();
    let idle_rss = bin.status_bytes("VmRSS:");
    let mut rs = daprd.read("in").await.unwrap();
    let t = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut queues = std::collections::HashSet::new();
    let mut peak_rss = 0;
    while seen.len() < n && t.elapsed() < Duration::from_secs(180) {
        let Some(m) = rs.next_within(Duration::from_secs(60)).await else {
            break;
        };
        assert_eq!(m.data.len(), body);
        seen.insert(u64::from_le_bytes(m.data[..8].try_into().unwrap()));
        queues.insert(m.metadata["rocketmq-queue-id"].clone());
        // A slow app: the backlog waits in the broker, not in the daemon.
        tokio::time::sleep(Duration::from_millis(5)).await;
        rs.ack(&m.message_id).await;
        peak_rss = peak_rss.max(bin.status_bytes("VmRSS:"));
    }
    Drained {
        seen: seen.len(),
        queues: queues.len(),
        took: t.elapsed(),
        idle_rss,
        peak_rss,
        hwm: bin.status_bytes("VmHWM:"),
    }
}

fn report_memory(what: &str, n: usize, d: &Drained, bound: usize) {
    println!(
        "SCENARIO memory ({what}): {n} × 1 MiB backlog: delivered {} from {} queues in {:.1}s; daemon RSS idle {:.1} MB, peak sampled {:.1} MB, VmHWM {:.1} MB (bound {:.1} MB)",
        d.seen,
        d.queues,
        d.took.as_secs_f64(),
        d.idle_rss as f64 / 1e6,
        d.peak_rss as f64 / 1e6,
        d.hwm as f64 / 1e6,
        bound as f64 / 1e6
    );
}

/// The concurrent (pull) input: memory follows `maxInFlight` and the fitted pull batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_large_messages_does_not_fill_memory() {
    pull_backlog_within_bound(200, 4).await;
}

/// The example the target names: 400 × 1 MiB behind `maxInFlight` 64, so 64 bodies may be
/// held for the app at once; the rest of the backlog stays in the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_400_mib_backlog_with_max_in_flight_64_stays_within_its_bound() {
    pull_backlog_within_bound(400, 64).await;
}

/// Drains `n` × 1 MiB with `maxInFlight` `max_in_flight`; the daemon's VmHWM must stay within
/// 100 MB + `max_in_flight` bodies.
async fn pull_backlog_within_bound(n: usize, max_in_flight: usize) {
    let ns = namesrv();
    let body = MIB;
    let topic = large_backlog(&ns, n, body).await;
    let limit = max_in_flight.to_string();
    let d = drain_backlog(&ns, &topic, n, body, &[("maxInFlight", &limit)]).await;
    let bound = 100 * 1000 * 1000 + max_in_flight * body;
    report_memory(&format!("pull, maxInFlight {max_in_flight}"), n, &d, bound);
    assert_eq!(d.seen, n, "every message delivered");
    assert!(d.hwm <= bound, "daemon VmHWM {} B above {bound} B", d.hwm);
}

/// The orderly (push) input holds one message per queue at a time (the listener waits for its
/// ack), so `maxInFlight` does not bound it: the crate's cache does, per queue at most
/// `pullThresholdSizeForQueue` MiB (counted in whole MiB, so up to one MiB more) plus one
/// pull of `consumerBatchSize` messages whatever they weigh, and the one message handed to
/// the app is a second copy of its body. The bound is exactly that, for the queues seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_large_messages_does_not_fill_memory_orderly() {
    let ns = namesrv();
    let (n, body) = (200, MIB);
    let (threshold_mib, batch) = (2, 2);
    let topic = large_backlog(&ns, n, body).await;
    let d = drain_backlog(
        &ns,
        &topic,
        n,
        body,
        &[
            ("consumeOrderly", "true"),
            ("pullThresholdSizeForQueue", &threshold_mib.to_string()),
            ("consumerBatchSize", &batch.to_string()),
        ],
    )
    .await;
    let per_queue = (threshold_mib + 1) * MIB + batch * body + body;
    let bound = 100 * 1000 * 1000 + d.queues.max(1) * per_queue;
    report_memory(
        &format!("orderly, pullThresholdSizeForQueue {threshold_mib}, consumerBatchSize {batch}"),
        n,
        &d,
        bound,
    );
    assert_eq!(d.seen, n, "every message delivered");
    assert!(d.hwm <= bound, "daemon VmHWM {} B above {bound} B", d.hwm);
}
