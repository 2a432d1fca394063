//! The HTTP transport against the in-process Aliyun MQ emulator: publish / consume / ack,
//! redelivery on release, tag filter, byte-exact bodies, ordered consume, endpoint down,
//! bad credentials, emulator restart and prompt close (idle CPU: `http_idle_cpu.rs`).

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use rocketmq_binding::{
    emulator::{self, Config, Emulator},
    metadata::{Role, Settings},
    transport::{
        Delivery, OutboundMessage, Transport, TransportError,
        http::{self, HttpTransport},
    },
};
use tokio::sync::mpsc;

const AK: &str = "TESTAK";
const SK: &str = "TestSecret-0123456789";

async fn start_emulator(addr: SocketAddr, invisibility_ms: u64) -> Emulator {
    let mut cfg = Config::new(addr, AK, SK);
    cfg.invisibility = Duration::from_millis(invisibility_ms);
    cfg.order_invisibility = Duration::from_millis(invisibility_ms);
    emulator::spawn(cfg).await.expect("emulator starts")
}

fn settings(endpoint: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut kv: HashMap<String, String> = [
        ("accessProto", "http"),
        ("endpoint", endpoint),
        ("accessKey", AK),
        ("secretKey", SK),
        ("consumerGroup", "GID_test"),
        ("consumerThreadNums", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        kv.insert(k.to_string(), v.to_string());
    }
    kv
}

fn transport(kv: &HashMap<String, String>, role: Role) -> Arc<HttpTransport> {
    transport_named("test", kv, role)
}

fn transport_named(instance: &str, kv: &HashMap<String, String>, role: Role) -> Arc<HttpTransport> {
    let s = Settings::decode(kv, role).expect("settings decode");
    http::open_http(instance, Arc::new(s), role).expect("transport opens")
}

fn msg(data: &[u8], md: &[(&str, &str)]) -> OutboundMessage {
    OutboundMessage {
        data: Bytes::copy_from_slice(data),
        metadata: md
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// The next delivery, or None when nothing came within `within`. A closed sink panics: the
/// transport must never close it (broker trouble is handled inside), so "nothing more arrived"
/// cannot pass because it did.
async fn next(rx: &mut mpsc::Receiver<Delivery>, within: Duration) -> Option<Delivery> {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(d)) => Some(d),
        Ok(None) => panic!("the transport closed the delivery sink"),
        Err(_) => None,
    }
}

struct Pair {
    emu: Emulator,
    out: Arc<HttpTransport>,
    inp: Arc<HttpTransport>,
    rx: mpsc::Receiver<Delivery>,
}

async fn pair(invisibility_ms: u64, extra: &[(&str, &str)]) -> Pair {
    pair_named("test", invisibility_ms, extra).await
}

async fn pair_named(instance: &str, invisibility_ms: u64, extra: &[(&str, &str)]) -> Pair {
    let emu = start_emulator("127.0.0.1:0".parse().unwrap(), invisibility_ms).await;
    let kv = settings(&emu.endpoint(), extra);
    let out = transport_named(instance, &kv, Role::Output);
    let inp = transport_named(instance, &kv, Role::Input);
    out.ping(deadline()).await.expect("output ping");
    inp.ping(deadline()).await.expect("input ping");
    let (tx, rx) = mpsc::channel(64);
    inp.subscribe(tx).await.expect("subscribe");
    Pair { emu, out, inp, rx }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_with_metadata() {
    let mut p = pair(1500, &[("topics", "orders"), ("instanceId", "MQ_INST_1_x")]).await;
    let receipt = p
        .out
        .send(msg(
            b"hello <rocketmq> & friends",
            &[
                ("rocketmq-topic", "orders"),
                ("rocketmq-tag", "TagA"),
                ("rocketmq-key", "k1,k2"),
                ("rocketmq-property-color", "red"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("user-agent", "curl/8"),
            ],
        ))
        .await
        .expect("send");
    assert_eq!(receipt["rocketmq-topic"], "orders");
    assert_eq!(receipt["rocketmq-send-status"], "SEND_OK");
    assert_eq!(receipt["rocketmq-message-id"].len(), 32);
    assert_eq!(receipt["rocketmq-body-md5"].len(), 32);

    let d = next(&mut p.rx, Duration::from_secs(10))
        .await
        .expect("delivery");
    let md = &d.message.metadata;
    assert_eq!(&d.message.data[..], b"hello <rocketmq> & friends");
    assert_eq!(md["rocketmq-topic"], "orders");
    assert_eq!(md["rocketmq-message-id"], receipt["rocketmq-message-id"]);
    assert_eq!(md["rocketmq-tag"], "TagA");
    assert_eq!(md["rocketmq-keys"], "k1,k2");
    assert_eq!(md["rocketmq-property-color"], "red");
    assert_eq!(md["rocketmq-reconsume-times"], "0");
    assert_eq!(md["rocketmq-consumer-group"], "GID_test");
    assert!(md["rocketmq-born-timestamp"].parse::<i64>().unwrap() > 1_700_000_000_000);
    assert!(md.contains_key("rocketmq-first-consume-time"));
    assert!(md["traceparent"].starts_with("00-0af7"));
    assert!(!md.keys().any(|k| k.contains("user-agent")), "{md:?}");
    d.settle.confirm();

    // Acked: nothing comes back after the invisibility time.
    assert!(next(&mut p.rx, Duration::from_millis(3000)).await.is_none());
    assert_eq!(p.inp.stats().acked.load(Ordering::Relaxed), 1);
    assert_eq!(p.inp.stats().ack_failures.load(Ordering::Relaxed), 0);
    p.inp.close(deadline()).await;
    p.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_without_topic_goes_to_every_configured_topic() {
    let mut p = pair(5000, &[("topics", "t1,t2")]).await;
    let receipt = p.out.send(msg(b"fan-out", &[])).await.expect("send");
    assert_eq!(receipt["rocketmq-topic"], "t1,t2");
    assert_eq!(receipt["rocketmq-message-id"].split(',').count(), 2);
    let mut topics = Vec::new();
    for _ in 0..2 {
        let d = next(&mut p.rx, Duration::from_secs(10))
            .await
            .expect("delivery");
        topics.push(d.message.metadata["rocketmq-topic"].clone());
        d.settle.confirm();
    }
    topics.sort();
    assert_eq!(topics, vec!["t1", "t2"]);
    p.inp.close(deadline()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_message_is_redelivered_then_acked_once() {
    let mut p = pair(1000, &[("topics", "retry")]).await;
    p.out
        .send(msg(b"try me", &[("rocketmq-topic", "retry")]))
        .await
        .unwrap();
    let d1 = next(&mut p.rx, Duration::from_secs(10)).await.unwrap();
    let id = d1.message.metadata["rocketmq-message-id"].clone();
    let t0 = Instant::now();
    d1.settle.release("app error");
    let d2 = next(&mut p.rx, Duration::from_secs(10))
        .await
        .expect("redelivery");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(d2.message.metadata["rocketmq-message-id"], id);
    assert_eq!(d2.message.metadata["rocketmq-reconsume-times"], "1");
    assert_eq!(&d2.message.data[..], b"try me");
    d2.settle.confirm();
    assert!(next(&mut p.rx, Duration::from_millis(2500)).await.is_none());
    assert_eq!(p.inp.stats().released.load(Ordering::Relaxed), 1);
    assert_eq!(p.inp.stats().acked.load(Ordering::Relaxed), 1);
    p.inp.close(deadline()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filter_from_the_topics_entry() {
    let mut p = pair(5000, &[("topics", "tagged||TagA||TagC")]).await;
    for tag in ["TagB", "TagA", "TagD", "TagC"] {
        p.out
            .send(msg(
                tag.as_bytes(),
                &[("rocketmq-topic", "tagged"), ("rocketmq-tag", tag)],
            ))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some(d) = next(&mut p.rx, Duration::from_millis(2000)).await {
        got.push(String::from_utf8(d.message.data.to_vec()).unwrap());
        d.settle.confirm();
    }
    got.sort();
    assert_eq!(got, vec!["TagA", "TagC"]);
    p.inp.close(deadline()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_and_empty_bodies_round_trip() {
    let mut p = pair(5000, &[("topics", "bin"), ("consumerThreadNums", "1")]).await;
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x01, 0x80, 0x7f, b'<', b'&'],
        (0..=255u8).collect(),
        Vec::new(),
        b"ctrl\x02text".to_vec(),
        "ünïcödé \r\n\t ok".as_bytes().to_vec(),
    ];
    for b in &bodies {
        p.out
            .send(msg(b, &[("rocketmq-topic", "bin")]))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..bodies.len() {
        let d = next(&mut p.rx, Duration::from_secs(10))
            .await
            .expect("delivery");
        assert!(
            !d.message
                .metadata
                .contains_key("rocketmq-property-dapr-body-encoding")
        );
        got.push(d.message.data.to_vec());
        d.settle.confirm();
    }
    let mut want = bodies.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    p.inp.close(deadline()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_consume_keeps_order_across_a_release() {
    let mut p = pair(
        1000,
        &[
            ("topics", "fifo"),
            ("consumeOrderly", "true"),
            ("consumerBatchSize", "4"),
        ],
    )
    .await;
    for i in 0..6 {
        p.out
            .send(msg(
                format!("m{i}").as_bytes(),
                &[
                    ("rocketmq-topic", "fifo"),
                    ("rocketmq-shardingkey", "order-1"),
                ],
            ))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut released = false;
    while seen.len() < 6 {
        let d = next(&mut p.rx, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("stalled after {seen:?}"));
        let body = String::from_utf8(d.message.data.to_vec()).unwrap();
        assert_eq!(d.message.metadata["rocketmq-shardingkey"], "order-1");
        if body == "m2" && !released {
            released = true;
            d.settle.release("app error");
            continue;
        }
        seen.push(body);
        d.settle.confirm();
    }
    assert_eq!(seen, vec!["m0", "m1", "m2", "m3", "m4", "m5"]);
    p.inp.close(deadline()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_is_unavailable_naming_the_address() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let endpoint = format!("http://{addr}");
    let kv = settings(&endpoint, &[("topics", "t")]);
    for role in [Role::Output, Role::Input] {
        let t = transport(&kv, role);
        let t0 = Instant::now();
        match t.ping(deadline()).await {
            Err(TransportError::Unavailable { address, .. }) => {
                assert!(address.contains(&addr.to_string()), "{address}")
            }
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_millis(3500));
    }
    let out = transport(&kv, Role::Output);
    let e = out
        .send(msg(b"x", &[("rocketmq-topic", "t")]))
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_unauthenticated_and_never_printed() {
    let emu = start_emulator("127.0.0.1:0".parse().unwrap(), 5000).await;
    let mut kv = settings(&emu.endpoint(), &[("topics", "t")]);
    kv.insert("secretKey".into(), "WRONG-secret-value".into());
    let t = transport(&kv, Role::Output);
    let e = t.ping(deadline()).await.unwrap_err();
    assert!(matches!(e, TransportError::Unauthenticated { .. }), "{e:?}");
    assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    let e = t.send(msg(b"x", &[])).await.unwrap_err();
    assert!(matches!(e, TransportError::Unauthenticated { .. }), "{e:?}");
    for text in [e.to_string(), format!("{e:?}"), format!("{t:?}")] {
        assert!(!text.contains("WRONG-secret-value"), "{text}");
    }
    assert_eq!(emu.message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_metadata_is_rejected_before_sending() {
    let emu = start_emulator("127.0.0.1:0".parse().unwrap(), 5000).await;
    let kv = settings(&emu.endpoint(), &[]);
    let t = transport(&kv, Role::Output);
    for (md, key) in [
        (
            vec![("rocketmq-topic", "t"), ("rocketmq-delaylevel", "2")],
            "rocketmq-delaylevel",
        ),
        (
            vec![("rocketmq-topic", "t"), ("rocketmq-property-x", "a|b")],
            "rocketmq-property-x",
        ),
        (vec![], "rocketmq-topic"),
        (vec![("rocketmq-topic", "bad/topic")], "rocketmq-topic"),
    ] {
        match t.send(msg(b"x", &md)).await {
            Err(TransportError::InvalidRequest { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{md:?}: {other:?}"),
        }
    }
    assert_eq!(emu.message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_carries_on_across_an_emulator_restart() {
    let mut p = pair(5000, &[("topics", "durable")]).await;
    let addr = p.emu.local_addr();
    p.out
        .send(msg(b"before", &[("rocketmq-topic", "durable")]))
        .await
        .unwrap();
    let d = next(&mut p.rx, Duration::from_secs(10)).await.unwrap();
    assert_eq!(&d.message.data[..], b"before");
    d.settle.confirm();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Kill it mid long poll, keep it down for a while, start a fresh one on the same port.
    p.emu.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let emu2 = start_emulator(addr, 5000).await;
    p.out
        .send(msg(b"after", &[("rocketmq-topic", "durable")]))
        .await
        .unwrap();
    let d = next(&mut p.rx, Duration::from_secs(20))
        .await
        .expect("the consumer resumed");
    assert_eq!(&d.message.data[..], b"after");
    d.settle.confirm();
    assert!(p.inp.stats().poll_errors.load(Ordering::Relaxed) >= 1);
    p.inp.close(deadline()).await;
    emu2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_prompt_and_unsettled_deliveries_come_back() {
    let mut p = pair(1000, &[("topics", "c")]).await;
    p.out
        .send(msg(b"unsettled", &[("rocketmq-topic", "c")]))
        .await
        .unwrap();
    let d = next(&mut p.rx, Duration::from_secs(10)).await.unwrap();
    // Long polls are in flight now; close must not wait for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    p.inp.close(deadline()).await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    drop(d); // never confirmed
    assert_eq!(p.inp.stats().acked.load(Ordering::Relaxed), 0);

    // A new consumer of the same group gets it again after the invisibility time.
    let kv = settings(&p.emu.endpoint(), &[("topics", "c")]);
    let inp2 = transport(&kv, Role::Input);
    let (tx, mut rx2) = mpsc::channel(8);
    inp2.subscribe(tx).await.unwrap();
    let d = next(&mut rx2, Duration::from_secs(10))
        .await
        .expect("redelivered");
    assert_eq!(&d.message.data[..], b"unsettled");
    assert_eq!(d.message.metadata["rocketmq-reconsume-times"], "1");
    d.settle.confirm();
    inp2.close(deadline()).await;
    // Sends after close are refused.
    p.out.close(deadline()).await;
    assert!(matches!(
        p.out.send(msg(b"x", &[("rocketmq-topic", "c")])).await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_confirm_of_a_superseded_delivery_is_a_counted_ack_failure() {
    // The process-wide recorder; the instance label "late" is this test's alone.
    let metrics = rocketmq_binding::telemetry::metrics::install();
    let mut p = pair_named("late", 1000, &[("topics", "late")]).await;
    p.out
        .send(msg(b"slow app", &[("rocketmq-topic", "late")]))
        .await
        .unwrap();
    let d1 = next(&mut p.rx, Duration::from_secs(10)).await.unwrap();
    // The app is too slow: the broker redelivers with a new receipt handle.
    let d2 = next(&mut p.rx, Duration::from_secs(10))
        .await
        .expect("redelivery");
    assert_eq!(
        d1.message.metadata["rocketmq-message-id"],
        d2.message.metadata["rocketmq-message-id"]
    );
    d1.settle.confirm(); // stale handle: the broker answers MessageNotExist in <Errors>
    d2.settle.confirm();
    let t0 = Instant::now();
    while p.inp.stats().acked.load(Ordering::Relaxed)
        + p.inp.stats().ack_failures.load(Ordering::Relaxed)
        < 2
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.inp.stats().ack_failures.load(Ordering::Relaxed), 1);
    assert_eq!(p.inp.stats().acked.load(Ordering::Relaxed), 1);
    // The same failure, as operators see it.
    let text = metrics.render();
    assert_eq!(
        common::metric_sample(
            &text,
            "rocketmq_binding_broker_ack_failures_total",
            &[r#"instance="late""#]
        ),
        1.0,
        "{text}"
    );
    assert!(next(&mut p.rx, Duration::from_millis(2000)).await.is_none());
    p.inp.close(deadline()).await;
}

/// A ping or close deadline as the Dapr layer gives one (its budgets are at most 5 s).
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}
