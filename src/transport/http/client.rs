//! A signed Aliyun MQ HTTP API client: publish, consume (long poll) and ack.
//!
//! Requests follow the Go SDK's wire layout (spec §7): `Content-Type: text/xml;charset=utf-8`
//! and `Content-MD5` (hex-then-base64) on every request, query order
//! `consumer, [trans=order,] ns, numOfMessages, waitseconds, tag`, and a signature over exactly
//! the request-target that is sent. The secret key and the STS token never appear in logs,
//! errors or `Debug` output.

use std::{fmt, time::Duration};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url, header::HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::protocol::{self, AckError, ErrorBody, PublishMessage, PublishResult, ReceivedMessage};
use crate::text::shown;
use crate::transport::TransportError;

/// Characters left unescaped in a query value: Go's `url.QueryEscape` set (then `+` for space
/// is avoided by escaping space as `%20`, which every server form-decodes the same way).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Largest response body read for a publish, an ack or an error (they are a few hundred bytes).
pub const MAX_SMALL_RESPONSE: usize = 1024 * 1024;

/// Largest message body the Aliyun MQ HTTP API carries (4 MiB), as it appears in a consume
/// response: base64 (4/3) plus room for its properties and XML.
pub const MAX_MESSAGE_IN_RESPONSE: usize = 4 * 1024 * 1024 / 3 * 4 + 64 * 1024;

/// Largest consume response read for `numOfMessages = batch`: `batch` maximal messages plus
/// 64 KiB. A longer body is cut off there and the poll fails (nothing is acked, so the
/// messages come back after their invisibility time).
pub fn consume_response_cap(batch: u32) -> usize {
    batch.max(1) as usize * MAX_MESSAGE_IN_RESPONSE + 64 * 1024
}

/// How a request failed, before mapping to [`TransportError`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an `<Error>` (or an unparseable non-success response).
    #[error("{code}: {message} (HTTP {status}, request id {request_id})")]
    Server {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// The connection failed or was reset.
    #[error("{0}")]
    Network(String),
    /// No connection could be made at all (nothing was sent).
    #[error("{0}")]
    Connect(String),
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The response body did not parse.
    #[error("unexpected response (HTTP {status}): {reason}")]
    Protocol { status: u16, reason: String },
}

impl ApiError {
    /// The server's error code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Maps to the transport's error type.
    pub fn into_transport(self, what: &'static str, address: &str) -> TransportError {
        match self {
            ApiError::Server {
                status, ref code, ..
            } if status == 401
                || status == 403
                || matches!(
                    code.as_str(),
                    "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied"
                ) =>
            {
                TransportError::Unauthenticated {
                    address: address.to_string(),
                    reason: self.to_string(),
                }
            }
            ApiError::Server { ref code, .. } if code == "TopicNotExist" => {
                TransportError::NotFound(format!("{what}: {self}"))
            }
            ApiError::Server { status, .. } if status >= 500 => TransportError::Unavailable {
                address: address.to_string(),
                reason: self.to_string(),
            },
            ApiError::Server { .. } | ApiError::Protocol { .. } => {
                TransportError::Rejected(format!("{what}: {self}"))
            }
            ApiError::Network(reason) | ApiError::Connect(reason) => TransportError::Unavailable {
                address: address.to_string(),
                reason,
            },
            ApiError::Timeout(after) => TransportError::Timeout {
                what,
                after,
                address: address.to_string(),
            },
        }
    }
}

/// What an ack achieved.
#[derive(Debug, Default)]
pub struct AckOutcome {
    /// Handles the server reported as failed.
    pub failed: Vec<AckError>,
}

/// Credentials; `Debug` shows the access key only.
pub struct Credentials {
    /// AccessKeyId.
    pub access_key: String,
    /// AccessKeySecret.
    pub secret_key: SecretString,
    /// STS token, sent unsigned as `security-token`.
    pub security_token: Option<SecretString>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"[REDACTED]")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// One endpoint + credentials + instance.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash.
    endpoint: String,
    creds: Credentials,
    instance_id: Option<String>,
    user_agent: String,
}

/// Parameters of one consume call.
#[derive(Debug, Clone)]
pub struct ConsumeParams<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// 1..=16.
    pub batch: u32,
    /// 0..=30.
    pub wait_seconds: u32,
    /// Tag expression, `None` for all tags.
    pub tag: Option<&'a str>,
    /// `trans=order`.
    pub orderly: bool,
}

