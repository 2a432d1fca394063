//! The Aliyun MQ HTTP emulator behind the `aliyun-mq-emulator` binary (spec §6).
//!
//! A local stand-in for Alibaba Cloud RocketMQ 4.x's HTTP endpoint, for development and tests
//! without a cloud account. It speaks the protocol exactly as the official SDKs expect it
//! (proved in CI by `scripts/http-sdk-fidelity.sh` with the unmodified Python and Node SDKs):
//!
//! * `POST|GET|DELETE /topics/{topic}/messages`, with instances (`ns`) and topics created on
//!   first use; consumer groups progress independently; anything else is `InvalidRequestURL`.
//! * Long poll (`waitseconds` ≤ 30, answered as soon as any message is available), tag
//!   filters (`A||B`, `*`), ordered consume (`trans=order`: a sharding key with a message in
//!   flight is held back), timer messages (`__STARTDELIVERTIME`), transactional half messages
//!   (`__TransCheckT`, `trans=pop|commit|rollback`).
//! * Invisibility and redelivery: an un-acked message comes back after the invisibility time
//!   with the same message id, a new receipt handle, `ConsumedTimes + 1`; the old handle is
//!   then dead (`MessageNotExist`).
//! * Signature verification against the configured keys (constant time), `Content-MD5`
//!   checks, and the error XML, headers and status codes of spec §1.7 / §2. The server side of
//!   the wire format (verification, request parsing, response writing) is [`wire`]; what the
//!   client shares with it stays in [`crate::transport::http::protocol`].
//!
//! State is in memory only. The server binds loopback addresses only.
//!
//! Rust tests start it in-process with [`spawn`] on `127.0.0.1:0`.

mod state;
pub mod wire;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header::HeaderValue,
    server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::state::{AckMode, Mode, State, Timeouts};
use crate::transport::http::protocol::{self, ErrorBody, PublishResult};

/// Largest request body accepted (a message is at most 4 MiB; XML escaping adds some).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Allowed clock skew when the check is on.
const MAX_SKEW: Duration = Duration::from_secs(900);

/// One access key the emulator accepts.
#[derive(Debug, Clone)]
pub struct Credential {
    /// AccessKeyId.
    pub access_key: String,
    /// AccessKeySecret.
    pub secret_key: SecretString,
    /// If set, requests must carry this `security-token`.
    pub security_token: Option<SecretString>,
}

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (loopback only).
    pub listen: SocketAddr,
    /// Accepted keys.
    pub credentials: Vec<Credential>,
    /// Invisibility after a normal consume.
    pub invisibility: Duration,
    /// Invisibility after an ordered consume.
    pub order_invisibility: Duration,
    /// Validity of a transaction-check (`trans=pop`) handle.
    pub pop_invisibility: Duration,
    /// Reject requests whose `Date` is more than 15 minutes off.
    pub check_clock_skew: bool,
}

impl Config {
    /// A config with one key and the default timeouts (300 s / 60 s / 10 s).
    pub fn new(listen: SocketAddr, access_key: &str, secret_key: &str) -> Config {
        Config {
            listen,
            credentials: vec![Credential {
                access_key: access_key.to_string(),
                secret_key: SecretString::from(secret_key.to_string()),
                security_token: None,
            }],
            invisibility: Duration::from_secs(300),
            order_invisibility: Duration::from_secs(60),
            pop_invisibility: Duration::from_secs(10),
            check_clock_skew: false,
        }
    }
}

struct Shared {
    config: Config,
    state: Mutex<State>,
    changed: Notify,
    cancel: CancellationToken,
}

/// A running emulator. Dropping it stops it too.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Emulator {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Messages stored so far.
    pub fn message_count(&self) -> usize {
        self.shared
            .state
            .lock()
            .map(|s| s.message_count())
            .unwrap_or(0)
    }

    /// Stops accepting, drops every connection (in-flight long polls included) and waits for
    /// the tasks to end.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Not a loopback address.
    #[error("refusing to listen on {0}: the emulator binds loopback addresses only")]
    NotLoopback(SocketAddr),
    /// No credentials configured.
    #[error("at least one access key is required")]
    NoCredentials,
    /// Binding failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds and starts serving in the current Tokio runtime.
