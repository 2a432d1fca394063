//! The Dapr contract over a real Unix socket, driven by a daprd-like client, with the
//! in-memory transport double below the Dapr layer. Ports the components-contrib bindings
//! conformance steps (init, ping, operations, read, create, verify read, close) and the
//! daemon issue's cases.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use common::{Daprd, TestDaemon, memory::MemoryConnector, props};
use rocketmq_binding::daemon::ServeOptions;
use rocketmq_binding::metadata::Role;
use tonic::Code;

fn tcp_props(ns: &str, topics: &str) -> std::collections::HashMap<String, String> {
    props(&[("nameServer", ns), ("topics", topics)])
}

async fn setup() -> (MemoryConnector, TestDaemon, Daprd) {
    let broker = MemoryConnector::new();
    let d = TestDaemon::start(Arc::new(broker.clone())).await;
    let c = d.daprd().await;
    (broker, d, c)
}

#[tokio::test]
async fn conformance_init_ping_operations_read_create_verify_close() {
    let (broker, d, c) = setup().await;
    // Discovery: reflection v1alpha lists both binding services.
    let services = c.list_services_v1alpha().await;
    assert!(
        services.contains(&"dapr.proto.components.v1.InputBinding".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"dapr.proto.components.v1.OutputBinding".to_string()),
        "{services:?}"
    );
    // init
    let p = tcp_props("127.0.0.1:9876", "orders");
    c.init_both("orders", p).await;
    // ping
    c.ping_input("orders").await.unwrap();
    c.ping_output("orders").await.unwrap();
    // operations
    assert_eq!(c.list_operations("orders").await.unwrap(), vec!["create"]);
    // read
    let mut read = c.read("orders").await.unwrap();
    // create
    let data = br#"[{"eventType":"test","eventTime":"2018-01-25T22:12:19.4556811Z","subject":"dapr-conf-tests","id":"A234-1234-1234","data":"root/>"}]"#;
    let resp = c.invoke("orders", "create", data, &[]).await.unwrap();
    assert_eq!(resp.metadata["rocketmq-topic"], "orders");
    // verify read
    let m = read.next().await;
    assert_eq!(&m.data[..], &data[..]);
    assert_eq!(m.metadata["rocketmq-topic"], "orders");
    assert!(!m.message_id.is_empty());
    assert_eq!(m.content_type, "text/plain");
    read.ack(&m.message_id).await;
    wait_for(|| broker.state().confirmed.len() == 1).await;
    // close
    drop(read);
    d.shutdown().await;
    assert!(
        broker.state().closes.len() >= 2,
        "transports closed on shutdown"
    );
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test]
async fn acks_out_of_order_are_matched_by_message_id() {
    let (broker, _d, c) = setup().await;
    let p = tcp_props("h:1", "t");
    c.init_both("a", p).await;
    c.send_n("a", "m", 10).await;
    let mut read = c.read("a").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(read.next().await);
    }
    let ids: HashSet<_> = got.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), 10, "ids unique per stream");
    // Ack in reverse order, with unknown and repeated ids mixed in (ignored).
    read.ack("no-such-id").await;
    for m in got.iter().rev() {
        read.ack(&m.message_id).await;
    }
    read.ack(&got[0].message_id).await;
    wait_for(|| broker.state().confirmed.len() == 10).await;
    let mut bodies = broker.confirmed_bodies();
    bodies.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);
    assert!(broker.state().released.is_empty());
}

