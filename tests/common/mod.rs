//! Shared test harness: a daprd-like client over the real Unix socket, an in-process
//! daemon, and (for the Dapr layer's own tests) an in-memory transport double.

#![allow(dead_code)]

pub mod memory;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rocketmq_binding::{
    daemon::{self, ServeOptions, SocketOptions},
    dapr::proto::{
        AckResponseError, InputBindingInitRequest, InvokeRequest, InvokeResponse,
        ListOperationsRequest, MetadataRequest, OutputBindingInitRequest, PingRequest, ReadRequest,
        ReadResponse, input_binding_client::InputBindingClient,
        output_binding_client::OutputBindingClient,
    },
    transport::Connector,
};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status, Streaming, transport::Channel};

/// Builds a request carrying daprd's instance header.
pub fn with_instance<T>(name: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if !name.is_empty() {
        req.metadata_mut()
            .insert("x-component-instance", name.parse().unwrap());
    }
    req
}

/// Waits until a daemon started as a child process accepts connections on its socket
/// (`<dir>/rocketmq-pluggable.sock`); panics after 10 s.
pub fn wait_for_socket(dir: &std::path::Path) {
    let sock = dir.join("rocketmq-pluggable.sock");
    let t = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "daemon socket {} not ready",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn props(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sum of the Prometheus text samples `name{…} value` whose labels contain all of `want`.
pub fn metric_sample(text: &str, name: &str, want: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Does what daprd does with a pluggable binding socket.
#[derive(Clone)]
pub struct Daprd {
    pub channel: Channel,
    pub input: InputBindingClient<Channel>,
    pub output: OutputBindingClient<Channel>,
}

impl Daprd {
    pub async fn connect(socket: &Path) -> Daprd {
        let channel = daemon::connect_uds(socket.to_path_buf()).await.unwrap();
        Daprd {
            input: InputBindingClient::new(channel.clone()),
            output: OutputBindingClient::new(channel.clone()),
            channel,
        }
    }

    /// Services listed by gRPC reflection v1alpha, the way daprd's discovery asks.
    pub async fn list_services_v1alpha(&self) -> Vec<String> {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(self.channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        match resp.message_response.unwrap() {
            MessageResponse::ListServicesResponse(l) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection response {other:?}"),
        }
    }

    pub async fn init_input(&self, name: &str, p: HashMap<String, String>) -> Result<(), Status> {
        self.input
            .clone()
            .init(with_instance(
                name,
                InputBindingInitRequest {
                    metadata: Some(MetadataRequest { properties: p }),
                },
            ))
            .await
            .map(|_| ())
    }

    pub async fn init_output(&self, name: &str, p: HashMap<String, String>) -> Result<(), Status> {
        self.output
            .clone()
            .init(with_instance(
                name,
                OutputBindingInitRequest {
                    metadata: Some(MetadataRequest { properties: p }),
                },
            ))
            .await
            .map(|_| ())?;
        // daprd calls ListOperations right after output Init.
        self.list_operations(name).await.map(|_| ())
    }

    /// Input and output Init of one Component, as daprd does for a two-way binding.
    pub async fn init_both(&self, name: &str, p: HashMap<String, String>) {
        self.init_input(name, p.clone()).await.unwrap();
        self.init_output(name, p).await.unwrap();
    }

    /// Sends `n` messages with bodies `{prefix}{i}`.
    pub async fn send_n(&self, name: &str, prefix: &str, n: usize) {
        for i in 0..n {
            self.invoke(name, "create", format!("{prefix}{i}").as_bytes(), &[])
                .await
                .unwrap();
        }
    }

    pub async fn list_operations(&self, name: &str) -> Result<Vec<String>, Status> {
        Ok(self
            .output
            .clone()
            .list_operations(with_instance(name, ListOperationsRequest {}))
            .await?
            .into_inner()
            .operations)
    }

    pub async fn invoke(
        &self,
        name: &str,
        op: &str,
        data: &[u8],
        md: &[(&str, &str)],
    ) -> Result<InvokeResponse, Status> {
        Ok(self
            .output
            .clone()
            .invoke(with_instance(
                name,
                InvokeRequest {
                    data: data.to_vec().into(),
                    metadata: props(md),
                    operation: op.to_string(),
                },
            ))
            .await?
            .into_inner())
    }

    pub async fn ping_input(&self, name: &str) -> Result<(), Status> {
        self.input
            .clone()
            .ping(with_instance(name, PingRequest {}))
            .await
            .map(|_| ())
    }

    pub async fn ping_output(&self, name: &str) -> Result<(), Status> {
        self.output
            .clone()
            .ping(with_instance(name, PingRequest {}))
            .await
            .map(|_| ())
    }

    /// Opens a Read stream like daprd: sends nothing first, acks later.
    pub async fn read(&self, name: &str) -> Result<ReadStream, Status> {
        let (tx, rx) = mpsc::channel::<ReadRequest>(1024);
        let resp = self
            .input
            .clone()
            .read(with_instance(name, ReceiverStream::new(rx)))
            .await?;
        Ok(ReadStream {
            acks: tx,
            messages: resp.into_inner(),
        })
    }
}

/// One open Read stream.
/// What [`ReadStream::next_or_end_within`] saw.
#[derive(Debug)]
pub enum Next {
    /// A delivery.
    Message(ReadResponse),
    /// Nothing within the time.
    Quiet,
    /// The stream ended cleanly.
    Ended,
}

pub struct ReadStream {
    pub acks: mpsc::Sender<ReadRequest>,
    pub messages: Streaming<ReadResponse>,
}

impl ReadStream {
    /// The next message, or None if nothing arrived in `within`. A stream that ends or fails
    /// panics: "nothing more arrived" must not pass because the daemon closed the stream
    /// (daprd's contract: a Read stream never ends on broker trouble). Tests that expect the
    /// end use [`ReadStream::next_or_end_within`].
    pub async fn next_within(&mut self, within: Duration) -> Option<ReadResponse> {
        match self.next_or_end_within(within).await {
            Next::Message(m) => Some(m),
            Next::Quiet => None,
            Next::Ended => panic!("the read stream ended (expected messages or quiet)"),
        }
    }

    /// The next message, quiet for `within`, or the end of the stream.
    pub async fn next_or_end_within(&mut self, within: Duration) -> Next {
        match tokio::time::timeout(within, self.messages.message()).await {
            Ok(Ok(Some(m))) => Next::Message(m),
            Ok(Ok(None)) => Next::Ended,
            Ok(Err(e)) => panic!("read stream failed: {e}"),
            Err(_) => Next::Quiet,
        }
    }

    pub async fn next(&mut self) -> ReadResponse {
        self.next_within(Duration::from_secs(30))
            .await
            .expect("a message within 30 s")
    }

    pub async fn ack(&self, id: &str) {
        self.acks
            .send(ReadRequest {
                response_data: Default::default(),
                message_id: id.to_string(),
                response_error: None,
            })
            .await
            .unwrap();
    }

    pub async fn nack(&self, id: &str, err: &str) {
        self.acks
            .send(ReadRequest {
                response_data: Default::default(),
                message_id: id.to_string(),
                response_error: Some(AckResponseError {
                    message: err.to_string(),
                }),
            })
            .await
            .unwrap();
    }
}

/// The daemon running in this test process on a socket in a temp dir.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub stop: CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl TestDaemon {
    pub async fn start(connector: Arc<dyn Connector>) -> TestDaemon {
        Self::start_with(connector, Duration::from_secs(5)).await
    }

    pub async fn start_with(
        connector: Arc<dyn Connector>,
        shutdown_timeout: Duration,
    ) -> TestDaemon {
        Self::start_opts(
            connector,
            ServeOptions {
                shutdown_timeout,
                metrics_addr: None,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn start_opts(connector: Arc<dyn Connector>, opts: ServeOptions) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let sock = SocketOptions {
            folder: dir.path().to_path_buf(),
            name: "rocketmq-pluggable".into(),
            mode: 0o660,
        };
        let bound = daemon::bind(&sock).unwrap();
        let stop = CancellationToken::new();
        let socket = sock.path();
        let handle = tokio::spawn(daemon::serve(
            bound,
            connector,
            opts,
            stop.clone().cancelled_owned(),
        ));
        TestDaemon {
            socket,
            dir,
            stop,
            handle,
        }
    }

    pub async fn daprd(&self) -> Daprd {
        Daprd::connect(&self.socket).await
    }

    /// Triggers shutdown and waits for it to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("daemon stops within 30 s")
            .unwrap()
            .unwrap();
    }
}
