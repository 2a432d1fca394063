//! `--metrics-addr`: Prometheus text after traffic matches what was sent and received;
//! `/healthz` and `/readyz` answer, readiness drops when shutdown begins.

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::{TestDaemon, memory::MemoryConnector, metric_sample as sample, props};
use rocketmq_binding::daemon::ServeOptions;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn counters_match_traffic_and_probes_answer() {
    let addr = free_addr();
    let broker = MemoryConnector::new();
    let d = TestDaemon::start_opts(
        Arc::new(broker.clone()),
        ServeOptions {
            shutdown_timeout: Duration::from_secs(3),
            metrics_addr: Some(addr),
            ..Default::default()
        },
    )
    .await;
    let c = d.daprd().await;
    let p = props(&[("nameServer", "h:1"), ("topics", "t")]);
    c.init_input("m", p.clone()).await.unwrap();
    c.init_output("m", p).await.unwrap();
    for i in 0..5 {
        c.invoke("m", "create", format!("{i}").as_bytes(), &[])
            .await
            .unwrap();
    }
    // A failing send: unknown operation is rejected before the transport, so use a bad topic
    // on an output instance without topics.
    c.init_output("m2", props(&[("nameServer", "h:1")]))
        .await
        .unwrap();
    assert!(c.invoke("m2", "create", b"x", &[]).await.is_err());

    let mut r = c.read("m").await.unwrap();
    let first = r.next().await;
    r.nack(&first.message_id, "boom").await;
    for _ in 0..5 {
        let m = r.next().await;
        r.ack(&m.message_id).await;
    }
    // Keep one delivery in flight for the readiness check below.
    c.invoke("m", "create", b"held", &[]).await.unwrap();
    let _held = r.next().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let m = r#"instance="m""#;
    assert_eq!(
        sample(
            &text,
            "rocketmq_binding_sends_total",
            &[m, r#"outcome="ok""#]
        ),
        6.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "rocketmq_binding_sends_total",
            &[r#"instance="m2""#, r#"outcome="error""#]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "rocketmq_binding_send_duration_seconds_count", &[m]),
        6.0
    );
    assert_eq!(
        sample(&text, "rocketmq_binding_deliveries_total", &[m]),
        7.0
    );
    assert_eq!(
        sample(&text, "rocketmq_binding_redeliveries_total", &[m]),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "rocketmq_binding_acks_total",
            &[m, r#"outcome="success""#]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "rocketmq_binding_acks_total",
            &[m, r#"outcome="error""#]
        ),
        1.0
    );
    assert_eq!(sample(&text, "rocketmq_binding_in_flight", &[m]), 1.0);
    assert_eq!(sample(&text, "rocketmq_binding_read_streams", &[m]), 1.0);
    assert!(text.contains(r#"transport="tcp""#));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    // Shutdown begins; the held delivery keeps the drain (and the listener) alive.
    d.stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/readyz").await.0, 503);
    assert_eq!(get(addr, "/healthz").await.0, 200);
    drop(r);
    tokio::time::timeout(Duration::from_secs(10), d.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