pub async fn spawn(config: Config) -> Result<Emulator, StartError> {
    if !config.listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(config.listen));
    }
    if config.credentials.is_empty() {
        return Err(StartError::NoCredentials);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(State::default()),
        changed: Notify::new(),
        cancel: CancellationToken::new(),
    });
    let tracker = TaskTracker::new();
    let t2 = tracker.clone();
    let sh = shared.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = sh.cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let sh2 = sh.clone();
            let cancel = sh.cancel.clone();
            t2.spawn(async move {
                let svc = service_fn(move |req| {
                    let sh3 = sh2.clone();
                    async move { Ok::<_, Infallible>(handle(&sh3, req).await) }
                });
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    r = conn => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    _ = cancel.cancelled() => {}
                }
            });
        }
    });
    tracing::info!(%addr, "aliyun-mq-emulator listening");
    Ok(Emulator {
        addr,
        shared,
        tracker,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Ctx {
    request_id: String,
    host_id: String,
}

fn xml_response(ctx: &Ctx, status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static(protocol::CONTENT_TYPE),
    );
    add_common(ctx, h);
    r
}

fn add_common(ctx: &Ctx, h: &mut hyper::HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-mq-request-id", v);
    }
    h.insert(
        "x-mq-version",
        HeaderValue::from_static(protocol::MQ_VERSION),
    );
}

fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = wire::error_to_xml(&ErrorBody {
        code: code.to_string(),
        message: message.to_string(),
        request_id: ctx.request_id.clone(),
        host_id: ctx.host_id.clone(),
    });
    xml_response(
        ctx,
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(sh: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().simple().to_string()[..24].to_ascii_uppercase();
    let host_id = format!(
        "http://{}",
        header(&req, "host")
            .map(|h| h.rsplit_once(':').map_or(h, |(a, _)| a))
            .unwrap_or("127.0.0.1")
    );
    let ctx = Ctx {
        request_id,
        host_id,
    };
    let resp = serve(sh, &ctx, req).await;
    tracing::debug!(status = resp.status().as_u16(), request_id = %ctx.request_id, "request served");
    resp
}

async fn serve(sh: &Shared, ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    // Collect every header the checks need before consuming the body.
    let auth = header(&req, "authorization").map(str::to_string);
    let date = header(&req, "date").map(str::to_string);
    let ctype = header(&req, "content-type").map(str::to_string);
    let cmd5 = header(&req, "content-md5").map(str::to_string);
    let token = header(&req, "security-token").map(str::to_string);
    let mq: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-mq-"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();

    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                &format!("The request body could not be read: {e}."),
            );
        }
    };

    // --- Authentication (spec §2) ---
    let Some(auth) = auth else {
        return error(
            ctx,
            400,
            "MissingAuthorizationHeader",
            "The Authorization header is missing.",
        );
    };
    let Some((ak, sig)) = wire::parse_authorization(&auth) else {
        return error(
            ctx,
            400,
            "InvalidAuthorizationHeader",
            "The Authorization header is not of the form \"MQ AccessKeyId:Signature\".",
        );
    };
    let Some(date) = date else {
        return error(ctx, 400, "MissingDateHeader", "The Date header is missing.");
    };
    let Ok(when) = httpdate::parse_http_date(&date) else {
        return error(
            ctx,
            400,
            "InvalidDateHeader",
            "The Date header is not an RFC 1123 date.",
        );
    };
    if sh.config.check_clock_skew {
        let now = SystemTime::now();
        let skew = now
            .duration_since(when)
            .or_else(|_| when.duration_since(now))
            .unwrap_or_default();
        if skew > MAX_SKEW {
            return error(
                ctx,
                408,
                "TimeExpired",
                "The request Date differs from the server time by more than 15 minutes.",
            );
        }
    }
    let Some(cred) = sh.config.credentials.iter().find(|c| c.access_key == ak) else {
        return error(
            ctx,
            403,
            "InvalidAccessKeyId",
            "The access key id you provided does not exist in our records.",
        );
    };
    let mq_refs: Vec<(&str, &str)> = mq.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sts = protocol::string_to_sign(&protocol::SignInput {
        method: method.as_str(),
        content_md5: cmd5.as_deref(),
        content_type: ctype.as_deref(),
        date: &date,
        mq_headers: &mq_refs,
        resource: &target,
    });
    if !wire::verify_signature(cred.secret_key.expose_secret(), &sts, sig) {
        return error(
            ctx,
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        );
    }
    if let Some(expected) = &cred.security_token
        && token.as_deref() != Some(expected.expose_secret())
    {
        return error(
            ctx,
            403,
            "AccessDenied",
            "The security token is missing or not valid for this access key.",
        );
    }
    if let Some(v) = &cmd5
        && !wire::content_md5_matches(v, &body)
    {
        return error(
            ctx,
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
        );
    }

    // --- Routing ---
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let topic = path
        .strip_prefix("/topics/")
        .and_then(|r| r.strip_suffix("/messages"))
        .filter(|t| !t.is_empty() && !t.contains('/'));
    let Some(topic) = topic else {
        return error(
            ctx,
            400,
            "InvalidRequestURL",
            "The request URL is not valid: expected /topics/{TopicName}/messages.",
        );
    };
    let topic = percent_encoding::percent_decode_str(topic)
        .decode_utf8_lossy()
        .into_owned();
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let ns = q.get("ns").cloned().unwrap_or_default();
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(ctx, 400, "MalformedXML", "The request body is not UTF-8.");
    };
    match method {
        Method::POST => publish(sh, ctx, &ns, &topic, text),
        Method::GET => consume(sh, ctx, &ns, &topic, &q).await,
        Method::DELETE => ack(sh, ctx, &ns, &topic, &q, text),
        _ => error(
            ctx,
            400,
            "InvalidRequestURL",
            "The request method is not supported for this resource.",
        ),
    }
}

