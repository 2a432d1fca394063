//! `rocketmq-binding client`: speaks the socket the way daprd does, for debugging without
//! Dapr. It reads a Dapr Component YAML, Inits the instance named by its `metadata.name`
//! (header `x-component-instance`), then sends (`send`) or reads and acks (`read`).
//!
//! `secretKeyRef` values are taken from `--secret <secret>/<key>=VALUE` or the environment
//! variable `ROCKETMQ_SECRET_<SECRET>_<KEY>` (upper-cased, other characters as `_`).

use std::{
    collections::{BTreeMap, HashMap},
    io::Read as _,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, transport::Channel};

use crate::{
    daemon,
    dapr::{
        INSTANCE_HEADER,
        proto::{
            AckResponseError, InputBindingInitRequest, InvokeRequest, ListOperationsRequest,
            MetadataRequest, OutputBindingInitRequest, ReadRequest,
            input_binding_client::InputBindingClient, output_binding_client::OutputBindingClient,
        },
    },
};

/// Client failures, printed to stderr by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The Component file could not be read or parsed.
    #[error("component file {path}: {reason}")]
    Component { path: PathBuf, reason: String },
    /// A `secretKeyRef` has no value.
    #[error(
        "metadata `{item}` uses secretKeyRef {{name: {secret}, key: {key}}}: pass --secret {secret}/{key}=VALUE \
         or set {env}"
    )]
    MissingSecret {
        item: String,
        secret: String,
        key: String,
        env: String,
    },
    /// Bad command line input.
    #[error("{0}")]
    Usage(String),
    /// The socket could not be reached.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The daemon answered with an error.
    #[error("{call} failed: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn rpc(call: &'static str) -> impl Fn(tonic::Status) -> ClientError {
    move |s| ClientError::Rpc {
        call,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// A Component YAML reduced to what Init needs.
#[derive(Debug, Clone)]
pub struct Component {
    /// `metadata.name` (the instance name).
    pub name: String,
    /// `spec.type`.
    pub component_type: String,
    /// `spec.metadata` with secrets resolved.
    pub properties: HashMap<String, String>,
}

/// The environment variable consulted for a `secretKeyRef`.
pub fn secret_env_name(secret: &str, key: &str) -> String {
    let norm = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("ROCKETMQ_SECRET_{}_{}", norm(secret), norm(key))
}

/// Parses a Component YAML. `secrets` maps `<secret>/<key>` (or `<key>`) to values;
/// `env` looks up environment variables.
pub fn parse_component(
    path: &Path,
    text: &str,
    secrets: &HashMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Component, ClientError> {
    let bad = |reason: String| ClientError::Component {
        path: path.to_path_buf(),
        reason,
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    if doc["kind"].as_str() != Some("Component") {
        return Err(bad("`kind: Component` expected".into()));
    }
    let name = doc["metadata"]["name"]
        .as_str()
        .ok_or_else(|| bad("`metadata.name` missing".into()))?
        .to_string();
    let component_type = doc["spec"]["type"].as_str().unwrap_or_default().to_string();
    let mut properties = HashMap::new();
    if let Some(items) = doc["spec"]["metadata"].as_sequence() {
        for item in items {
            let key = item["name"]
                .as_str()
                .ok_or_else(|| bad("a `spec.metadata` item has no `name`".into()))?;
            let value = if let Some(r) = item.get("secretKeyRef") {
                let secret = r["name"].as_str().unwrap_or_default();
                let skey = r["key"].as_str().unwrap_or(secret);
                secrets
                    .get(&format!("{secret}/{skey}"))
                    .or_else(|| secrets.get(skey))
                    .cloned()
                    .or_else(|| env(&secret_env_name(secret, skey)))
                    .ok_or_else(|| ClientError::MissingSecret {
                        item: key.to_string(),
                        secret: secret.to_string(),
                        key: skey.to_string(),
                        env: secret_env_name(secret, skey),
                    })?
            } else {
                match &item["value"] {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Null => String::new(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                }
            };
            properties.insert(key.to_string(), value);
        }
    }
    Ok(Component {
        name,
        component_type,
        properties,
    })
}

/// Reads and parses a Component file.
pub fn load_component(path: &Path, secrets: &[String]) -> Result<Component, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Component {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut map = HashMap::new();
    for s in secrets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            ClientError::Usage(format!(
                "--secret expects NAME/KEY=VALUE, got {:?}",
                redact_kv(s)
            ))
        })?;
        map.insert(k.to_string(), v.to_string());
    }
    parse_component(path, &text, &map, |k| std::env::var(k).ok())
}

fn redact_kv(s: &str) -> String {
    match s.split_once('=') {
        Some((k, _)) => format!("{k}=…"),
        None => "…".into(),
    }
}

fn with_instance<T>(name: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if let Ok(v) = name.parse() {
        req.metadata_mut().insert(INSTANCE_HEADER, v);
    }
    req
}

async fn connect(socket: &Path) -> Result<Channel, ClientError> {
    daemon::connect_uds(socket.to_path_buf())
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })
}

/// What to send.
pub enum Payload {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// Read standard input.
    Stdin,
    /// Read a file.
    File(PathBuf),
}

