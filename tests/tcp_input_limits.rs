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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_large_messages_does_not_fill_memory() {
    let ns = namesrv();
    let n = 200;
    let body = MIB;
    let max_in_flight = 4;
    let topic = unique("big");
    // The backlog is sent by another daemon (in this process), so that only the input side
    // counts in the measured daemon's memory.
    {
        let sender = TestDaemon::start(Arc::new(DefaultConnector)).await;
        let daprd = sender.daprd().await;
        daprd
            .init_output("out", props(&[("nameServer", &ns), ("sendTimeout", "10s")]))
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
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::start(dir.path());
    let daprd = bin.daprd().await;
    let limit = max_in_flight.to_string();
    daprd
        .init_input(
            "in",
            input_props(&ns, &topic, &unique("g"), &[("maxInFlight", &limit)]),
        )
        .await
        .unwrap();
    let idle_rss = bin.status_bytes("VmRSS:");
    let mut rs = daprd.read("in").await.unwrap();
    let t = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut peak_rss = 0;
    while seen.len() < n && t.elapsed() < Duration::from_secs(180) {
        let Some(m) = rs.next_within(Duration::from_secs(60)).await else {
            break;
        };
        assert_eq!(m.data.len(), body);
        seen.insert(u64::from_le_bytes(m.data[..8].try_into().unwrap()));
        // A slow app: the backlog waits in the broker, not in the daemon.
        tokio::time::sleep(Duration::from_millis(5)).await;
        rs.ack(&m.message_id).await;
        peak_rss = peak_rss.max(bin.status_bytes("VmRSS:"));
    }
    let hwm = bin.status_bytes("VmHWM:");
    let bound = 100 * 1000 * 1000 + max_in_flight * body;
    println!(
        "SCENARIO memory: {n} × 1 MiB backlog, maxInFlight {max_in_flight}: delivered {} in {:.1}s; daemon RSS idle {:.1} MB, peak sampled {:.1} MB, VmHWM {:.1} MB (bound {:.1} MB)",
        seen.len(),
        t.elapsed().as_secs_f64(),
        idle_rss as f64 / 1e6,
        peak_rss as f64 / 1e6,
        hwm as f64 / 1e6,
        bound as f64 / 1e6
    );
    assert_eq!(seen.len(), n, "every message delivered");
    assert!(hwm <= bound, "daemon VmHWM {hwm} B above {bound} B");
}
