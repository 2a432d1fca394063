//! The daemon: the Unix socket daprd discovers, the tonic server on it, and shutdown.
//!
//! Startup binds the socket before anything else (daprd scans the folder once, at its own
//! start), so the socket accepts connections within milliseconds of exec; brokers are only
//! contacted when daprd calls Init. The server carries `InputBinding`, `OutputBinding`,
//! gRPC reflection v1alpha (what daprd's discovery uses) and v1, and `grpc.health.v1`.
//!
//! # Connections
//!
//! Nothing a client on the socket does may take the daemon down or starve daprd:
//! - at most [`ServeOptions::max_connections`] connections are open at once (flag
//!   `--max-connections`, default [`DEFAULT_MAX_CONNECTIONS`]); one beyond is closed at once
//!   and logged;
//! - an accept error (the fd limit: `EMFILE`) is logged and retried after a growing pause
//!   (10 ms doubling to 1 s) instead of spinning a core;
//! - HTTP/2 keepalive pings every [`KEEPALIVE_INTERVAL`] (or a quarter of the idle timeout
//!   when that is shorter); a peer that does not answer within [`KEEPALIVE_TIMEOUT`] (same
//!   rule) is dropped;
//! - a connection from which nothing was read for [`ServeOptions::conn_idle_timeout`] (flag
//!   `--conn-idle-timeout`, default [`DEFAULT_CONN_IDLE_TIMEOUT`]) is closed: a live HTTP/2
//!   peer answers the keepalive pings, so only abandoned ones (never sent a preface, stopped
//!   reading) reach it.
//!
//! Shutdown (SIGTERM/SIGINT, or the future passed to [`serve`]) runs on the deadlines of
//! [`budget::Shutdown`]: health flips to NOT_SERVING, Read streams stop pulling and wait up to
//! the drain timeout for in-flight acks, release the rest and end (within
//! [`budget::STREAMS_END`]); connections finish (within [`budget::CONNECTIONS_END`], then they
//! are dropped); every producer and consumer closes at once under one deadline
//! ([`budget::CLOSE`]); the socket file is removed. The whole takes at most
//! [`budget::Shutdown::total`] of the drain timeout.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Server, server::Connected};
use tower::service_fn;

use crate::{
    dapr::{
        budget,
        input::{InputService, Lifecycle},
        instances::{ConnId, DEFAULT_INPUT_IDLE_TIMEOUT, DEFAULT_MAX_INSTANCES, Instances},
        output::OutputService,
        proto::{
            self, input_binding_server::InputBindingServer,
            output_binding_server::OutputBindingServer,
        },
    },
    transport::Connector,
};

/// Default socket folder (daprd's default).
pub const DEFAULT_SOCKET_FOLDER: &str = "/tmp/dapr-components-sockets";
/// Default socket name: daprd registers it as `bindings.rocketmq-pluggable`.
pub const DEFAULT_SOCKET_NAME: &str = "rocketmq-pluggable";
/// Environment variables naming the socket folder, in the order they are honoured: daprd's
/// own, the Kubernetes injector's, and the legacy spelling the Go SDK still reads.
pub const SOCKET_FOLDER_ENV: [&str; 3] = [
    "DAPR_COMPONENTS_SOCKETS_FOLDER",
    "DAPR_COMPONENT_SOCKETS_FOLDER",
    "DAPR_COMPONENT_SOCKET_FOLDER",
];
/// Largest `InvokeRequest` accepted (RocketMQ's default body limit is 4 MiB; leave room).
pub const MAX_DECODING_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Default of [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default of [`ServeOptions::conn_idle_timeout`].
pub const DEFAULT_CONN_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Interval of the server's HTTP/2 keepalive pings.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive ping may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// First pause after an accept error; doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Repeated accept errors / refused connections are logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Daemon startup and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A filesystem or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another server already answers on the socket.
    #[error("another server is already listening on {0}; stop it or choose another --socket-name")]
    SocketInUse(PathBuf),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Reflection descriptors could not be loaded.
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The socket file was removed or replaced while serving: daprd can no longer reach
    /// this daemon, so it stops (non-zero) for its supervisor to start it again.
    #[error(
        "socket {0} was removed or replaced by another file; daprd cannot reach this daemon any more"
    )]
    SocketLost(PathBuf),
}

/// Where the socket lives and how it is created.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Folder holding the socket.
    pub folder: PathBuf,
    /// Socket file name without `.sock`.
    pub name: String,
    /// File mode of the socket (e.g. 0o660).
    pub mode: u32,
}

