//! Command line: `rocketmq-binding [serve flags]` runs the daemon; `rocketmq-binding
//! healthcheck` dials the socket and asks `grpc.health.v1.Health/Check` (for Kubernetes
//! exec probes). Every flag has an environment twin; the socket folder's twins are the
//! Dapr variables (see [`crate::daemon::SOCKET_FOLDER_ENV`]).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    daemon::{self, DEFAULT_SOCKET_NAME, ServeOptions, SocketOptions},
    metadata,
    telemetry::{self, LogFormat},
    transport::DefaultConnector,
};

/// Dapr pluggable input/output binding for Apache RocketMQ and Alibaba Cloud RocketMQ.
#[derive(Debug, Parser)]
#[command(name = "rocketmq-binding", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    socket: SocketArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 if the daemon on the socket reports SERVING (gRPC health), 1 otherwise.
    Healthcheck {
        #[command(flatten)]
        socket: SocketArgs,
        /// How long to wait for the answer.
        #[arg(long, env = "ROCKETMQ_BINDING_HEALTHCHECK_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Speak the socket like daprd: Init a Component from its YAML, then send or read.
    Client {
        #[command(flatten)]
        socket: SocketArgs,
        /// Dapr Component YAML whose metadata is sent with Init; its `metadata.name` is the instance.
        #[arg(long, env = "ROCKETMQ_BINDING_COMPONENT")]
        component: PathBuf,
        /// Value of a secretKeyRef, as SECRET/KEY=VALUE (else env ROCKETMQ_SECRET_<SECRET>_<KEY>).
        #[arg(long = "secret", value_name = "SECRET/KEY=VALUE")]
        secrets: Vec<String>,
        #[command(subcommand)]
        action: ClientAction,
    },
}

#[derive(Debug, Subcommand)]
enum ClientAction {
    /// Send one message (operation `create`) and print the response metadata.
    Send {
        /// Message body; `-` or absent reads standard input.
        data: Option<String>,
        /// Read the body from this file.
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
        /// Request metadata KEY=VALUE (repeatable), e.g. rocketmq-tag=TagA.
        #[arg(long = "metadata", short = 'm', value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Read deliveries, print each as a JSON line, ack them.
    Read {
        /// Stop after this many successful acks (0: until idle).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Ack every Nth delivery with an error, to exercise redelivery (0: never).
        #[arg(long, default_value_t = 0)]
        fail_every: u64,
        /// Stop when nothing arrives for this long.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        idle: Duration,
    },
}

/// Where the socket is.
#[derive(Debug, Args, Clone)]
pub struct SocketArgs {
    /// Socket folder [env: DAPR_COMPONENTS_SOCKETS_FOLDER, DAPR_COMPONENT_SOCKETS_FOLDER,
    /// DAPR_COMPONENT_SOCKET_FOLDER, in that order] [default: /tmp/dapr-components-sockets]
    #[arg(long)]
    socket_folder: Option<PathBuf>,
    /// Socket name without `.sock`; daprd registers it as `bindings.<name>`.
    #[arg(long, env = "ROCKETMQ_BINDING_SOCKET_NAME", default_value = DEFAULT_SOCKET_NAME)]
    socket_name: String,
    /// Octal file mode of the socket (daprd may run as another user).
    #[arg(long, env = "ROCKETMQ_BINDING_SOCKET_MODE", default_value = "0660", value_parser = parse_mode)]
    socket_mode: u32,
}

impl SocketArgs {
    fn resolve(&self) -> (SocketOptions, &'static str) {
        let (folder, source) =
            daemon::resolve_socket_folder(self.socket_folder.clone(), |k| std::env::var(k).ok());
        (
            SocketOptions {
                folder,
                name: self.socket_name.clone(),
                mode: self.socket_mode,
            },
            source,
        )
    }
}

/// How the daemon runs.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Log format (verbosity: RUST_LOG, default info).
    #[arg(
        long,
        env = "ROCKETMQ_BINDING_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// On SIGTERM/SIGINT, how long to wait for in-flight acks before releasing them.
    #[arg(long, env = "ROCKETMQ_BINDING_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// How long an input Component keeps its consumer while daprd has no Read stream open
    /// on it (the app is unhealthy, or the Component was removed by a hot reload); the next
    /// Read starts a consumer again.
    #[arg(long, env = "ROCKETMQ_BINDING_INPUT_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    input_idle_timeout: Duration,
    /// Connections open at once on the socket; one more is closed at once and logged (daprd
    /// opens a handful per daemon).
    #[arg(long, env = "ROCKETMQ_BINDING_MAX_CONNECTIONS", default_value_t = daemon::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,
    /// A socket connection from which nothing was read for this long is closed (live
    /// daprd connections answer the daemon's HTTP/2 keepalive pings every 30 s).
    #[arg(long, env = "ROCKETMQ_BINDING_CONN_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    conn_idle_timeout: Duration,
    /// Component instances (inputs plus outputs) one daemon holds; an Init beyond fails with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "ROCKETMQ_BINDING_MAX_INSTANCES", default_value_t = crate::dapr::instances::DEFAULT_MAX_INSTANCES as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_instances: u32,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this address (off unless set),
    /// e.g. 127.0.0.1:9464.
    #[arg(long, env = "ROCKETMQ_BINDING_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Async worker threads, shared by the gRPC server and the RocketMQ clients (listeners
    /// that wait for the app's ack use separate blocking threads). One is the sidecar
    /// default: the daemon spends 47–107 µs of CPU per sent message in the benchmark
    /// (README, Benchmark; `scripts/bench.sh`), so one core carries roughly 10–20k
    /// messages/s; raise it beyond that.
    #[arg(long, env = "ROCKETMQ_BINDING_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    worker_threads: u16,
}