#[tokio::test]
async fn unknown_operation_is_invalid_argument_listing_supported() {
    let (_b, _d, c) = setup().await;
    c.init_output("o", tcp_props("h:1", "t")).await.unwrap();
    let e = c.invoke("o", "delete", b"x", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("\"delete\"") && e.message().contains("create"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn uninitialised_instance_is_failed_precondition_naming_it() {
    let (_b, _d, c) = setup().await;
    let e = c.invoke("ghost", "create", b"x", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("\"ghost\""), "{}", e.message());
    let e = c.read("ghost").await.err().expect("read must fail");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("\"ghost\""));
    let e = c.ping_input("ghost").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c.ping_output("ghost").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Initialising the input side does not make the output side exist.
    c.init_input("half", tcp_props("h:1", "t")).await.unwrap();
    let e = c.invoke("half", "create", b"x", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn missing_header_uses_the_default_instance() {
    let (_b, _d, c) = setup().await;
    c.init_output("", tcp_props("h:1", "t")).await.unwrap();
    c.invoke("", "create", b"x", &[]).await.unwrap();
    let e = c.invoke("named", "create", b"x", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn two_instances_on_one_socket_are_isolated() {
    let (broker, _d, c) = setup().await;
    // Same topic name, different clusters.
    c.init_input("a", tcp_props("a:9876", "t")).await.unwrap();
    c.init_output("a", tcp_props("a:9876", "t")).await.unwrap();
    c.init_input("b", tcp_props("b:9876", "t")).await.unwrap();
    c.init_output("b", tcp_props("b:9876", "t")).await.unwrap();
    let mut ra = c.read("a").await.unwrap();
    let mut rb = c.read("b").await.unwrap();
    c.invoke("a", "create", b"for-a", &[]).await.unwrap();
    c.invoke("b", "create", b"for-b", &[]).await.unwrap();
    let ma = ra.next().await;
    let mb = rb.next().await;
    assert_eq!(&ma.data[..], b"for-a");
    assert_eq!(&mb.data[..], b"for-b");
    assert!(ra.next_within(Duration::from_millis(300)).await.is_none());
    assert!(rb.next_within(Duration::from_millis(300)).await.is_none());
    // Each instance has its own transports.
    let opens = broker.state().opens.clone();
    assert_eq!(opens.iter().filter(|(n, _)| n == "a").count(), 2);
    assert_eq!(opens.iter().filter(|(n, _)| n == "b").count(), 2);
}

#[tokio::test]
async fn input_only_never_sends_output_only_never_subscribes() {
    let (broker, _d, c) = setup().await;
    c.init_input("in", tcp_props("h:1", "t")).await.unwrap();
    c.init_output("out", tcp_props("h:1", "t")).await.unwrap();
    let _r = c.read("in").await.unwrap();
    c.invoke("out", "create", b"x", &[]).await.unwrap();
    wait_for(|| !broker.state().subscribes.is_empty()).await;
    let st = broker.state();
    assert_eq!(
        st.opens,
        vec![("in".into(), Role::Input), ("out".into(), Role::Output)]
    );
    assert_eq!(st.subscribes, vec![("in".into(), Role::Input)]);
    assert_eq!(st.sends, vec![("out".into(), Role::Output)]);
}

#[tokio::test]
async fn consumer_starts_on_first_read_not_at_init() {
    let (broker, _d, c) = setup().await;
    c.init_input("in", tcp_props("h:1", "t")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(broker.state().subscribes.is_empty());
    let _r = c.read("in").await.unwrap();
    wait_for(|| broker.state().subscribes.len() == 1).await;
}

#[tokio::test]
async fn re_init_replaces_configuration_and_closes_old_clients() {
    let (broker, _d, c) = setup().await;
    c.init_output("x", tcp_props("old:1", "t")).await.unwrap();
    c.init_input("x", tcp_props("old:1", "t")).await.unwrap();
    let mut r = c.read("x").await.unwrap();
    wait_for(|| broker.state().subscribes.len() == 1).await;
    // Hot reload: new cluster.
    c.init_output("x", tcp_props("new:1", "t")).await.unwrap();
    c.init_input("x", tcp_props("new:1", "t")).await.unwrap();
    wait_for(|| broker.state().closes.len() == 2).await;
    // The open stream follows the new instance; sends go to the new cluster.
    c.invoke("x", "create", b"after-reload", &[]).await.unwrap();
    let m = r.next().await;
    assert_eq!(&m.data[..], b"after-reload");
    let st = broker.state();
    assert!(
        st.queues.keys().all(|(cl, _)| cl.starts_with("new:1")),
        "{:?}",
        st.queues.keys()
    );
}

#[tokio::test]
async fn error_ack_redelivers_then_success_is_final() {
    let (broker, _d, c) = setup().await;
    let p = tcp_props("h:1", "t");
    c.init_both("a", p).await;
    c.invoke("a", "create", b"retry-me", &[]).await.unwrap();
    let mut r = c.read("a").await.unwrap();
    let m1 = r.next().await;
    assert_eq!(m1.metadata["rocketmq-reconsume-times"], "0");
    r.nack(&m1.message_id, "app failed").await;
    let m2 = r.next().await;
    assert_eq!(&m2.data[..], b"retry-me");
    assert_eq!(m2.metadata["rocketmq-reconsume-times"], "1");
    assert_ne!(m1.message_id, m2.message_id);
    r.ack(&m2.message_id).await;
    wait_for(|| broker.state().confirmed.len() == 1).await;
    assert!(
        r.next_within(Duration::from_millis(300)).await.is_none(),
        "no duplicate after success"
    );
    let st = broker.state();
    assert_eq!(st.released.len(), 1);
    assert_eq!(st.released[0].1, "app failed");
}

#[tokio::test]
async fn dropped_stream_redelivers_unacked_messages() {
    let (broker, _d, c) = setup().await;
    let p = tcp_props("h:1", "t");
    c.init_both("a", p).await;
    c.send_n("a", "m", 3).await;
    let mut r = c.read("a").await.unwrap();
    let first = r.next().await;
    r.ack(&first.message_id).await;
    let _second = r.next().await;
    let _third = r.next().await;
    wait_for(|| broker.state().confirmed.len() == 1).await;
    drop(r); // daprd cancels the stream without acking two messages
    wait_for(|| broker.state().released.len() == 2).await;
    // A new Read on the same instance resumes delivery with the released messages.
    let mut r2 = c.read("a").await.unwrap();
    let mut again = vec![r2.next().await, r2.next().await];
    for m in &again {
        r2.ack(&m.message_id).await;
    }
    again.sort_by(|a, b| a.data.cmp(&b.data));
    assert_eq!(&again[0].data[..], b"m1");
    assert_eq!(&again[1].data[..], b"m2");
    wait_for(|| broker.state().confirmed.len() == 3).await;
}

#[tokio::test]
async fn max_in_flight_is_respected() {
    let (_broker, _d, c) = setup().await;
    let mut p = tcp_props("h:1", "t");
    p.insert("maxInFlight".into(), "3".into());
    c.init_both("a", p).await;
    c.send_n("a", "m", 10).await;
    let mut r = c.read("a").await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(r.next().await);
    }
    assert!(
        r.next_within(Duration::from_millis(400)).await.is_none(),
        "a 4th message arrived while 3 were unacked"
    );
    r.ack(&held[1].message_id).await;
    let fourth = r.next().await;
    held.push(fourth);
    assert!(r.next_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn slow_acks_do_not_block_other_instances() {
    let (_broker, _d, c) = setup().await;
    let mut slow = tcp_props("slow:1", "t");
    slow.insert("maxInFlight".into(), "1".into());
    c.init_both("slow", slow).await;
    let fast = tcp_props("fast:1", "t");
    c.init_both("fast", fast).await;
    c.send_n("slow", "s", 5).await;
    let mut rs = c.read("slow").await.unwrap();
    let _held = rs.next().await; // never acked
    let mut rf = c.read("fast").await.unwrap();
    for i in 0..50 {
        c.invoke("fast", "create", format!("f{i}").as_bytes(), &[])
            .await
            .unwrap();
        let m = rf
            .next_within(Duration::from_secs(2))
            .await
            .expect("fast instance delivers");
        rf.ack(&m.message_id).await;
    }
}

#[tokio::test]
async fn metadata_rejections_are_invalid_argument_naming_the_key() {
    let (broker, _d, c) = setup().await;
    let cases = [
        (props(&[("topics", "t")]), "nameServer"),
        (props(&[("nameServer", "h:1")]), "topics"),
        (
            props(&[
                ("nameServer", "h:1"),
                ("topics", "t"),
                ("consumerBatchSize", "0"),
            ]),
            "consumerBatchSize",
        ),
        (
            props(&[
                ("nameServer", "h:1"),
                ("topics", "t"),
                ("accessProto", "udp"),
            ]),
            "accessProto",
        ),
        (
            props(&[
                ("nameServer", "h:1"),
                ("topics", "t"),
                ("maxInFlight", "lots"),
            ]),
            "maxInFlight",
        ),
        (
            props(&[("nameServer", "h:1"), ("topics", "t"), ("TOPICS", "u")]),
            "TOPICS",
        ),
    ];
    for (p, key) in cases {
        let e = c.init_input("bad", p).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {}", e.message());
        assert!(e.message().contains(key), "{key}: {}", e.message());
    }
    assert!(
        broker.state().opens.is_empty(),
        "no transport opened for bad metadata"
    );
    let e = c
        .init_output(
            "bad",
            props(&[("accessProto", "http"), ("endpoint", "nope")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("endpoint"));
}

#[tokio::test]
async fn init_reports_unreachable_broker_within_budget() {
    let (_b, _d, c) = setup().await;
    let e = c
        .init_output("x", tcp_props("unreachable:9876", "t"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("unreachable:9876"), "{}", e.message());
    // A broker that never answers, and a transport that ignores its deadline: the Dapr
    // layer cuts the probe off at Init's budget and says so.
    let t = std::time::Instant::now();
    let e = c
        .init_input("y", tcp_props("stuck:9876", "t"))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(e.message().contains("stuck:9876"), "{}", e.message());
    assert!(
        e.message().contains("within 3.5s during Init"),
        "{}",
        e.message()
    );
    assert!(took < Duration::from_secs(4), "Init took {took:?}");
    // A transport that honours its deadline answers with its own error by then.
    let t = std::time::Instant::now();
    let e = c
        .init_input("z", tcp_props("hang:9876", "t"))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        e.message().contains("hang:9876") && e.message().contains("deadline"),
        "{}",
        e.message()
    );
    assert!(took < Duration::from_secs(4), "Init took {took:?}");
    // Failed Init leaves no instance behind.
    let e = c.read("y").await.err().unwrap();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// daprd gives a Component's input Init, output Init and ListOperations one 5 s budget: the
/// output Init after a slow input Init gets only what is left, so daprd never sees the pair
/// overrun (each alone fits in 3.5 s; together they would have taken 6 s).
#[tokio::test]
async fn input_and_output_init_of_one_component_share_daprds_budget() {
    let (broker, _d, c) = setup().await;
    let p = tcp_props("slowping:9876", "t");
    let t = std::time::Instant::now();
    c.init_input("slow", p.clone())
        .await
        .expect("a 3 s probe fits in one Init");
    let e = c.init_output("slow", p).await.unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(e.message().contains("slowping:9876"), "{}", e.message());
    assert!(
        took < Duration::from_millis(4900),
        "both Inits took {took:?}"
    );
    {
        let st = broker.state();
        let (_, _, input_at, _) = st.pings.iter().find(|p| p.1 == Role::Input).unwrap();
        let (_, _, _, output_deadline) = st.pings.iter().find(|p| p.1 == Role::Output).unwrap();
        assert!(
            *output_deadline - *input_at <= Duration::from_millis(4500),
            "output deadline {:?} after the input Init",
            *output_deadline - *input_at
        );
    }
    // Another Component is not held to it.
    c.init_output("other", tcp_props("h:1", "t")).await.unwrap();
    let st = broker.state();
    let (_, _, at, deadline) = st.pings.iter().find(|p| p.0 == "other").unwrap();
    let given = *deadline - *at;
    assert!(
        given > Duration::from_millis(3400) && given <= Duration::from_millis(3500),
        "{given:?}"
    );
}

/// A transport whose close never returns holds neither a re-Init nor the shutdown: every
/// close gets a deadline inside the shutdown budget, and the daemon stops by the sum of its
/// stages (drain + 1 s + 2 s + 5 s), not drain + 14 s as before.
#[tokio::test]
async fn shutdown_stays_within_its_budget_when_a_close_hangs() {
    let broker = MemoryConnector::new();
    let drain = Duration::from_millis(300);
    let d = TestDaemon::start_with(Arc::new(broker.clone()), drain).await;
    let c = d.daprd().await;
    c.init_both("a", tcp_props("noclose:1", "t")).await;
    c.init_both("b", tcp_props("noclose:2", "t")).await;
    let _r = c.read("a").await.unwrap();
    wait_for(|| broker.state().subscribes.len() == 1).await;
    let t = tokio::time::Instant::now();
    d.stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), d.handle)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
    let took = t.elapsed();
    let total = rocketmq_binding::dapr::budget::Shutdown::total(drain);
    assert!(
        took < total + Duration::from_millis(500),
        "shutdown took {took:?}, budget {total:?}"
    );
    let st = broker.state();
    assert_eq!(st.close_deadlines.len(), 4, "{:?}", st.closes);
    // The daemon's clock starts a moment after `t` (the signal has to reach it).
    for (name, role, deadline) in &st.close_deadlines {
        assert!(
            *deadline <= t + total + Duration::from_millis(200),
            "{name} {role}: close deadline {:?} after SIGTERM",
            *deadline - t
        );
    }
}

/// A stream whose re-initialised consumer failed to start waits for the next Init and
/// follows it (woken by the install, not a poll).
#[tokio::test]
async fn an_orphaned_stream_follows_the_next_init() {
    let (broker, _d, c) = setup().await;
    c.init_both("x", tcp_props("h:1", "t")).await;
    let mut r = c.read("x").await.unwrap();
    wait_for(|| broker.state().subscribes.len() == 1).await;
    c.init_input("x", tcp_props("nosubscribe:1", "t"))
        .await
        .unwrap();
    wait_for(|| broker.state().closes.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.init_input("x", tcp_props("h:1", "t")).await.unwrap();
    wait_for(|| broker.state().subscribes.len() == 2).await;
    c.invoke("x", "create", b"after", &[]).await.unwrap();
    let m = r
        .next_within(Duration::from_secs(2))
        .await
        .expect("the stream follows the new instance");
    assert_eq!(&m.data[..], b"after");
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_acks_and_releases_the_rest() {
    let broker = MemoryConnector::new();
    let d = TestDaemon::start_with(Arc::new(broker.clone()), Duration::from_millis(800)).await;
    let c = d.daprd().await;
    let p = tcp_props("h:1", "t");
    c.init_both("a", p).await;
    c.send_n("a", "m", 3).await;
    let mut r = c.read("a").await.unwrap();
    let m0 = r.next().await;
    let m1 = r.next().await;
    let _m2 = r.next().await;
    let socket = d.socket.clone();
    d.stop.cancel();
    // An ack that arrives during the drain window is still confirmed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.ack(&m0.message_id).await;
    r.nack(&m1.message_id, "failed").await;
    // The third is never acked: released at the drain deadline; the stream then ends.
    let end = tokio::time::timeout(Duration::from_secs(5), r.messages.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "stream ends cleanly: {end:?}");
    tokio::time::timeout(Duration::from_secs(10), d.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let st = broker.state();
    assert_eq!(st.confirmed.len(), 1, "only the acked message is confirmed");
    assert_eq!(
        String::from_utf8_lossy(&st.confirmed[0].body),
        String::from_utf8_lossy(&m0.data)
    );
    // m1 (nacked) and m2 (never acked) went back to the broker; m1 may have been handed
    // to the consumer's buffer again before shutdown and released from there once more.
    let released: HashSet<u64> = st.released.iter().map(|(m, _)| m.id).collect();
    assert_eq!(released.len(), 2, "{:?}", st.released);
    assert!(!released.contains(&st.confirmed[0].id));
    assert!(!socket.exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn read_fails_clearly_when_the_consumer_cannot_start() {
    let (_b, _d, c) = setup().await;
    c.init_input("x", tcp_props("nosubscribe:1", "t"))
        .await
        .unwrap();
    let e = c.read("x").await.err().expect("Read must fail");
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("cannot start"), "{}", e.message());
}

/// daprd closes a Component's output connection when it removes the Component (hot reload):
/// the producer closes with it, unless a newer Init (on another connection) replaced it; a
/// later call of that name (daprd reconnecting after idling) opens it again.
#[tokio::test]
async fn output_closes_with_its_connection_unless_re_initialised() {
    let broker = MemoryConnector::new();
    let d = TestDaemon::start(Arc::new(broker.clone())).await;
    let c1 = d.daprd().await;
    c1.init_output("gone", tcp_props("h:1", "t")).await.unwrap();
    c1.init_output("kept", tcp_props("h:1", "t")).await.unwrap();
    let c2 = d.daprd().await;
    c2.init_output("kept", tcp_props("h:2", "t")).await.unwrap();
    let closes = |name: &str| {
        broker
            .state()
            .closes
            .iter()
            .filter(|(n, r)| n == name && *r == Role::Output)
            .count()
    };
    wait_for(|| closes("kept") == 1).await; // the replaced one
    assert_eq!(closes("gone"), 0, "closed while its connection is open");
    drop(c1);
    wait_for(|| closes("gone") == 1).await;
    c2.invoke("kept", "create", b"still here", &[])
        .await
        .unwrap();
    assert_eq!(
        closes("kept"),
        1,
        "the current instance was closed with the old connection"
    );
    // daprd's client also closes a connection after 30 idle minutes and dials again for the
    // next call: the producer opens again with the settings of the last Init.
    let opens = |name: &str| {
        broker
            .state()
            .opens
            .iter()
            .filter(|(n, r)| n == name && *r == Role::Output)
            .count()
    };
    assert_eq!(opens("gone"), 1);
    c2.invoke("gone", "create", b"after reconnect", &[])
        .await
        .unwrap();
    assert_eq!(opens("gone"), 2, "no producer opened again");
    // Never initialised at all: still FAILED_PRECONDITION.
    let e = c2.invoke("never", "create", b"x", &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
}

/// daprd cancels the Read stream of a removed Component but keeps its connection: the
/// consumer closes after the idle timeout, and a later Read starts it again.
#[tokio::test]
async fn idle_input_closes_its_consumer_and_the_next_read_restarts_it() {
    let broker = MemoryConnector::new();
    let d = TestDaemon::start_opts(
        Arc::new(broker.clone()),
        ServeOptions {
            shutdown_timeout: Duration::from_secs(3),
            input_idle_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let c = d.daprd().await;
    c.init_both("m", tcp_props("h:1", "t")).await;
    let input_closes = || {
        broker
            .state()
            .closes
            .iter()
            .filter(|(n, r)| n == "m" && *r == Role::Input)
            .count()
    };
    let mut r = c.read("m").await.unwrap();
    c.send_n("m", "a", 1).await;
    let m = r.next().await;
    r.ack(&m.message_id).await;
    wait_for(|| broker.confirmed_bodies() == ["a0"]).await;
    // A stream that comes back within the timeout keeps the consumer.
    drop(r);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.read("m").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        input_closes(),
        0,
        "closed although a stream came back in time"
    );
    drop(r);
    wait_for(|| input_closes() == 1).await;
    // Messages sent meanwhile wait in the broker; the next Read gets them.
    c.send_n("m", "b", 2).await;
    let mut r = c.read("m").await.unwrap();
    let mut got = HashSet::new();
    for _ in 0..2 {
        let m = r.next().await;
        r.ack(&m.message_id).await;
        got.insert(String::from_utf8_lossy(&m.data).into_owned());
    }
    assert_eq!(got, HashSet::from(["b0".to_string(), "b1".to_string()]));
    let opens = broker
        .state()
        .opens
        .iter()
        .filter(|(n, r)| n == "m" && *r == Role::Input)
        .count();
    assert_eq!(opens, 2, "one consumer per activity period");
}

/// Issue 13 limits: an InvokeRequest up to `MAX_DECODING_MESSAGE_SIZE` (16 MiB) is accepted
/// (tonic's default would refuse above 4 MiB); one above it gets an error naming the limit,
/// and the daemon keeps serving the same connection and new ones.
#[tokio::test(flavor = "multi_thread")]
async fn invoke_over_16_mib_is_refused_clearly_and_the_daemon_keeps_serving() {
    use rocketmq_binding::daemon::MAX_DECODING_MESSAGE_SIZE;
    let (broker, d, c) = setup().await;
    c.init_output("o", tcp_props("h:1", "t")).await.unwrap();
    let five_mib = vec![7u8; 5 * 1024 * 1024];
    c.invoke("o", "create", &five_mib, &[]).await.unwrap();
    let over = vec![7u8; MAX_DECODING_MESSAGE_SIZE + 1];
    let e = c.invoke("o", "create", &over, &[]).await.unwrap_err();
    println!("over 16 MiB: {:?} {}", e.code(), e.message());
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(
        e.message().contains(&MAX_DECODING_MESSAGE_SIZE.to_string()),
        "the error names the limit: {}",
        e.message()
    );
    assert_eq!(
        broker.state().sends.len(),
        1,
        "the oversized request was not sent"
    );
    c.invoke("o", "create", b"after", &[]).await.unwrap();
    let fresh = d.daprd().await;
    fresh.invoke("o", "create", b"fresh", &[]).await.unwrap();
    assert_eq!(broker.state().sends.len(), 3);
}

/// A delivery larger than daprd's gRPC client accepts (4 MiB, less 64 KiB for metadata) is
/// released for redelivery / the DLQ, never sent; one at the limit is delivered intact, and
/// the stream goes on.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_over_the_read_limit_are_released_not_sent() {
    use rocketmq_binding::dapr::input::MAX_READ_RESPONSE;
    let (broker, _d, c) = setup().await;
    c.init_both("a", tcp_props("h:1", "t")).await;
    let at_limit = vec![b'a'; MAX_READ_RESPONSE];
    let over = vec![b'b'; MAX_READ_RESPONSE + 1];
    c.invoke("a", "create", &over, &[]).await.unwrap();
    c.invoke("a", "create", &at_limit, &[]).await.unwrap();
    c.invoke("a", "create", b"small", &[]).await.unwrap();
    let mut r = c.read("a").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = r
            .next_within(Duration::from_secs(10))
            .await
            .expect("the stream keeps delivering");
        assert!(
            m.data.len() <= MAX_READ_RESPONSE,
            "a {} byte delivery was sent",
            m.data.len()
        );
        r.ack(&m.message_id).await;
        got.push(m.data);
    }
    assert!(
        got.contains(&at_limit.into()),
        "the one at the limit arrived intact"
    );
    assert!(got.iter().any(|b| &b[..] == b"small"));
    wait_for(|| {
        broker
            .state()
            .released
            .iter()
            .any(|(m, why)| m.body.len() == MAX_READ_RESPONSE + 1 && why.contains("too large"))
    })
    .await;
    assert!(
        broker
            .state()
            .confirmed
            .iter()
            .all(|m| m.body.len() <= MAX_READ_RESPONSE)
    );
}
