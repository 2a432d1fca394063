//! `accessProto: tcp` against a real name server and broker, through the daemon's socket with
//! the daprd-like client. Servers: `scripts/rocketmq-local.sh` (Apache RocketMQ 5.3.3 by default;
//! `RMQ_SERVER=java4` 4.9.7, `rust` the Rust servers; see `tests/common/rocketmq.rs`). Each test uses fresh topics and groups, so they run in
//! parallel on the shared pair. Every scenario prints a `SCENARIO` line with its numbers.

mod common;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Daprd, TestDaemon, props};
use rocketmq::{
    acl, drain, namesrv, read_acking, read_then_quiet, report, send_n, server, server_has_timers,
    unique,
};
use rocketmq_binding::transport::DefaultConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn daemon() -> (TestDaemon, Daprd) {
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let c = d.daprd().await;
    (d, c)
}

fn input_props(topics: &str, group: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let ns = namesrv();
    let mut p = props(&[
        ("nameServer", ns.as_str()),
        ("topics", topics),
        ("consumerGroup", group),
        ("fromWhere", "ConsumeFromFirstOffset"),
    ]);
    p.extend(props(extra));
    p
}

fn output_props(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let ns = namesrv();
    let mut p = props(&[("nameServer", ns.as_str())]);
    p.extend(props(extra));
    p
}

