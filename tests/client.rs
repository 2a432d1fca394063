//! `rocketmq-binding client` against the daemon: Component YAML → Init → send / read with
//! acks and simulated failures.

mod common;

use std::{sync::Arc, time::Duration};

use common::{TestDaemon, memory::MemoryConnector};
use rocketmq_binding::client::{self, Payload, ReadOptions};

const COMPONENT: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: orders
spec:
  type: bindings.rocketmq-pluggable
  version: v1
  metadata:
    - name: nameServer
      value: "127.0.0.1:9876"
    - name: topics
      value: "orders"
    - name: accessKey
      value: ak
    - name: secretKey
      secretKeyRef:
        name: mq
        key: sk
"#;

#[tokio::test]
async fn send_then_read_with_fail_every() {
    let broker = MemoryConnector::new();
    let d = TestDaemon::start(Arc::new(broker.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.yaml");
    std::fs::write(&file, COMPONENT).unwrap();
    let comp = client::load_component(&file, &["mq/sk=secret".to_string()]).unwrap();
    for i in 0..4 {
        let md = client::send(
            &d.socket,
            &comp,
            Payload::Bytes(format!("msg-{i}").into_bytes()),
            &["rocketmq-tag=TagA".to_string()],
        )
        .await
        .unwrap();
        assert_eq!(md["rocketmq-topic"], "orders");
    }
    let mut out = Vec::new();
    let (acked, failed) = client::read(
        &d.socket,
        &comp,
        ReadOptions {
            count: 4,
            fail_every: 2,
            idle: Duration::from_secs(5),
        },
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(acked, 4);
    assert_eq!(failed, 3, "deliveries 2, 4 and 6 failed and came back");
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines
            .iter()
            .all(|l| l["metadata"]["rocketmq-topic"] == "orders")
    );
    let mut ok: Vec<String> = lines
        .iter()
        .filter(|l| l["ack"] == "ok")
        .map(|l| l["data"].as_str().unwrap().to_string())
        .collect();
    ok.sort();
    assert_eq!(ok, vec!["msg-0", "msg-1", "msg-2", "msg-3"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.state().confirmed.len(), 4);
}

#[test]
fn missing_secret_names_flag_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.yaml");
    std::fs::write(&file, COMPONENT).unwrap();
    let e = client::load_component(&file, &[]).unwrap_err().to_string();
    assert!(
        e.contains("--secret mq/sk=VALUE") && e.contains("ROCKETMQ_SECRET_MQ_SK"),
        "{e}"
    );
}