fn publish(sh: &Shared, ctx: &Ctx, ns: &str, topic: &str, text: &str) -> Response<Full<Bytes>> {
    let msg = match wire::publish_message_from_xml(text) {
        Ok(m) => m,
        Err(protocol::XmlError::Missing(what)) => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                &format!("The element {what} is required."),
            );
        }
        Err(e) => {
            return error(
                ctx,
                400,
                "MalformedXML",
                &format!("The XML you provided was not well-formed: {e}."),
            );
        }
    };
    let r = match sh.state.lock() {
        Ok(mut st) => st.publish(ns, topic, msg, now_ms()),
        Err(_) => return error(ctx, 500, "InternalError", "Internal state error."),
    };
    match r {
        Ok((message_id, body_md5, receipt_handle)) => {
            sh.changed.notify_waiters();
            let body = wire::publish_result_to_xml(&PublishResult {
                message_id,
                body_md5,
                receipt_handle,
            });
            xml_response(ctx, StatusCode::CREATED, body)
        }
        Err(state::PublishRefused(why)) => error(ctx, 400, "InvalidArgument", &why),
    }
}

async fn consume(
    sh: &Shared,
    ctx: &Ctx,
    ns: &str,
    topic: &str,
    q: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let Some(group) = q.get("consumer").filter(|g| !g.is_empty()) else {
        return error(
            ctx,
            400,
            "InvalidArgument",
            "The consumer parameter is required.",
        );
    };
    let n = match q.get("numOfMessages").map(|v| v.parse::<u32>()) {
        Some(Ok(n)) if (1..=protocol::MAX_BATCH).contains(&n) => n as usize,
        _ => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                "numOfMessages must be an integer from 1 to 16.",
            );
        }
    };
    let wait = match q.get("waitseconds").map(|v| v.parse::<u32>()) {
        None => 0,
        Some(Ok(w)) if w <= protocol::MAX_WAIT_SECONDS => w,
        _ => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                "waitseconds must be an integer from 0 to 30.",
            );
        }
    };
    let mode = match q.get("trans").map(String::as_str) {
        None | Some("") => Mode::Normal,
        Some("order") => Mode::Order,
        Some("pop") => Mode::Pop,
        Some(_) => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                "trans must be order or pop when consuming.",
            );
        }
    };
    let tag = q.get("tag").map(String::as_str);
    let timeouts = Timeouts {
        normal_ms: sh.config.invisibility.as_millis() as i64,
        order_ms: sh.config.order_invisibility.as_millis() as i64,
        pop_ms: sh.config.pop_invisibility.as_millis() as i64,
    };
    let deadline = Instant::now() + Duration::from_secs(u64::from(wait));
    loop {
        let notified = sh.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = now_ms();
        let sel = match sh.state.lock() {
            Ok(mut st) => st.consume(ns, topic, group, n, tag, mode, timeouts, now),
            Err(_) => return error(ctx, 500, "InternalError", "Internal state error."),
        };
        if !sel.messages.is_empty() {
            return xml_response(ctx, StatusCode::OK, wire::messages_to_xml(&sel.messages));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return error(ctx, 404, "MessageNotExist", "Message not exist.");
        }
        let mut sleep_for = left;
        if let Some(t) = sel.next_event_ms {
            let until = Duration::from_millis((t - now).max(1) as u64);
            sleep_for = sleep_for.min(until);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(sleep_for) => {}
            _ = sh.cancel.cancelled() => {
                return error(ctx, 503, "InternalError", "The server is shutting down.");
            }
        }
    }
}