impl Client {
    /// Builds a client; does no I/O. The endpoint must be `http(s)://host[:port]` (a trailing
    /// `/` is ignored).
    pub fn new(
        endpoint: &str,
        creds: Credentials,
        instance_id: Option<String>,
    ) -> Result<Client, TransportError> {
        let invalid = |reason: String| TransportError::Config {
            key: "endpoint".into(),
            reason,
        };
        let quoted = shown(endpoint);
        let url = Url::parse(endpoint).map_err(|e| invalid(format!("{quoted}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "{quoted}: expected http://host[:port] or https://host[:port]"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(format!(
                "{quoted}: credentials in the URL are not used by the Aliyun MQ HTTP API \
                 (requests are signed with accessKey/secretKey); remove them"
            )));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(invalid(format!(
                "{quoted}: the Aliyun MQ HTTP API lives at the endpoint root; remove the path"
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(50))
            .http1_only()
            .build()
            .map_err(|e| TransportError::Unavailable {
                address: base.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            endpoint: base,
            creds,
            instance_id,
            user_agent: format!("rocketmq-binding/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// The endpoint, for error messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn ns_param(&self, q: &mut String) {
        if let Some(ns) = &self.instance_id {
            q.push_str("&ns=");
            q.push_str(&esc(ns));
        }
    }

    /// Sends one signed request; returns status and body.
    async fn call(
        &self,
        method: Method,
        target: &str,
        body: String,
        timeout: Duration,
        max_response: usize,
    ) -> Result<(StatusCode, String), ApiError> {
        let url = Url::parse(&format!("{}{}", self.endpoint, target))
            .map_err(|e| ApiError::Connect(format!("bad request URL: {e}")))?;
        // Sign exactly what is sent, after the URL parser's own normalisation.
        let resource = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_string(),
        };
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let md5 = protocol::content_md5(body.as_bytes());
        let mq = [("x-mq-version", protocol::MQ_VERSION)];
        let input = protocol::SignInput {
            method: method.as_str(),
            content_md5: Some(&md5),
            content_type: Some(protocol::CONTENT_TYPE),
            date: &date,
            mq_headers: &mq,
            resource: &resource,
        };
        let auth = protocol::authorization(
            &self.creds.access_key,
            self.creds.secret_key.expose_secret(),
            &input,
        );
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header("Date", &date)
            .header("x-mq-version", protocol::MQ_VERSION)
            .header("Content-Type", protocol::CONTENT_TYPE)
            .header("Content-MD5", &md5)
            .header("Authorization", sensitive(&auth)?)
            .header("User-Agent", &self.user_agent)
            .body(body);
        if let Some(token) = &self.creds.security_token {
            req = req.header("security-token", sensitive(token.expose_secret())?);
        }
        let mut resp = req.send().await.map_err(|e| classify(e, timeout))?;
        let status = resp.status();
        let too_big = |n: u64| ApiError::Protocol {
            status: status.as_u16(),
            reason: format!(
                "response body of {n} bytes or more; at most {max_response} are read for this request"
            ),
        };
        if let Some(n) = resp.content_length().filter(|n| *n > max_response as u64) {
            return Err(too_big(n));
        }
        // Streamed under the cap: a body without (or lying about) Content-Length stops there.
        let mut raw: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, timeout))? {
            if raw.len() + chunk.len() > max_response {
                return Err(too_big((raw.len() + chunk.len()) as u64));
            }
            raw.extend_from_slice(&chunk);
        }
        let text = match String::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok((status, text))
    }

    /// `POST /topics/{topic}/messages`.
    pub async fn publish(
        &self,
        topic: &str,
        msg: &PublishMessage,
        timeout: Duration,
    ) -> Result<PublishResult, ApiError> {
        let mut target = format!("/topics/{topic}/messages");
        if let Some(ns) = &self.instance_id {
            target.push_str("?ns=");
            target.push_str(&esc(ns));
        }
        let (status, body) = self
            .call(
                Method::POST,
                &target,
                msg.to_xml(),
                timeout,
                MAX_SMALL_RESPONSE,
            )
            .await?;
        if status.is_success() {
            return PublishResult::from_xml(&body).map_err(|e| ApiError::Protocol {
                status: status.as_u16(),
                reason: e.to_string(),
            });
        }
        Err(server_error(status, &body))
    }

    /// `GET /topics/{topic}/messages` (long poll). `Ok(empty)` means no message.
    pub async fn consume(&self, p: &ConsumeParams<'_>) -> Result<Vec<ReceivedMessage>, ApiError> {
        let mut q = format!("consumer={}", esc(p.group));
        if p.orderly {
            q.push_str("&trans=order");
        }
        self.ns_param(&mut q);
        let batch = p.batch.clamp(1, protocol::MAX_BATCH);
        q.push_str(&format!("&numOfMessages={batch}"));
        let wait = p.wait_seconds.min(protocol::MAX_WAIT_SECONDS);
        if wait > 0 {
            q.push_str(&format!("&waitseconds={wait}"));
        }
        if let Some(tag) = p.tag.filter(|t| !t.is_empty() && *t != "*") {
            q.push_str("&tag=");
            q.push_str(&esc(tag));
        }
        let target = format!("/topics/{}/messages?{q}", p.topic);
        let timeout = Duration::from_secs(u64::from(wait) + 5);
        let (status, body) = self
            .call(
                Method::GET,
                &target,
                String::new(),
                timeout,
                consume_response_cap(batch),
            )
            .await?;
        if status.is_success() {
            return protocol::messages_from_xml(&body).map_err(|e| ApiError::Protocol {
                status: status.as_u16(),
                reason: e.to_string(),
            });
        }
        let err = server_error(status, &body);
        if err.code() == Some("MessageNotExist") {
            return Ok(Vec::new());
        }
        Err(err)
    }

    /// `DELETE /topics/{topic}/messages` with up to 16 handles. Per-handle failures are
    /// returned in [`AckOutcome::failed`]; request-level failures are errors.
    pub async fn ack(
        &self,
        topic: &str,
        group: &str,
        handles: &[String],
        timeout: Duration,
    ) -> Result<AckOutcome, ApiError> {
        let mut q = format!("consumer={}", esc(group));
        self.ns_param(&mut q);
        let target = format!("/topics/{topic}/messages?{q}");
        let body = protocol::receipt_handles_to_xml(handles);
        let (status, text) = self
            .call(Method::DELETE, &target, body, timeout, MAX_SMALL_RESPONSE)
            .await?;
        if status.is_success() {
            return Ok(AckOutcome::default());
        }
        if protocol::root_name(&text).as_deref() == Some("Errors") {
            let failed = protocol::ack_errors_from_xml(&text).map_err(|e| ApiError::Protocol {
                status: status.as_u16(),
                reason: e.to_string(),
            })?;
            return Ok(AckOutcome { failed });
        }
        Err(server_error(status, &text))
    }
}

/// A header value marked sensitive (never printed by the HTTP stack).
fn sensitive(v: &str) -> Result<HeaderValue, ApiError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| {
        ApiError::Connect("a credential contains characters not allowed in an HTTP header".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// Percent-encodes a query value.
fn esc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn server_error(status: StatusCode, body: &str) -> ApiError {
    match ErrorBody::from_xml(body) {
        Ok(e) if !e.code.is_empty() => ApiError::Server {
            status: status.as_u16(),
            code: e.code,
            message: e.message,
            request_id: e.request_id,
        },
        _ => {
            let snippet: String = body.chars().take(200).collect();
            if status.is_server_error() || status.as_u16() == 403 || status.as_u16() == 401 {
                ApiError::Server {
                    status: status.as_u16(),
                    code: status
                        .canonical_reason()
                        .unwrap_or("HTTP error")
                        .to_string(),
                    message: snippet,
                    request_id: String::new(),
                }
            } else {
                ApiError::Protocol {
                    status: status.as_u16(),
                    reason: format!("not an <Error> document: {snippet:?}"),
                }
            }
        }
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> ApiError {
    // reqwest's messages carry the URL (no secrets: those travel in headers only).
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ApiError::Timeout(timeout)
    } else if e.is_connect() {
        ApiError::Connect(reason)
    } else {
        ApiError::Network(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key: "ak".into(),
            secret_key: SecretString::from("very-secret-value"),
            security_token: Some(SecretString::from("sts-token-value")),
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Client::new("http://127.0.0.1:1", creds(), None).unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("very-secret-value") && !d.contains("sts-token-value"),
            "{d}"
        );
        assert!(d.contains("[REDACTED]"));
    }

    #[test]
    fn endpoint_validation() {
        assert!(Client::new("http://h:1/", creds(), None).is_ok());
        for bad in ["h:1", "ftp://h", "http://h/path", "http://h/?x=1"] {
            let e = Client::new(bad, creds(), None).unwrap_err();
            assert!(e.to_string().contains("endpoint"), "{bad}: {e}");
        }
    }

    #[test]
    fn query_escaping_matches_the_sdks_for_tags() {
        assert_eq!(esc("TagA||TagB"), "TagA%7C%7CTagB");
        assert_eq!(esc("a b*"), "a%20b%2A");
    }
}