/// Inits the output side and sends one message; returns the response metadata.
pub async fn send(
    socket: &Path,
    component: &Component,
    payload: Payload,
    metadata: &[String],
) -> Result<BTreeMap<String, String>, ClientError> {
    let data = match payload {
        Payload::Bytes(b) => b,
        Payload::Stdin => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b)?;
            b
        }
        Payload::File(p) => std::fs::read(p)?,
    };
    let mut md = HashMap::new();
    for kv in metadata {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            ClientError::Usage(format!("--metadata expects KEY=VALUE, got {kv:?}"))
        })?;
        md.insert(k.to_string(), v.to_string());
    }
    let mut out = OutputBindingClient::new(connect(socket).await?);
    out.init(with_instance(
        &component.name,
        OutputBindingInitRequest {
            metadata: Some(MetadataRequest {
                properties: component.properties.clone(),
            }),
        },
    ))
    .await
    .map_err(rpc("output Init"))?;
    out.list_operations(with_instance(&component.name, ListOperationsRequest {}))
        .await
        .map_err(rpc("ListOperations"))?;
    let resp = out
        .invoke(with_instance(
            &component.name,
            InvokeRequest {
                data: data.into(),
                metadata: md,
                operation: "create".into(),
            },
        ))
        .await
        .map_err(rpc("Invoke"))?
        .into_inner();
    Ok(resp.metadata.into_iter().collect())
}

/// How `read` behaves.
pub struct ReadOptions {
    /// Stop after this many successful acks (0 = run until `idle` passes).
    pub count: u64,
    /// Ack every Nth delivery with an error (0 = never) to exercise redelivery.
    pub fail_every: u64,
    /// Stop when nothing arrives for this long.
    pub idle: Duration,
}

/// Inits the input side, opens a Read stream and prints each delivery as one JSON line;
/// returns (acked, failed).
pub async fn read(
    socket: &Path,
    component: &Component,
    opts: ReadOptions,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(u64, u64), ClientError> {
    let mut input = InputBindingClient::new(connect(socket).await?);
    input
        .init(with_instance(
            &component.name,
            InputBindingInitRequest {
                metadata: Some(MetadataRequest {
                    properties: component.properties.clone(),
                }),
            },
        ))
        .await
        .map_err(rpc("input Init"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<ReadRequest>(1024);
    let mut stream = input
        .read(with_instance(&component.name, ReceiverStream::new(rx)))
        .await
        .map_err(rpc("Read"))?
        .into_inner();
    let (mut acked, mut failed, mut seen) = (0u64, 0u64, 0u64);
    loop {
        if opts.count > 0 && acked >= opts.count {
            break;
        }
        let msg = match tokio::time::timeout(opts.idle, stream.message()).await {
            Err(_) => break,
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Ok(Err(s)) => return Err(rpc("Read")(s)),
        };
        seen += 1;
        let fail = opts.fail_every > 0 && seen % opts.fail_every == 0;
        let body = match std::str::from_utf8(&msg.data) {
            Ok(s) => serde_json::json!({ "data": s }),
            Err(_) => serde_json::json!({ "data_base64": BASE64.encode(&msg.data) }),
        };
        let mut line = serde_json::json!({
            "message_id": msg.message_id,
            "metadata": msg.metadata.iter().collect::<BTreeMap<_, _>>(),
            "content_type": msg.content_type,
            "ack": if fail { "error" } else { "ok" },
        });
        line.as_object_mut()
            .expect("object")
            .extend(body.as_object().expect("object").clone());
        writeln!(out, "{line}")?;
        out.flush()?;
        let ack = ReadRequest {
            response_data: Default::default(),
            message_id: msg.message_id,
            response_error: fail.then(|| AckResponseError {
                message: "simulated failure (--fail-every)".into(),
            }),
        };
        if tx.send(ack).await.is_err() {
            break;
        }
        if fail {
            failed += 1;
        } else {
            acked += 1;
        }
    }
    // Let the last acks reach the daemon before the stream is dropped.
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    Ok((acked, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
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
    - name: consumeOrderly
      value: true
    - name: maxInFlight
      value: 8
    - name: secretKey
      secretKeyRef:
        name: aliyun
        key: sk
"#;

    #[test]
    fn parses_values_and_resolves_secrets() {
        let p = Path::new("c.yaml");
        let secrets = HashMap::from([("aliyun/sk".to_string(), "from-flag".to_string())]);
        let c = parse_component(p, YAML, &secrets, |_| None).unwrap();
        assert_eq!(c.name, "orders");
        assert_eq!(c.component_type, "bindings.rocketmq-pluggable");
        assert_eq!(c.properties["consumeOrderly"], "true");
        assert_eq!(c.properties["maxInFlight"], "8");
        assert_eq!(c.properties["secretKey"], "from-flag");
        let c = parse_component(p, YAML, &HashMap::new(), |k| {
            (k == "ROCKETMQ_SECRET_ALIYUN_SK").then(|| "from-env".to_string())
        })
        .unwrap();
        assert_eq!(c.properties["secretKey"], "from-env");
    }

    #[test]
    fn missing_secret_is_a_clear_error() {
        let e = parse_component(Path::new("c.yaml"), YAML, &HashMap::new(), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`secretKey`"), "{e}");
        assert!(e.contains("--secret aliyun/sk=VALUE"), "{e}");
        assert!(e.contains("ROCKETMQ_SECRET_ALIYUN_SK"), "{e}");
    }
}