impl SocketOptions {
    /// `<folder>/<name>.sock`.
    pub fn path(&self) -> PathBuf {
        self.folder.join(format!("{}.sock", self.name))
    }
}

/// Resolves the socket folder: the flag, else the first Dapr variable set, else the
/// default. Returns the folder and what chose it.
pub fn resolve_socket_folder(
    flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<String>,
) -> (PathBuf, &'static str) {
    if let Some(f) = flag {
        return (f, "--socket-folder");
    }
    for var in SOCKET_FOLDER_ENV {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            return (PathBuf::from(v), var);
        }
    }
    (PathBuf::from(DEFAULT_SOCKET_FOLDER), "default")
}

/// A bound listening socket; the file is removed when this is dropped, if it is still
/// the one this daemon created (same device and inode: another daemon may have replaced it).
pub struct BoundSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
    /// (device, inode) of the socket file as bound.
    identity: (u64, u64),
}

/// How often a serving daemon checks that its socket file is still its own.
const SOCKET_CHECK_INTERVAL: Duration = Duration::from_secs(2);

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl BoundSocket {
    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at the path is still the socket this daemon bound.
    pub fn still_ours(&self) -> bool {
        file_identity(&self.path) == Some(self.identity)
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if !self.still_ours() {
            tracing::warn!(socket = %self.path.display(), "socket file is not ours any more: left in place");
            return;
        }
        if std::fs::remove_file(&self.path).is_ok() {
            tracing::info!(socket = %self.path.display(), "socket removed");
        }
    }
}

/// Creates the folder, removes a stale socket (refusing a live one), binds and chmods.
pub fn bind(opts: &SocketOptions) -> Result<BoundSocket, DaemonError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { what, path, source }
    };
    std::fs::create_dir_all(&opts.folder)
        .map_err(io("cannot create socket folder", &opts.folder))?;
    let path = opts.path();
    if std::fs::symlink_metadata(&path).is_ok() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(DaemonError::SocketInUse(path));
        }
        tracing::warn!(socket = %path.display(), "removing stale socket file");
        std::fs::remove_file(&path).map_err(io("cannot remove stale socket", &path))?;
    }
    let listener = bind_with_mode(&path, opts.mode).map_err(io("cannot bind socket", &path))?;
    let identity = file_identity(&path).ok_or_else(|| DaemonError::SocketLost(path.clone()))?;
    Ok(BoundSocket {
        path,
        listener: Some(listener),
        identity,
    })
}

/// Binds with the file mode already in place: the socket file is created under a umask that
/// leaves exactly `mode`, so there is no moment when a client can connect to a socket with the
/// default mode, and nothing to chmod afterwards (a chmod after bind raced with a file removed in
/// between). The umask is process-wide; it is held only for the `bind` call at startup, before
/// the daemon creates any other file.
fn bind_with_mode(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    let mask = (!mode & 0o777) as libc::mode_t;
    // SAFETY: umask only swaps the process file-creation mask; it cannot fail.
    let previous = unsafe { libc::umask(mask) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask read before.
    unsafe { libc::umask(previous) };
    bound
}

/// How the server behaves once bound.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long shutdown waits for in-flight acks before releasing them.
    pub shutdown_timeout: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (off when `None`).
    pub metrics_addr: Option<SocketAddr>,
    /// How long an input instance keeps its consumer while no Read stream is open.
    pub input_idle_timeout: Duration,
    /// Connections open at once on the socket (module docs).
    pub max_connections: usize,
    /// A connection with nothing read for this long is closed (module docs).
    pub conn_idle_timeout: Duration,
    /// Component instances (inputs plus outputs) the daemon holds at once.
    pub max_instances: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            shutdown_timeout: budget::DEFAULT_DRAIN,
            metrics_addr: None,
            input_idle_timeout: DEFAULT_INPUT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            conn_idle_timeout: DEFAULT_CONN_IDLE_TIMEOUT,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// A connection on the socket, numbered in accept order so that instances can be tied to
/// the connection that initialised them; dropping it (the connection ended) reports its
/// number.
struct TrackedConn {
    io: UnixStream,
    id: ConnId,
    ended: mpsc::UnboundedSender<ConnId>,
    /// Open connections (this one included).
    open: Arc<AtomicUsize>,
    /// When something was last read.
    last_read: Instant,
    idle_after: Duration,
    /// Fires at `last_read + idle_after` at the earliest (re-armed lazily).
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Drop for TrackedConn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let _ = self.ended.send(self.id);
    }
}