/// glibc gives every thread that allocates its own arena (up to 8 × cores); the client
/// runtimes' many short-lived threads then leave fragmented, never-returned arenas behind
/// (measured: 92 MB peak RSS after six consumer restarts, 44 MB with two arenas). Two arenas
/// are plenty for a sidecar. An explicit `MALLOC_ARENA_MAX` still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called once at startup before other threads exist; mallopt only tunes
        // glibc's allocator parameters.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode such as 0660"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    metadata::parse_duration("duration", s).map_err(|e| e.to_string())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    limit_malloc_arenas();
    let workers = match cli.command {
        None => usize::from(cli.serve.worker_threads),
        Some(_) => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Healthcheck { socket, timeout }) => {
            runtime.block_on(healthcheck(socket, timeout))
        }
        Some(Command::Client {
            socket,
            component,
            secrets,
            action,
        }) => runtime.block_on(client(socket, component, secrets, action)),
        None => {
            telemetry::init(cli.serve.log_format);
            runtime.block_on(serve(cli.socket, cli.serve))
        }
    }
}

async fn serve(socket: SocketArgs, args: ServeArgs) -> ExitCode {
    let (opts, source) = socket.resolve();
    let signal = match daemon::shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let bound = match daemon::bind(&opts) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        socket = %bound.path().display(),
        folder_from = %source,
        component_type = %format!("bindings.{}", opts.name.to_lowercase()),
        version = env!("CARGO_PKG_VERSION"),
        "socket ready"
    );
    let result = daemon::serve(
        bound,
        Arc::new(DefaultConnector),
        ServeOptions {
            shutdown_timeout: args.shutdown_timeout,
            metrics_addr: args.metrics_addr,
            input_idle_timeout: args.input_idle_timeout,
            max_connections: args.max_connections as usize,
            conn_idle_timeout: args.conn_idle_timeout,
            max_instances: args.max_instances as usize,
        },
        signal,
    )
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "daemon failed");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(socket: SocketArgs, timeout: Duration) -> ExitCode {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let (opts, _) = socket.resolve();
    let path = opts.path();
    let check = async {
        let channel = daemon::connect_uds(path.clone())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| format!("health check failed: {}", e.message()))?;
        Ok::<_, String>(resp.into_inner().status())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("SERVING {}", path.display());
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            println!("{} {}", status.as_str_name(), path.display());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("no answer from {} within {timeout:?}", path.display());
            ExitCode::FAILURE
        }
    }
}

async fn client(
    socket: SocketArgs,
    component: PathBuf,
    secrets: Vec<String>,
    action: ClientAction,
) -> ExitCode {
    use crate::client::{self, Payload, ReadOptions};
    let (opts, _) = socket.resolve();
    let path = opts.path();
    let result = async {
        let comp = client::load_component(&component, &secrets)?;
        match action {
            ClientAction::Send {
                data,
                file,
                metadata,
            } => {
                let payload = match (data, file) {
                    (_, Some(f)) => Payload::File(f),
                    (Some(d), None) if d != "-" => Payload::Bytes(d.into_bytes()),
                    _ => Payload::Stdin,
                };
                let md = client::send(&path, &comp, payload, &metadata).await?;
                for (k, v) in md {
                    println!("{k}={v}");
                }
            }
            ClientAction::Read {
                count,
                fail_every,
                idle,
            } => {
                let mut out = std::io::stdout();
                let (acked, failed) = client::read(
                    &path,
                    &comp,
                    ReadOptions {
                        count,
                        fail_every,
                        idle,
                    },
                    &mut out,
                )
                .await?;
                eprintln!("acked {acked}, failed {failed}");
            }
        }
        Ok::<_, client::ClientError>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
