//! The do-nothing pluggable `OutputBinding` of the benchmarks: one server, used two ways.
//!
//! * `examples/bench.rs` calls it directly over its Unix socket: the raw gRPC hop (tonic, h2,
//!   the kernel, two processes' wakeups) with nothing behind it.
//! * `examples/bench-dapr.rs` puts its socket in daprd's components socket folder as
//!   `noop-pluggable.sock`, so daprd discovers it as `bindings.noop-pluggable`: what daprd's
//!   pluggable-component path costs when the component itself costs nothing.
//!
//! Both examples include this file (`#[path]`) and re-execute themselves with [`NOOP_FLAG`]
//! and the socket path; [`serve_main`] then serves until the process is killed.
//!
//! Discovery is the daemon's (`src/daemon.rs`): gRPC reflection v1alpha (what daprd's
//! discovery calls) and v1 built from the project's generated descriptor set
//! ([`rocketmq_binding::dapr::proto::FILE_DESCRIPTOR_SET`]), here advertising only
//! `OutputBinding`, so daprd registers the socket as an output binding and nothing else.
//! Every `OutputBinding` call answers at once: Init and Ping succeed, ListOperations says
//! `create` (daprd refuses operations a binding does not list), Invoke returns an empty
//! success (no data, no metadata: what Dapr's Go `bindings.rocketmq` returns for a create).
//! `OutputBinding` has no Features call.
//!
//! With `NOOP_RECEIPT=1` in its environment, Invoke instead returns a receipt shaped like the
//! daemon's tcp receipt (six `rocketmq-*` keys with values of the same lengths): what the
//! receipt alone costs daprd, which copies it into `Metadata.*` headers or the gRPC reply.

use std::path::{Path, PathBuf};

use rocketmq_binding::dapr::proto::{
    self, InvokeRequest, InvokeResponse, ListOperationsRequest, ListOperationsResponse,
    OutputBindingInitRequest, OutputBindingInitResponse, PingRequest, PingResponse,
    output_binding_server::{self, OutputBinding, OutputBindingServer},
};

/// Hidden first argument: the example re-executed as the do-nothing server; the socket path
/// follows.
pub const NOOP_FLAG: &str = "--serve-noop-output-binding";

/// Socket name in daprd's folder: daprd registers it as `bindings.noop-pluggable`.
pub const NOOP_SOCKET_NAME: &str = "noop-pluggable";

/// An OutputBinding whose every call answers at once.
pub struct NoopOutput {
    /// The receipt every Invoke returns: empty, or daemon-shaped with `NOOP_RECEIPT=1`.
    receipt: std::collections::HashMap<String, String>,
}

impl NoopOutput {
    fn from_env() -> NoopOutput {
        let mut receipt = std::collections::HashMap::new();
        if std::env::var("NOOP_RECEIPT").is_ok_and(|v| v == "1") {
            for (k, v) in [
                ("rocketmq-message-id", "7F0000011F8B18B4AAC2A1B2C3D40000"),
                ("rocketmq-topic", "bench_dapr_out_0123456789"),
                ("rocketmq-queue-id", "3"),
                ("rocketmq-queue-offset", "123456"),
                ("rocketmq-broker-name", "broker-bdapr"),
                ("rocketmq-send-status", "SEND_OK"),
            ] {
                receipt.insert(k.to_string(), v.to_string());
            }
        }
        NoopOutput { receipt }
    }
}

#[tonic::async_trait]
impl OutputBinding for NoopOutput {
    async fn init(
        &self,
        _: tonic::Request<OutputBindingInitRequest>,
    ) -> Result<tonic::Response<OutputBindingInitResponse>, tonic::Status> {
        Ok(tonic::Response::new(OutputBindingInitResponse {}))
    }
    async fn invoke(
        &self,
        _: tonic::Request<InvokeRequest>,
    ) -> Result<tonic::Response<InvokeResponse>, tonic::Status> {
        Ok(tonic::Response::new(InvokeResponse {
            metadata: self.receipt.clone(),
            ..Default::default()
        }))
    }
    async fn list_operations(
        &self,
        _: tonic::Request<ListOperationsRequest>,
    ) -> Result<tonic::Response<ListOperationsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListOperationsResponse {
            operations: vec!["create".to_string()],
        }))
    }
    async fn ping(
        &self,
        _: tonic::Request<PingRequest>,
    ) -> Result<tonic::Response<PingResponse>, tonic::Status> {
        Ok(tonic::Response::new(PingResponse {}))
    }
}

/// Serves [`NoopOutput`] with reflection on `socket` until the process is killed.
async fn serve(socket: &Path) -> Result<(), String> {
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .with_service_name(output_binding_server::SERVICE_NAME)
        .build_v1alpha()
        .map_err(|e| format!("reflection v1alpha: {e}"))?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .with_service_name(output_binding_server::SERVICE_NAME)
        .build_v1()
        .map_err(|e| format!("reflection v1: {e}"))?;
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| format!("bind {}: {e}", socket.display()))?;
    tonic::transport::Server::builder()
        .add_service(OutputBindingServer::new(NoopOutput::from_env()))
        .add_service(reflection_v1alpha)
        .add_service(reflection_v1)
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await
        .map_err(|e| format!("serve: {e}"))
}

/// Entry point of the re-executed example: serves on `socket` with one worker thread (the
/// daemon's default) until killed.
pub fn serve_main(socket: Option<PathBuf>) -> std::process::ExitCode {
    let Some(socket) = socket else {
        eprintln!("usage: {NOOP_FLAG} SOCKET");
        return std::process::ExitCode::FAILURE;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(serve(&socket)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noop output binding: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