impl Connected for TrackedConn {
    type ConnectInfo = ConnId;
    fn connect_info(&self) -> ConnId {
        self.id
    }
}

impl AsyncRead for TrackedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_read = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                // The timer is re-armed only when it fires early, not on every read.
                while this.idle.as_mut().poll(cx).is_ready() {
                    let due = this.last_read + this.idle_after;
                    if Instant::now() >= due {
                        tracing::info!(
                            connection = this.id.0,
                            idle = ?this.idle_after,
                            "closing a connection nothing was read from"
                        );
                        return Poll::Ready(Ok(()));
                    }
                    this.idle.as_mut().reset(due);
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TrackedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Binds the metrics listener and serves Prometheus text on `/metrics`, liveness on
/// `/healthz` (200 while the process runs) and readiness on `/readyz` (200 while serving,
/// 503 once shutdown began). Returns the bound address.
async fn serve_metrics(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<SocketAddr, DaemonError> {
    use axum::{Router, http::StatusCode, routing::get};
    let handle = crate::telemetry::metrics::install();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Io {
            what: "cannot bind metrics listener",
            path: PathBuf::from(addr.to_string()),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Io {
        what: "metrics listener address",
        path: PathBuf::from(addr.to_string()),
        source,
    })?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], h.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(addr = %local, "serving /metrics, /healthz, /readyz");
    Ok(local)
}

/// What the accept loop keeps between connections.
struct Acceptor {
    listener: UnixListener,
    next: u64,
    ended: mpsc::UnboundedSender<ConnId>,
    open: Arc<AtomicUsize>,
    max: usize,
    idle_after: Duration,
    backoff: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Acceptor {
    /// Whether to log now (at most every [`ACCEPT_LOG_EVERY`]); counts what it suppresses.
    fn log_now(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    async fn next_conn(&mut self) -> TrackedConn {
        loop {
            match self.listener.accept().await {
                Ok((io, _)) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
                    if open > self.max {
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        drop(io);
                        if let Some(more) = self.log_now() {
                            tracing::warn!(
                                max_connections = self.max,
                                refused_since_last_log = more,
                                "connection refused: the socket has --max-connections open"
                            );
                        }
                        continue;
                    }
                    self.next += 1;
                    return TrackedConn {
                        io,
                        id: ConnId(self.next),
                        ended: self.ended.clone(),
                        open: self.open.clone(),
                        last_read: Instant::now(),
                        idle_after: self.idle_after,
                        idle: Box::pin(tokio::time::sleep(self.idle_after)),
                    };
                }
                Err(e) => {
                    if let Some(more) = self.log_now() {
                        tracing::warn!(
                            error = %e,
                            retry_in = ?self.backoff,
                            failed_since_last_log = more,
                            open_connections = self.open.load(Ordering::Relaxed),
                            "accept failed (file descriptor limit?); pausing"
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

/// The accepted connections, each numbered and counted, with the limits of the module docs;
/// a task tells `instances` when one ends.
fn tracked(
    listener: UnixListener,
    instances: Arc<Instances>,
    max_connections: usize,
    conn_idle_timeout: Duration,
) -> impl tokio_stream::Stream<Item = std::io::Result<TrackedConn>> {
    let (ended, mut ends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(id) = ends.recv().await {
            instances.connection_closed(id).await;
        }
    });
    let acceptor = Acceptor {
        listener,
        next: 0,
        ended,
        open: Arc::new(AtomicUsize::new(0)),
        max: max_connections.max(1),
        idle_after: conn_idle_timeout,
        backoff: ACCEPT_BACKOFF_MIN,
        last_log: None,
        suppressed: 0,
    };
    futures::stream::unfold(acceptor, |mut a| async move {
        let conn = a.next_conn().await;
        Some((Ok(conn), a))
    })
}

/// Serves the binding on `socket` until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(
    mut socket: BoundSocket,
    connector: Arc<dyn Connector>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let listener = socket.listener.take().expect("listener taken once");
    let ready = Arc::new(AtomicBool::new(true));
    let metrics_stop = CancellationToken::new();
    let _metrics_guard = metrics_stop.clone().drop_guard();
    if let Some(addr) = opts.metrics_addr {
        serve_metrics(addr, ready.clone(), metrics_stop.clone()).await?;
    }
    let instances = Arc::new(
        Instances::new(connector, opts.input_idle_timeout).with_max_instances(opts.max_instances),
    );
    let life = Lifecycle::new(opts.shutdown_timeout);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<InputBindingServer<InputService>>()
        .await;
    health
        .set_serving::<OutputBindingServer<OutputService>>()
        .await;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let input = InputBindingServer::new(InputService::new(instances.clone(), life.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    let output = OutputBindingServer::new(OutputService::new(instances.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);

    let server_stop = CancellationToken::new();
    let server = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL.min(opts.conn_idle_timeout / 4)))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT.min(opts.conn_idle_timeout / 4)))
        .add_service(input)
        .add_service(output)
        .add_service(health_service)
        .add_service(reflection_v1alpha)
        .add_service(reflection_v1)
        .serve_with_incoming_shutdown(
            tracked(
                listener,
                instances.clone(),
                opts.max_connections,
                opts.conn_idle_timeout,
            ),
            server_stop.clone().cancelled_owned(),
        );
    let mut server = tokio::spawn(server);
    tracing::info!(socket = %socket.path().display(), "serving Dapr InputBinding and OutputBinding");

    let lost = async {
        let mut tick = tokio::time::interval(SOCKET_CHECK_INTERVAL);
        loop {
            tick.tick().await;
            if !socket.still_ours() {
                break;
            }
        }
    };
    let mut outcome = Ok(());
    tokio::select! {
        r = &mut server => {
            let r = r.expect("server task panicked");
            instances.close_all(budget::close_deadline(Instant::now())).await;
            return r.map_err(DaemonError::from);
        }
        _ = shutdown => {}
        _ = lost => {
            let e = DaemonError::SocketLost(socket.path().to_path_buf());
            tracing::error!(error = %e, "stopping");
            outcome = Err(e);
        }
    }

    let began = Instant::now();
    ready.store(false, Ordering::Relaxed);
    health
        .set_not_serving::<InputBindingServer<InputService>>()
        .await;
    health
        .set_not_serving::<OutputBindingServer<OutputService>>()
        .await;
    let plan = life.begin_shutdown(began);
    tracing::info!(
        timeout = ?opts.shutdown_timeout,
        at_most = ?budget::Shutdown::total(opts.shutdown_timeout),
        "shutting down: draining in-flight deliveries"
    );
    if tokio::time::timeout_at(plan.streams, life.sessions_ended())
        .await
        .is_err()
    {
        tracing::warn!("read streams did not end in time");
    }
    server_stop.cancel();
    if tokio::time::timeout_at(plan.connections, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?budget::CONNECTIONS_END, "connections still open; closing them");
        server.abort();
    }
    // Each close returns by the deadline (the Dapr layer cuts off one that does not).
    instances.close_all(plan.close).await;
    drop(socket);
    tracing::info!("shutdown complete");
    outcome
}

/// Installs SIGTERM, SIGINT and SIGHUP handlers now (before the socket is bound, so a signal
/// sent as soon as the socket answers is never lost) and returns a future that resolves
/// on the first of them.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // A closed terminal or a supervisor's hangup stops the daemon like SIGTERM, cleanly,
    // instead of the default action (exit 129 with the socket file left behind).
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = hup.recv() => tracing::info!("SIGHUP received"),
        }
    })
}

/// A gRPC channel to a Unix socket (used by `healthcheck`, the client and tests).
pub async fn connect_uds(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let path = path.into();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_resolution_order() {
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                set.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let (f, src) = resolve_socket_folder(
            Some("/flag".into()),
            env(&[("DAPR_COMPONENTS_SOCKETS_FOLDER", "/a")]),
        );
        assert_eq!((f.to_str().unwrap(), src), ("/flag", "--socket-folder"));
        let all = &[
            ("DAPR_COMPONENTS_SOCKETS_FOLDER", "/a"),
            ("DAPR_COMPONENT_SOCKETS_FOLDER", "/b"),
            ("DAPR_COMPONENT_SOCKET_FOLDER", "/c"),
        ];
        assert_eq!(resolve_socket_folder(None, env(all)).0, PathBuf::from("/a"));
        assert_eq!(
            resolve_socket_folder(None, env(&all[1..])).0,
            PathBuf::from("/b")
        );
        assert_eq!(
            resolve_socket_folder(None, env(&all[2..])).1,
            "DAPR_COMPONENT_SOCKET_FOLDER"
        );
        assert_eq!(
            resolve_socket_folder(None, env(&[])),
            (PathBuf::from(DEFAULT_SOCKET_FOLDER), "default")
        );
    }
}