fn ack(
    sh: &Shared,
    ctx: &Ctx,
    ns: &str,
    topic: &str,
    q: &HashMap<String, String>,
    text: &str,
) -> Response<Full<Bytes>> {
    let Some(group) = q.get("consumer").filter(|g| !g.is_empty()) else {
        return error(
            ctx,
            400,
            "InvalidArgument",
            "The consumer parameter is required.",
        );
    };
    let mode = match q.get("trans").map(String::as_str) {
        None | Some("") => AckMode::Ack,
        Some("commit") => AckMode::Commit,
        Some("rollback") => AckMode::Rollback,
        Some(_) => {
            return error(
                ctx,
                400,
                "InvalidArgument",
                "trans must be commit or rollback when acknowledging.",
            );
        }
    };
    let handles = match wire::receipt_handles_from_xml(text) {
        Ok(h) => h,
        Err(e) => {
            return error(
                ctx,
                400,
                "MalformedXML",
                &format!("The XML you provided was not well-formed: {e}."),
            );
        }
    };
    if handles.is_empty() {
        return error(
            ctx,
            400,
            "MissingReceiptHandle",
            "At least one ReceiptHandle is required.",
        );
    }
    if handles.len() > protocol::MAX_ACK_HANDLES {
        return error(
            ctx,
            400,
            "InvalidArgument",
            "At most 16 receipt handles per request.",
        );
    }
    let errors = match sh.state.lock() {
        Ok(mut st) => st.ack(ns, topic, group, &handles, mode, now_ms()),
        Err(_) => return error(ctx, 500, "InternalError", "Internal state error."),
    };
    if errors.len() < handles.len() {
        // Something changed (acks unblock ordered partitions, commits make messages visible).
        sh.changed.notify_waiters();
    }
    if errors.is_empty() {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        add_common(ctx, r.headers_mut());
        return r;
    }
    xml_response(ctx, StatusCode::NOT_FOUND, wire::ack_errors_to_xml(&errors))
}

/// Command line of `aliyun-mq-emulator`.
#[derive(Debug, Parser)]
#[command(
    name = "aliyun-mq-emulator",
    version,
    about = "A local Aliyun MQ (RocketMQ 4.x) HTTP API server for development and tests"
)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(
        long,
        env = "ALIYUN_MQ_EMULATOR_LISTEN",
        default_value = "127.0.0.1:9880"
    )]
    pub listen: SocketAddr,
    /// The AccessKeyId clients must sign with.
    #[arg(long, env = "ALIYUN_MQ_EMULATOR_ACCESS_KEY")]
    pub access_key: String,
    /// The AccessKeySecret clients must sign with.
    #[arg(long, env = "ALIYUN_MQ_EMULATOR_SECRET_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// If set, requests must carry this STS `security-token`.
    #[arg(
        long,
        env = "ALIYUN_MQ_EMULATOR_SECURITY_TOKEN",
        hide_env_values = true
    )]
    pub security_token: Option<String>,
    /// Seconds an un-acked message stays invisible after a normal consume.
    #[arg(long, default_value_t = 300)]
    pub invisibility_seconds: u64,
    /// Seconds an un-acked message stays invisible after an ordered consume.
    #[arg(long, default_value_t = 60)]
    pub order_invisibility_seconds: u64,
    /// Seconds a transaction-check (trans=pop) handle stays valid.
    #[arg(long, default_value_t = 10)]
    pub pop_invisibility_seconds: u64,
    /// Reject requests whose Date is more than 15 minutes off (408 TimeExpired).
    #[arg(long)]
    pub check_clock_skew: bool,
}

impl Args {
    /// The emulator config these flags describe.
    pub fn config(&self) -> Config {
        Config {
            listen: self.listen,
            credentials: vec![Credential {
                access_key: self.access_key.clone(),
                secret_key: SecretString::from(self.secret_key.clone()),
                security_token: self.security_token.clone().map(SecretString::from),
            }],
            invisibility: Duration::from_secs(self.invisibility_seconds.max(1)),
            order_invisibility: Duration::from_secs(self.order_invisibility_seconds.max(1)),
            pop_invisibility: Duration::from_secs(self.pop_invisibility_seconds.max(1)),
            check_clock_skew: self.check_clock_skew,
        }
    }
}

/// Entry point of the `aliyun-mq-emulator` binary: runs until SIGINT or SIGTERM.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aliyun-mq-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let emu = match spawn(args.config()).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("aliyun-mq-emulator: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("aliyun-mq-emulator listening on {}", emu.local_addr());
        wait_for_signal().await;
        tracing::info!("shutting down");
        emu.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