/// A fresh topic with `n` messages (bodies `<prefix><i>`, property `idx`) sent through the
/// output instance `out`, then the input instance `in` on it with a fresh group and `extra`
/// metadata. Returns (group, message ids in send order).
async fn backlog_then_input(
    daprd: &Daprd,
    prefix: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> (String, Vec<String>) {
    let topic = unique(prefix);
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    let ids = send_n(
        daprd,
        "out",
        n,
        |i| format!("{prefix}{i}").into_bytes(),
        &[("rocketmq-topic", &topic)],
    )
    .await;
    daprd
        .init_input("in", input_props(&topic, &group, extra))
        .await
        .unwrap();
    (group, ids)
}

fn body_of(i: usize) -> Vec<u8> {
    // Binary, varying length, includes zero bytes and invalid UTF-8.
    let mut b = format!("msg-{i}-").into_bytes();
    b.extend((0..(i % 300)).map(|k| (k * 7 + i) as u8));
    b.push(0xff);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_1000_messages_intact() {
    let (_d, daprd) = daemon().await;
    let topic = unique("rt");
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    daprd
        .init_input("in", input_props(&topic, &group, &[]))
        .await
        .unwrap();
    let t = Instant::now();
    let ids = send_n(
        &daprd,
        "out",
        1000,
        body_of,
        &[
            ("rocketmq-topic", &topic),
            ("rocketmq-tag", "TagRT"),
            ("rocketmq-key", "k1,k2"),
            ("rocketmq-property-color", "blue"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                "tracestate",
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,v=a:b",
            ),
            (
                "baggage",
                "userId=alice,serverNode=DF%2028,isProduction=false",
            ),
            ("user-agent", "must-not-be-copied"),
        ],
    )
    .await;
    let send_time = t.elapsed();
    let mut rs = daprd.read("in").await.unwrap();
    let seen = read_acking(
        &mut rs,
        1000,
        Duration::from_secs(120),
        Duration::from_secs(20),
    )
    .await;
    let total = t.elapsed();
    let extra = drain(&mut rs, Duration::from_secs(3)).await;

    let sent: HashSet<&String> = ids.iter().collect();
    let got: HashSet<&String> = seen.ids.iter().collect();
    let lost = sent.difference(&got).count();
    let dup = seen.duplicates() + extra.ids.len();
    report("round-trip", 1000, seen.ids.len(), lost, dup, total);
    println!(
        "  send phase {:.2}s ({:.0} msg/s)",
        send_time.as_secs_f64(),
        1000.0 / send_time.as_secs_f64()
    );
    assert_eq!(lost, 0);
    assert_eq!(dup, 0);
    for (id, data, md) in &seen.msgs {
        let idx: usize = md["rocketmq-property-idx"].parse().unwrap();
        assert_eq!(data, &body_of(idx), "body of {id}");
        assert_eq!(md["rocketmq-topic"], topic);
        assert_eq!(md["rocketmq-tag"], "TagRT");
        assert_eq!(md["rocketmq-keys"], "k1,k2");
        assert_eq!(md["rocketmq-property-color"], "blue");
        assert_eq!(md["rocketmq-consumer-group"], group);
        assert_eq!(md["rocketmq-reconsume-times"], "0");
        assert!(md.contains_key("rocketmq-queue-id") && md.contains_key("rocketmq-queue-offset"));
        assert!(md.contains_key("rocketmq-broker-name"));
        assert!(md["rocketmq-born-timestamp"].parse::<u64>().unwrap() > 1_600_000_000_000);
        assert_eq!(
            md["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(
            md["tracestate"],
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,v=a:b"
        );
        assert_eq!(
            md["baggage"],
            "userId=alice,serverNode=DF%2028,isProduction=false"
        );
        assert!(!md.keys().any(|k| k.contains("user-agent")), "{md:?}");
        assert_eq!(ids[idx], *id, "receipt id == consumer id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipt_and_fan_out_to_configured_topics() {
    let (_d, daprd) = daemon().await;
    let (a, b) = (unique("fa"), unique("fb"));
    let topics = format!("{a}, {b}||OnlyB");
    daprd
        .init_output("out", output_props(&[("topics", &topics)]))
        .await
        .unwrap();
    let r = daprd.invoke("out", "create", b"x", &[]).await.unwrap();
    let md = r.metadata;
    println!("fan-out receipt: {md:?}");
    assert_eq!(md["rocketmq-topic"], format!("{a},{b}"));
    assert_eq!(md["rocketmq-message-id"].split(',').count(), 2);
    assert_eq!(md["rocketmq-send-status"], "SEND_OK,SEND_OK");
    assert_eq!(md["rocketmq-queue-offset"], "0,0");
    assert_eq!(md["rocketmq-queue-id"].split(',').count(), 2);
    assert!(md["rocketmq-broker-name"].starts_with("broker-"));
    // The B entry's single tag is the default tag; a consumer of B||OnlyB gets it.
    let group = unique("g");
    daprd
        .init_input("in", input_props(&format!("{b}||OnlyB"), &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let m = rs.next().await;
    rs.ack(&m.message_id).await;
    assert_eq!(m.metadata["rocketmq-tag"], "OnlyB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_filtering_with_spaced_or_lists() {
    let (_d, daprd) = daemon().await;
    let topic = unique("tag");
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    let t = Instant::now();
    let mut want = HashSet::new();
    for tag in ["TagA", "TagB", "TagC"] {
        let ids = send_n(
            &daprd,
            "out",
            30,
            |i| format!("{tag}-{i}").into_bytes(),
            &[("rocketmq-topic", &topic), ("rocketmq-tag", tag)],
        )
        .await;
        if tag != "TagC" {
            want.extend(ids);
        }
    }
    daprd
        .init_input(
            "in",
            input_props(&format!("{topic} || TagA || TagB"), &group, &[]),
        )
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let seen = read_then_quiet(
        &mut rs,
        60,
        Duration::from_secs(60),
        Duration::from_secs(20),
        Duration::from_secs(4),
    )
    .await;
    let tag_c = seen
        .msgs
        .iter()
        .filter(|(_, _, md)| md["rocketmq-tag"] == "TagC")
        .count();
    let got: HashSet<_> = seen.ids.iter().cloned().collect();
    let lost = want.difference(&got).count();
    report(
        "tag-filter",
        90,
        seen.ids.len(),
        lost,
        seen.duplicates(),
        t.elapsed(),
    );
    println!("  TagC delivered: {tag_c} (expected 0)");
    assert_eq!(tag_c, 0);
    assert_eq!(lost, 0);
    assert_eq!(seen.duplicates(), 0);
}

/// `rocketmq-sub-type: sql92`: the broker filters on message properties (and TAGS); an
/// invalid expression fails Init with the broker's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql92_subscriptions_filter_on_properties() {
    let (_d, daprd) = daemon().await;
    let topic = unique("sql");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    let t = Instant::now();
    let mut want = HashSet::new();
    for (region, amount, tag) in [
        ("eu", "150", "A"),
        ("eu", "50", "A"),
        ("us", "500", "A"),
        ("eu", "300", "B"),
    ] {
        let ids = send_n(
            &daprd,
            "out",
            10,
            |i| format!("{region}-{amount}-{i}").into_bytes(),
            &[
                ("rocketmq-topic", &topic),
                ("rocketmq-tag", tag),
                ("rocketmq-property-region", region),
                ("rocketmq-property-amount", amount),
            ],
        )
        .await;
        if region == "eu" && amount != "50" && tag == "A" {
            want.extend(ids);
        }
    }
    daprd
        .init_input(
            "in",
            input_props(
                &topic,
                &unique("g"),
                &[
                    ("rocketmq-sub-type", "sql92"),
                    (
                        "rocketmq-sub-expression",
                        "region = 'eu' AND amount > 100 AND TAGS = 'A'",
                    ),
                ],
            ),
        )
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let seen = read_then_quiet(
        &mut rs,
        10,
        Duration::from_secs(60),
        Duration::from_secs(20),
        Duration::from_secs(4),
    )
    .await;
    let got: HashSet<_> = seen.ids.iter().cloned().collect();
    let lost = want.difference(&got).count();
    let unwanted = got.difference(&want).count();
    report(
        "sql92-filter",
        40,
        seen.ids.len(),
        lost,
        seen.duplicates(),
        t.elapsed(),
    );
    println!("  delivered outside the filter: {unwanted} (expected 0)");
    assert_eq!((lost, unwanted, seen.duplicates()), (0, 0, 0));

    // An expression the broker cannot compile: Init fails with the broker's reason (the
    // broker checks the subscription when asked, as the Java consumer does at start).
    let e = daprd
        .init_input(
            "bad",
            input_props(
                &topic,
                &unique("g"),
                &[
                    ("rocketmq-sub-type", "sql92"),
                    ("rocketmq-sub-expression", "region = = 'eu'"),
                ],
            ),
        )
        .await
        .unwrap_err();
    println!(
        "  invalid expression at Init: {:?} {}",
        e.code(),
        e.message()
    );
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message()
            .contains("Init metadata `rocketmq-sub-expression`")
            && e.message().contains("rejected the subscription"),
        "{}",
        e.message()
    );
    // A topic without a route yet is checked on a broker of the default topic: a valid
    // expression passes, an invalid one fails the same way.
    let fresh = unique("sql-new");
    daprd
        .init_input(
            "later",
            input_props(
                &fresh,
                &unique("g"),
                &[
                    ("rocketmq-sub-type", "sql92"),
                    ("rocketmq-sub-expression", "region = 'eu'"),
                ],
            ),
        )
        .await
        .unwrap();
    let e = daprd
        .init_input(
            "later-bad",
            input_props(
                &fresh,
                &unique("g"),
                &[
                    ("rocketmq-sub-type", "sql92"),
                    ("rocketmq-sub-expression", "region = = 'eu'"),
                ],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharding_keys_keep_order_with_consume_orderly() {
    let (_d, daprd) = daemon().await;
    let topic = unique("ord");
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    let keys = ["order-a", "order-b", "order-c"];
    let t = Instant::now();
    let mut queue_of: HashMap<&str, HashSet<String>> = HashMap::new();
    for i in 0..100 {
        for k in keys {
            let seq = i.to_string();
            let r = daprd
                .invoke(
                    "out",
                    "create",
                    format!("{k}:{i}").as_bytes(),
                    &[
                        ("rocketmq-topic", &topic),
                        ("rocketmq-shardingkey", k),
                        ("rocketmq-property-seq", &seq),
                    ],
                )
                .await
                .unwrap();
            queue_of
                .entry(k)
                .or_default()
                .insert(r.metadata["rocketmq-queue-id"].clone());
        }
    }
    for (k, qs) in &queue_of {
        assert_eq!(qs.len(), 1, "{k} went to several queues: {qs:?}");
    }
    daprd
        .init_input(
            "in",
            input_props(
                &topic,
                &group,
                &[("consumeOrderly", "true"), ("consumerThreadNums", "4")],
            ),
        )
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    // Fail one message of each key once: the queue must stall on it, not skip it.
    let mut failed_once: HashSet<String> = HashSet::new();
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut out_of_order = 0;
    let mut delivered = 0;
    let mut dups = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next.values().sum::<usize>() < 300 && Instant::now() < deadline {
        let Some(m) = rs.next_within(Duration::from_secs(30)).await else {
            break;
        };
        delivered += 1;
        let key = m.metadata["rocketmq-shardingkey"].clone();
        let seq: usize = m.metadata["rocketmq-property-seq"].parse().unwrap();
        if seq == 50 && failed_once.insert(key.clone()) {
            rs.nack(&m.message_id, "fail once").await;
            continue;
        }
        let exp = next.entry(key.clone()).or_insert(0);
        if seq < *exp {
            dups += 1;
        } else if seq != *exp {
            out_of_order += 1;
        }
        *exp = (*exp).max(seq + 1);
        rs.ack(&m.message_id).await;
    }
    let done: usize = next.values().sum();
    report(
        "orderly-3x100",
        300,
        delivered,
        300 - done,
        dups,
        t.elapsed(),
    );
    println!(
        "  out of order: {out_of_order}, redelivered after a failure: {}",
        failed_once.len()
    );
    assert_eq!(done, 300);
    assert_eq!(out_of_order, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delay_level_and_deliver_after_are_honoured() {
    let (_d, daprd) = daemon().await;
    let topic = unique("dly");
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    daprd
        .invoke("out", "create", b"warm-up", &[("rocketmq-topic", &topic)])
        .await
        .unwrap();
    daprd
        .init_input("in", input_props(&topic, &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let m = rs.next().await;
    rs.ack(&m.message_id).await;

    let t0 = Instant::now();
    daprd
        .invoke(
            "out",
            "create",
            b"delayed-level-2",
            &[("rocketmq-topic", &topic), ("rocketmq-delaylevel", "2")],
        )
        .await
        .unwrap();
    daprd
        .invoke(
            "out",
            "create",
            b"deliver-after-3s",
            &[("rocketmq-topic", &topic), ("rocketmq-deliver-after", "3s")],
        )
        .await
        .unwrap();
    let mut at = HashMap::new();
    for _ in 0..2 {
        let m = rs
            .next_within(Duration::from_secs(30))
            .await
            .expect("delayed message");
        rs.ack(&m.message_id).await;
        at.insert(String::from_utf8_lossy(&m.data).to_string(), t0.elapsed());
    }
    let lvl2 = at["delayed-level-2"];
    let after3 = at["deliver-after-3s"];
    println!(
        "SCENARIO delay: level 2 (5 s) arrived after {:.2}s; deliver-after 3s arrived after {:.2}s",
        lvl2.as_secs_f64(),
        after3.as_secs_f64()
    );
    assert!(lvl2 >= Duration::from_millis(4500) && lvl2 < Duration::from_secs(15));
    if server_has_timers() {
        assert!(after3 >= Duration::from_millis(2500) && after3 < Duration::from_secs(15));
    } else {
        // Apache RocketMQ 4.x has no timer messages: the property is stored, the message is
        // delivered at once (Alibaba Cloud 4.x uses `__STARTDELIVERTIME` instead).
        println!(
            "  {}: no 5.x timers, deliver-after delivered at once",
            server()
        );
        assert!(after3 < Duration::from_secs(3), "{after3:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_third_nacked_is_redelivered_once_then_never_again() {
    let (_d, daprd) = daemon().await;
    let n = 30;
    let (_, ids) = backlog_then_input(&daprd, "rty", n, &[]).await;
    let t = Instant::now();
    let mut rs = daprd.read("in").await.unwrap();
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut retimes: HashMap<String, String> = HashMap::new();
    while acked.len() < n && t.elapsed() < Duration::from_secs(90) {
        let Some(m) = rs.next_within(Duration::from_secs(40)).await else {
            break;
        };
        let id = m.metadata["rocketmq-message-id"].clone();
        let idx: usize = m.metadata["rocketmq-property-idx"].parse().unwrap();
        let c = count.entry(id.clone()).or_insert(0);
        *c += 1;
        if idx.is_multiple_of(3) && *c == 1 {
            rs.nack(&m.message_id, "first attempt fails").await;
        } else {
            retimes.insert(id.clone(), m.metadata["rocketmq-reconsume-times"].clone());
            rs.ack(&m.message_id).await;
            acked.insert(id);
        }
    }
    let elapsed = t.elapsed();
    let extra = drain(&mut rs, Duration::from_secs(15)).await;
    let lost = ids.iter().filter(|id| !acked.contains(*id)).count();
    let wrong: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| count.get(*id).copied().unwrap_or(0) != if i % 3 == 0 { 2 } else { 1 })
        .collect();
    let delivered: usize = count.values().sum();
    report(
        "nack-every-third",
        n,
        delivered,
        lost,
        extra.ids.len() + wrong.len(),
        elapsed,
    );
    println!(
        "  expected deliveries {} (30 + 10 redeliveries), after-ack extra {}",
        n + n / 3,
        extra.ids.len()
    );
    assert_eq!(lost, 0);
    assert!(wrong.is_empty(), "unexpected delivery counts: {wrong:?}");
    assert!(
        extra.ids.is_empty(),
        "delivered again after ack: {:?}",
        extra.ids
    );
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 3 == 0 { "1" } else { "0" };
        assert_eq!(retimes[id], want, "reconsume times of #{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_are_confirmed_whole_and_one_failure_redelivers_its_batch() {
    let (_d, daprd) = daemon().await;
    let n = 40;
    let threads = 2;
    let (_, ids) = backlog_then_input(
        &daprd,
        "bat",
        n,
        &[
            ("consumerThreadNums", "2"),
            ("consumeMessageBatchMaxSize", "8"),
        ],
    )
    .await;
    let t = Instant::now();
    let mut rs = daprd.read("in").await.unwrap();
    // Hold deliveries without acking: two consume threads with batches of 8 put up to 16
    // messages in flight (one at a time per thread without batching: 2).
    let mut held = Vec::new();
    while let Some(m) = rs.next_within(Duration::from_secs(3)).await {
        held.push(m);
        if held.len() == 16 {
            break;
        }
    }
    assert!(
        held.len() > threads,
        "only {} deliveries in flight with {threads} threads: batches are not handed over whole",
        held.len()
    );
    // Fail the first held message, ack the rest.
    let failed = held[0].metadata["rocketmq-message-id"].clone();
    let failed_queue = held[0].metadata["rocketmq-queue-id"].clone();
    rs.nack(&held[0].message_id, "fails once").await;
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut acked: HashSet<String> = HashSet::new();
    // Queue of each message acked on its first delivery (redeliveries come from the retry
    // topic's queues).
    let mut first_queue: HashMap<String, String> = HashMap::new();
    count.insert(failed.clone(), 1);
    for m in &held[1..] {
        let id = m.metadata["rocketmq-message-id"].clone();
        *count.entry(id.clone()).or_insert(0) += 1;
        rs.ack(&m.message_id).await;
        first_queue.insert(id.clone(), m.metadata["rocketmq-queue-id"].clone());
        acked.insert(id);
    }
    let mut redelivered_after_ack: Vec<(String, String, String)> = Vec::new();
    // Until everything is acked, then until nothing more arrives for 12 s (the failed batch
    // comes back together from the retry topic after ~10 s).
    while t.elapsed() < Duration::from_secs(100) {
        let done = acked.len() == n && count[&failed] >= 2;
        let quiet = Duration::from_secs(if done { 12 } else { 40 });
        let Some(m) = rs.next_within(quiet).await else {
            break;
        };
        let id = m.metadata["rocketmq-message-id"].clone();
        *count.entry(id.clone()).or_insert(0) += 1;
        if first_queue.contains_key(&id) {
            redelivered_after_ack.push((
                id.clone(),
                first_queue[&id].clone(),
                m.metadata["rocketmq-reconsume-times"].clone(),
            ));
        }
        rs.ack(&m.message_id).await;
        acked.insert(id);
    }
    let elapsed = t.elapsed();
    let lost = ids.iter().filter(|id| !acked.contains(*id)).count();
    let delivered: usize = count.values().sum();
    report(
        "batch-8-one-nack",
        n,
        delivered,
        lost,
        delivered - n,
        elapsed,
    );
    println!(
        "  in flight at once: {} (threads {threads}); batch-mates redelivered with the failed one: {}",
        held.len(),
        redelivered_after_ack.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(count[&failed], 2, "the failed message comes back once");
    assert!(
        !redelivered_after_ack.is_empty(),
        "a failure must redeliver its whole batch"
    );
    assert!(
        redelivered_after_ack.len() <= 7,
        "{redelivered_after_ack:?}"
    );
    for (id, queue, times) in &redelivered_after_ack {
        assert_eq!(
            queue, &failed_queue,
            "{id} redelivered but not from the failed message's queue"
        );
        assert_eq!(times, "1", "{id}");
    }
    // Everything else exactly once, the batch once more, nothing after that.
    for id in &ids {
        let redelivered = *id == failed || redelivered_after_ack.iter().any(|(r, _, _)| r == id);
        assert_eq!(count[id], if redelivered { 2 } else { 1 }, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_retries_land_in_the_dlq() {
    let (_d, daprd) = daemon().await;
    let (group, ids) = backlog_then_input(&daprd, "dlq", 3, &[("maxReconsumeTimes", "1")]).await;
    let t = Instant::now();
    let mut rs = daprd.read("in").await.unwrap();
    let mut attempts = 0;
    // 3 messages × (1 + maxReconsumeTimes) attempts, all failing.
    while attempts < 6 && t.elapsed() < Duration::from_secs(60) {
        let Some(m) = rs.next_within(Duration::from_secs(30)).await else {
            break;
        };
        attempts += 1;
        rs.nack(&m.message_id, "always fails").await;
    }
    let dlq = format!("%DLQ%{group}");
    daprd
        .init_input("dlq", input_props(&dlq, &unique("gdlq"), &[]))
        .await
        .unwrap();
    let mut d = daprd.read("dlq").await.unwrap();
    let seen = read_acking(&mut d, 3, Duration::from_secs(90), Duration::from_secs(60)).await;
    let got: HashSet<_> = seen.ids.iter().collect();
    let lost = ids.iter().filter(|i| !got.contains(i)).count();
    report(
        "dlq",
        3,
        seen.ids.len(),
        lost,
        seen.duplicates(),
        t.elapsed(),
    );
    println!("  failed attempts before DLQ: {attempts} (expected 6)");
    assert_eq!(attempts, 6);
    assert_eq!(lost, 0, "DLQ got {:?}, sent {ids:?}", seen.ids);
    // Nothing more on the original topic.
    let extra = drain(&mut rs, Duration::from_secs(12)).await;
    assert!(extra.ids.is_empty(), "{:?}", extra.ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_in_one_group_share_the_messages() {
    let (_d1, a) = daemon().await;
    let (_d2, b) = daemon().await;
    let topic = unique("grp");
    let group = unique("g");
    a.init_output("out", output_props(&[])).await.unwrap();
    a.invoke("out", "create", b"warm-up", &[("rocketmq-topic", &topic)])
        .await
        .unwrap();
    let p = input_props(&topic, &group, &[]);
    a.init_input("in", p.clone()).await.unwrap();
    b.init_input("in", p).await.unwrap();
    let mut ra = a.read("in").await.unwrap();
    let mut rb = b.read("in").await.unwrap();
    // Let both join the group and rebalance.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let t = Instant::now();
    let sender = {
        let a = a.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            send_n(
                &a,
                "out",
                1000,
                |i| format!("s{i}").into_bytes(),
                &[("rocketmq-topic", &topic)],
            )
            .await
        })
    };
    let ha = tokio::spawn(async move {
        let s = drain(&mut ra, Duration::from_secs(15)).await;
        (ra, s)
    });
    let hb = tokio::spawn(async move {
        let s = drain(&mut rb, Duration::from_secs(15)).await;
        (rb, s)
    });
    let ids = sender.await.unwrap();
    let (_ra, sa) = ha.await.unwrap();
    let (_rb, sb) = hb.await.unwrap();
    let elapsed = t.elapsed();
    let mut all: Vec<&String> = sa.ids.iter().chain(sb.ids.iter()).collect();
    let warm = all.len();
    all.retain(|id| ids.contains(id));
    let got: HashSet<&String> = all.iter().copied().collect();
    let lost = ids.iter().filter(|i| !got.contains(i)).count();
    let dup = all.len() - got.len();
    report("two-daemons-one-group", 1000, all.len(), lost, dup, elapsed);
    println!(
        "  daemon A got {}, daemon B got {} (incl. warm-up: {warm} total)",
        sa.ids.len(),
        sb.ids.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(dup, 0);
    assert!(
        !sa.ids.is_empty() && !sb.ids.is_empty(),
        "both consumers must get a share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_right_keys_work_wrong_secret_is_a_clear_error() {
    let (ns, ak, sk) = acl();
    let metrics = rocketmq_binding::telemetry::metrics::install();
    let (_d, daprd) = daemon().await;
    let topic = unique("acl");
    let group = unique("g");
    let good = props(&[("nameServer", &ns), ("accessKey", &ak), ("secretKey", &sk)]);
    let out = unique("acl-good");
    daprd.init_output(&out, good.clone()).await.unwrap();
    let t = Instant::now();
    let mut ids = send_n(
        &daprd,
        &out,
        20,
        |i| format!("a{i}").into_bytes(),
        &[("rocketmq-topic", &topic)],
    )
    .await;
    // Concurrent creates leave as batch sends, signed like every other request.
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (daprd, topic, out) = (daprd.clone(), topic.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in 0..5 {
                let r = daprd
                    .invoke(
                        &out,
                        "create",
                        format!("c{task}-{k}").as_bytes(),
                        &[("rocketmq-topic", &topic)],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("concurrent create over ACL: {e}"));
                ids.push(r.metadata["rocketmq-message-id"].clone());
            }
            ids
        }));
    }
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let inst = format!("instance=\"{out}\"");
    let batches = common::metric_sample(
        &metrics.render(),
        "rocketmq_binding_send_batches_total",
        &[&inst],
    );
    println!("SCENARIO acl-batches: {batches} batch sends among 80 concurrent creates");
    assert!(batches >= 1.0, "no batch send over ACL");
    let mut inp = good.clone();
    inp.extend(props(&[
        ("topics", &topic),
        ("consumerGroup", &group),
        ("fromWhere", "ConsumeFromFirstOffset"),
    ]));
    daprd.init_input("in", inp).await.unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let seen = read_acking(
        &mut rs,
        ids.len(),
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
    let got: HashSet<_> = seen.ids.iter().collect();
    let lost = ids.iter().filter(|i| !got.contains(i)).count();
    report(
        "acl-right-keys",
        ids.len(),
        seen.ids.len(),
        lost,
        seen.duplicates(),
        t.elapsed(),
    );
    assert_eq!(lost, 0);

    let bad = props(&[
        ("nameServer", &ns),
        ("accessKey", &ak),
        ("secretKey", "definitely-wrong-secret"),
    ]);
    let init = daprd.init_output("bad", bad).await;
    let err = match init {
        Err(e) => e,
        Ok(()) => daprd
            .invoke("bad", "create", b"x", &[("rocketmq-topic", &topic)])
            .await
            .expect_err("a wrong secret must fail"),
    };
    println!(
        "SCENARIO acl-wrong-secret: {:?}: {}",
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(!err.message().contains("definitely-wrong-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_ids_with_the_same_topic_never_cross() {
    let (_d, daprd) = daemon().await;
    let topic = unique("ns");
    let (ia, ib) = (unique("MQ_INST_a"), unique("MQ_INST_b"));
    for (name, inst) in [("a", &ia), ("b", &ib)] {
        daprd
            .init_output(
                &format!("out-{name}"),
                output_props(&[("instanceId", inst)]),
            )
            .await
            .unwrap();
        let g = unique("g");
        daprd
            .init_input(
                &format!("in-{name}"),
                input_props(&topic, &g, &[("instanceId", inst)]),
            )
            .await
            .unwrap();
    }
    let t = Instant::now();
    send_n(
        &daprd,
        "out-a",
        10,
        |_| b"A".to_vec(),
        &[("rocketmq-topic", &topic)],
    )
    .await;
    send_n(
        &daprd,
        "out-b",
        10,
        |_| b"B".to_vec(),
        &[("rocketmq-topic", &topic)],
    )
    .await;
    let mut ra = daprd.read("in-a").await.unwrap();
    let mut rb = daprd.read("in-b").await.unwrap();
    let sa = read_acking(
        &mut ra,
        10,
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
    let sb = read_acking(
        &mut rb,
        10,
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
    let ea = drain(&mut ra, Duration::from_secs(3)).await;
    let eb = drain(&mut rb, Duration::from_secs(3)).await;
    let crossed = sa
        .msgs
        .iter()
        .chain(ea.msgs.iter())
        .filter(|m| m.1 != b"A")
        .count()
        + sb.msgs
            .iter()
            .chain(eb.msgs.iter())
            .filter(|m| m.1 != b"B")
            .count();
    report(
        "two-instance-ids",
        20,
        sa.ids.len() + sb.ids.len() + ea.ids.len() + eb.ids.len(),
        20 - sa.distinct() - sb.distinct(),
        0,
        t.elapsed(),
    );
    println!("  crossed: {crossed}");
    assert_eq!(crossed, 0);
    assert_eq!(sa.distinct(), 10);
    assert_eq!(sb.distinct(), 10);
    assert_eq!(
        sa.msgs[0].2["rocketmq-topic"], topic,
        "topic without namespace"
    );
}

/// A one-route HTTP address server: GET anything → `body`.
async fn address_server(body: String) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/rocketmq/nsaddr"), h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn name_server_domain_is_fetched_over_http() {
    let (_d, daprd) = daemon().await;
    let (url, _srv) = address_server(format!("{};127.0.0.1:1\n", namesrv())).await;
    let topic = unique("dom");
    let group = unique("g");
    daprd
        .init_output("out", props(&[("nameServerDomain", &url)]))
        .await
        .unwrap();
    let r = daprd
        .invoke(
            "out",
            "create",
            b"via-domain",
            &[("rocketmq-topic", &topic)],
        )
        .await
        .unwrap();
    daprd
        .init_input(
            "in",
            props(&[
                ("nameServerDomain", &url),
                ("topics", &topic),
                ("consumerGroup", &group),
                ("fromWhere", "ConsumeFromFirstOffset"),
            ]),
        )
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let m = rs.next().await;
    rs.ack(&m.message_id).await;
    assert_eq!(
        m.metadata["rocketmq-message-id"],
        r.metadata["rocketmq-message-id"]
    );
    // An address server that is down: Init fails, naming the URL.
    let e = daprd
        .init_output(
            "down",
            props(&[("nameServerDomain", "http://127.0.0.1:1/ns")]),
        )
        .await
        .unwrap_err();
    println!(
        "SCENARIO name-server-domain: ok; down address server → {:?}: {}",
        e.code(),
        e.message()
    );
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("127.0.0.1:1"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_name_server_fails_init_quickly_and_bad_metadata_is_invalid() {
    let (_d, daprd) = daemon().await;
    let t = Instant::now();
    let e = daprd
        .init_output("out", props(&[("nameServer", "127.0.0.1:1")]))
        .await
        .unwrap_err();
    let took = t.elapsed();
    println!(
        "SCENARIO init-unreachable: {:?} after {:.2}s: {}",
        e.code(),
        took.as_secs_f64(),
        e.message()
    );
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("127.0.0.1:1"));
    assert!(took < Duration::from_secs(4));
    let e = daprd
        .init_input(
            "in",
            props(&[("nameServer", "127.0.0.1:1"), ("topics", "t")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    daprd.init_output("ok", output_props(&[])).await.unwrap();
    for md in [
        &[("rocketmq-topic", "t"), ("rocketmq-delaylevel", "19")][..],
        &[("rocketmq-topic", "bad topic")][..],
        &[("rocketmq-topic", "t"), ("rocketmq-property-KEYS", "x")][..],
    ] {
        let e = daprd.invoke("ok", "create", b"x", md).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{md:?}: {e:?}");
    }
}

/// Issue 13, item 6, against the real broker: the local limits use the broker's numbers.
/// Properties of exactly the local maximum are sent and delivered intact, one byte more is
/// INVALID_ARGUMENT naming the limit (never the broker's opaque code 13), and a
/// `rocketmq-deliver-at` in the past is delivered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_limits_are_checked_locally_with_the_brokers_numbers() {
    use rocketmq_binding::transport::limits::{MAX_PROPERTIES_BYTES, PROPERTIES_KEY};
    let (_d, daprd) = daemon().await;
    let topic = unique("lim");
    let group = unique("g");
    daprd.init_output("out", output_props(&[])).await.unwrap();
    let to = [("rocketmq-topic", topic.as_str())];
    daprd
        .invoke("out", "create", b"warm-up", &to)
        .await
        .unwrap();
    daprd
        .init_input("in", input_props(&topic, &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("in").await.unwrap();
    let m = rs
        .next_within(Duration::from_secs(60))
        .await
        .expect("warm-up");
    rs.ack(&m.message_id).await;

    // What the client adds to the properties itself (the WAIT flag, …) is learnt from the
    // error for a value far over the limit: "… take N bytes encoded …".
    let probe = "p".repeat(40_000);
    let e = daprd
        .invoke(
            "out",
            "create",
            b"x",
            &[
                ("rocketmq-topic", &topic),
                ("rocketmq-property-big", &probe),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let taken: usize = e
        .message()
        .split("take ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {:?}", e.message()));
    let max_value = MAX_PROPERTIES_BYTES - (taken - probe.len());

    let at_limit = "v".repeat(max_value);
    let r = daprd
        .invoke(
            "out",
            "create",
            b"at-limit",
            &[
                ("rocketmq-topic", &topic),
                ("rocketmq-property-big", &at_limit),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("properties of exactly {MAX_PROPERTIES_BYTES} bytes: {e:?}"));
    assert_eq!(r.metadata["rocketmq-send-status"], "SEND_OK");
    let one_more = "v".repeat(max_value + 1);
    let e = daprd
        .invoke(
            "out",
            "create",
            b"over",
            &[
                ("rocketmq-topic", &topic),
                ("rocketmq-property-big", &one_more),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains(PROPERTIES_KEY)
            && e.message()
                .contains(&format!("take {} bytes", MAX_PROPERTIES_BYTES + 1))
            && e.message()
                .contains(&format!("at most {MAX_PROPERTIES_BYTES}")),
        "{}",
        e.message()
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let past = (now_ms - 60_000).to_string();
    let t0 = Instant::now();
    daprd
        .invoke(
            "out",
            "create",
            b"past",
            &[("rocketmq-topic", &topic), ("rocketmq-deliver-at", &past)],
        )
        .await
        .unwrap_or_else(|e| panic!("a deliver-at in the past: {e:?}"));

    let mut got = HashMap::new();
    while got.len() < 2 {
        let m = rs
            .next_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("only {:?} delivered", got.keys().collect::<Vec<_>>()));
        rs.ack(&m.message_id).await;
        got.insert(
            String::from_utf8_lossy(&m.data).to_string(),
            (m, t0.elapsed()),
        );
    }
    let (m, _) = &got["at-limit"];
    assert_eq!(
        m.metadata.get("rocketmq-property-big").map(String::len),
        Some(max_value),
        "the property at the limit arrived intact"
    );
    assert!(
        m.metadata["rocketmq-property-big"]
            .bytes()
            .all(|b| b == b'v')
    );
    let (_, after) = got["past"];
    println!(
        "SCENARIO broker-limits ({}): properties of {MAX_PROPERTIES_BYTES} bytes (value {max_value}) sent and delivered, one more refused locally; deliver-at 60 s in the past delivered after {:.2}s",
        server(),
        after.as_secs_f64()
    );
    assert!(after < Duration::from_secs(10), "{after:?}");
    assert!(rs.next_within(Duration::from_secs(2)).await.is_none());
}

/// `maxSendBatch`: concurrent creates of one topic leave as batch sends (the metric counts
/// them), yet every create's receipt is its own message: its id, queue and offset are where
/// the consumer finds it, with its own body, tag, keys and properties. A second Component
/// with `maxSendBatch: 1` under the same load sends no batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_are_coalesced_and_keep_their_own_receipts() {
    const TASKS: usize = 48;
    const EACH: usize = 25;
    let metrics = rocketmq_binding::telemetry::metrics::install();
    let (_d, daprd) = daemon().await;
    let topic = unique("co");
    let group = unique("g");
    let (batched, single) = (unique("co-out"), unique("co-one"));
    daprd
        .init_output(&batched, output_props(&[]))
        .await
        .unwrap();
    daprd
        .init_output(&single, output_props(&[("maxSendBatch", "1")]))
        .await
        .unwrap();
    let to = [("rocketmq-topic", topic.as_str())];
    daprd
        .invoke(&batched, "create", b"warm-up", &to)
        .await
        .unwrap();

    let t = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (daprd, topic, name) = (daprd.clone(), topic.clone(), batched.clone());
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for k in 0..EACH {
                let i = task * EACH + k;
                let (idx, tag, key) = (i.to_string(), format!("T{}", i % 3), format!("k{i}"));
                let md = [
                    ("rocketmq-topic", topic.as_str()),
                    ("rocketmq-tag", tag.as_str()),
                    ("rocketmq-key", key.as_str()),
                    ("rocketmq-property-idx", idx.as_str()),
                ];
                let r = daprd
                    .invoke(&name, "create", &body_of(i), &md)
                    .await
                    .unwrap_or_else(|e| panic!("create {i}: {e}"));
                receipts.push((i, r.metadata));
            }
            receipts
        }));
    }
    let mut receipts: HashMap<usize, HashMap<String, String>> = HashMap::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    let took = t.elapsed();
    let n = TASKS * EACH;
    let text = metrics.render();
    let inst = format!("instance=\"{batched}\"");
    let batches = common::metric_sample(&text, "rocketmq_binding_send_batches_total", &[&inst]);
    let in_batches =
        common::metric_sample(&text, "rocketmq_binding_batched_messages_total", &[&inst]);
    println!(
        "SCENARIO coalesce: {n} creates from {TASKS} callers in {:.2}s ({:.0}/s); {batches} batch sends carried {in_batches} of them",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    assert!(batches >= 1.0, "no batch send at concurrency {TASKS}");
    assert!(in_batches >= 2.0 * batches && in_batches <= n as f64);

    // Each receipt names a distinct message and a distinct place.
    let ids: HashSet<&String> = receipts
        .values()
        .map(|r| &r["rocketmq-message-id"])
        .collect();
    assert_eq!(ids.len(), n, "message ids are per create");
    let place = |r: &HashMap<String, String>| {
        (
            r["rocketmq-broker-name"].clone(),
            r["rocketmq-queue-id"].clone(),
            r["rocketmq-queue-offset"].clone(),
        )
    };
    let places: HashSet<_> = receipts.values().map(place).collect();
    assert_eq!(places.len(), n, "queue offsets are per create");
    assert!(
        receipts
            .values()
            .all(|r| r["rocketmq-send-status"] == "SEND_OK")
    );

    // The consumer finds every create where its receipt says, as it was sent.
    daprd
        .init_input("co-in", input_props(&topic, &group, &[]))
        .await
        .unwrap();
    let mut rs = daprd.read("co-in").await.unwrap();
    let seen = read_acking(
        &mut rs,
        n + 1,
        Duration::from_secs(120),
        Duration::from_secs(20),
    )
    .await;
    let mut found = 0;
    for (id, data, md) in &seen.msgs {
        let Some(idx) = md.get("rocketmq-property-idx") else {
            assert_eq!(data, b"warm-up");
            continue;
        };
        let i: usize = idx.parse().unwrap();
        let r = &receipts[&i];
        assert_eq!(&r["rocketmq-message-id"], id, "id of {i}");
        assert_eq!(place(r), place(md), "queue and offset of {i}");
        assert_eq!(data, &body_of(i), "body of {i}");
        assert_eq!(md["rocketmq-tag"], format!("T{}", i % 3));
        assert_eq!(md["rocketmq-keys"], format!("k{i}"));
        found += 1;
    }
    assert_eq!(found, n, "every create delivered once");
    assert_eq!(seen.duplicates(), 0);

    // `maxSendBatch: 1`: the same load, every create alone.
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (daprd, topic, name) = (daprd.clone(), topic.clone(), single.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..4 {
                let md = [("rocketmq-topic", topic.as_str())];
                daprd
                    .invoke(&name, "create", format!("one-{task}-{k}").as_bytes(), &md)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = metrics.render();
    let inst = format!("instance=\"{single}\"");
    assert_eq!(
        common::metric_sample(&text, "rocketmq_binding_send_batches_total", &[&inst]),
        0.0
    );
}
