//! One message contract for both transports (issue 14): the same Component and the same
//! request give the app the same delivery whether `accessProto` is `tcp` (the Apache RocketMQ
//! 5.3.3 Java servers) or `http` (the project's Aliyun MQ HTTP emulator). The cases are the
//! drifts found between the two: request keys in any case (`Rocketmq-Property-Size`), the
//! default tag of a single-tag `topics` entry, and delivered values percent-encoded the same
//! reversible way (`%` itself included). Table-driven: every case runs through both.

mod common;
#[path = "common/rocketmq.rs"]
mod rocketmq;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{Daprd, TestDaemon, props};
use rocketmq_binding::{
    emulator::{self, Config},
    transport::DefaultConnector,
};

const AK: &str = "ContractAK";
const SK: &str = "ContractSecret-0123456789";

/// One request and the delivery metadata the app must see for it (key → value).
struct Case {
    name: &'static str,
    request: &'static [(&'static str, &'static str)],
    /// Expected delivered values; `None` = the key must be absent.
    expect: &'static [(&'static str, Option<&'static str>)],
}

const CASES: &[Case] = &[
    Case {
        name: "request keys match in any case",
        request: &[
            ("Rocketmq-Property-Size", "XL"),
            ("ROCKETMQ-KEY", "k-1"),
            ("rocketmq-property-plain", "p"),
        ],
        expect: &[
            ("rocketmq-property-Size", Some("XL")),
            ("rocketmq-property-plain", Some("p")),
            ("rocketmq-keys", Some("k-1")),
        ],
    },
    Case {
        name: "the single-tag topics entry gives the default tag",
        request: &[],
        expect: &[("rocketmq-tag", Some("created"))],
    },
    Case {
        name: "a request tag wins over the default",
        request: &[("rocketmq-tag", "updated")],
        expect: &[("rocketmq-tag", Some("updated"))],
    },
    Case {
        name: "delivered values are encoded reversibly",
        request: &[
            ("rocketmq-property-discount", "50% off"),
            ("rocketmq-property-city", "Zürich"),
        ],
        expect: &[
            ("rocketmq-property-discount", Some("50%25 off")),
            ("rocketmq-property-city", Some("Z%C3%BCrich")),
        ],
    },
];

fn tcp_component(topic: &str) -> HashMap<String, String> {
    props(&[
        ("nameServer", &rocketmq::namesrv()),
        ("topics", &format!("{topic}||created")),
        ("consumerGroup", &rocketmq::unique("contract_g")),
        ("fromWhere", "ConsumeFromFirstOffset"),
    ])
}

fn http_component(endpoint: &str, topic: &str) -> HashMap<String, String> {
    props(&[
        ("accessProto", "http"),
        ("endpoint", endpoint),
        ("accessKey", AK),
        ("secretKey", SK),
        ("topics", &format!("{topic}||created")),
        ("consumerGroup", "GID_contract"),
    ])
}

/// Sends every case (body = case index), reads them back, returns the delivery metadata by
/// case index.
async fn run(daprd: &Daprd, name: &str) -> HashMap<usize, HashMap<String, String>> {
    let mut rs = daprd.read(name).await.unwrap();
    for (i, c) in CASES.iter().enumerate() {
        daprd
            .invoke(name, "create", i.to_string().as_bytes(), c.request)
            .await
            .unwrap_or_else(|e| panic!("{name}: send of {:?}: {e}", c.name));
    }
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while got.len() < CASES.len() && tokio::time::Instant::now() < deadline {
        let Some(m) = rs.next_within(Duration::from_secs(60)).await else {
            break;
        };
        rs.ack(&m.message_id).await;
        let i: usize = String::from_utf8_lossy(&m.data).parse().unwrap();
        got.insert(i, m.metadata);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_transports_give_the_app_the_same_delivery() {
    let emu = emulator::spawn(Config::new("127.0.0.1:0".parse().unwrap(), AK, SK))
        .await
        .unwrap();
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let daprd = d.daprd().await;
    let topic = rocketmq::unique("contract");
    // Input on both tags so the "request tag wins" case is delivered as well.
    let mut tcp_in = tcp_component(&topic);
    tcp_in.insert("topics".into(), format!("{topic}||created||updated"));
    let mut http_in = http_component(&emu.endpoint(), &topic);
    http_in.insert("topics".into(), format!("{topic}||created||updated"));
    daprd
        .init_output("tcp", tcp_component(&topic))
        .await
        .unwrap();
    daprd.init_input("tcp", tcp_in).await.unwrap();
    daprd
        .init_output("http", http_component(&emu.endpoint(), &topic))
        .await
        .unwrap();
    daprd.init_input("http", http_in).await.unwrap();

    let (tcp, http) = tokio::join!(run(&daprd, "tcp"), run(&daprd, "http"));
    for (i, c) in CASES.iter().enumerate() {
        for (transport, got) in [("tcp", &tcp), ("http", &http)] {
            let md = got
                .get(&i)
                .unwrap_or_else(|| panic!("{transport}: case {:?} never delivered", c.name));
            for (k, want) in c.expect {
                assert_eq!(
                    md.get(*k).map(String::as_str),
                    *want,
                    "{transport}: case {:?}, key {k}",
                    c.name
                );
            }
        }
        // And the two transports agree on every key both deliver for the user's request.
        let (a, b) = (&tcp[&i], &http[&i]);
        for k in a.keys().filter(|k| {
            k.starts_with("rocketmq-property-") || *k == "rocketmq-tag" || *k == "rocketmq-keys"
        }) {
            assert_eq!(
                a.get(k),
                b.get(k),
                "case {:?}: {k} differs between tcp and http",
                c.name
            );
        }
    }
}

/// Issue 13, item 5: a request may not write into a consumer group's retry or dead-letter
/// queue or a broker system topic, and an output may not be configured to: the same
/// INVALID_ARGUMENT through the daemon's Invoke and Init on both transports.
/// A reserved topic's refusal: INVALID_ARGUMENT naming the key or field and the topic.
fn refused(e: &tonic::Status, field: &str, component: &str, reserved: &str) {
    assert_eq!(
        e.code(),
        tonic::Code::InvalidArgument,
        "{component} {reserved}: {e}"
    );
    assert!(
        e.message().contains(field) && e.message().contains(reserved),
        "{component} {reserved}: {}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserved_topics_are_refused_on_both_transports() {
    let emu = emulator::spawn(Config::new("127.0.0.1:0".parse().unwrap(), AK, SK))
        .await
        .unwrap();
    let d = TestDaemon::start(Arc::new(DefaultConnector)).await;
    let daprd = d.daprd().await;
    let topic = rocketmq::unique("contract_rsv");
    let components = [
        ("tcp", tcp_component(&topic)),
        ("http", http_component(&emu.endpoint(), &topic)),
    ];
    for (name, p) in &components {
        daprd.init_output(name, p.clone()).await.unwrap();
    }
    for reserved in ["%DLQ%x", "%RETRY%g", "TBW102"] {
        for (name, p) in &components {
            let e = daprd
                .invoke(name, "create", b"x", &[("rocketmq-topic", reserved)])
                .await
                .unwrap_err();
            refused(&e, "rocketmq-topic", name, reserved);
            let mut configured = p.clone();
            configured.insert("topics".into(), reserved.into());
            let e = daprd
                .init_output(&format!("{name}-rsv"), configured)
                .await
                .unwrap_err();
            refused(&e, "`topics`", name, reserved);
        }
    }
    // Ordinary sends on the same outputs still work.
    for (name, _) in &components {
        daprd
            .invoke(name, "create", b"ok", &[("rocketmq-topic", &topic)])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
