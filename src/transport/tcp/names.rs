//! Name server addresses: the `nameServerDomain` lookup and the Init probe.
//!
//! The probe speaks RocketMQ remoting to each name server: it asks for the route of the
//! default topic `TBW102` (what every client asks first) and expects a remoting response.
//! A port that accepts and hangs, answers something else (an HTTP server) or is a broker
//! (which answers "request code not supported") fails Init with a message saying which;
//! any other response (route found, topic not found, no permission) proves a name server.
//! A response frame is read up to [`PROBE_MAX_FRAME`] bytes.
//!
//! `nameServerDomain` works like rocketmq-client-go's `WithNameServerDomain` (HTTP resolver):
//! the binding GETs the URL exactly as given and reads a body of `host:port` entries separated
//! by `;` (commas, whitespace and an `http://` prefix are tolerated). The lookup is done once,
//! when the client starts (within Init's bound during Init: 2 s; otherwise 10 s, the Go
//! client's timeout). Re-Init the component to pick up a changed list.

use std::time::Duration;

use bytes::BytesMut;
use rocketmq_protocol::code::request_code::RequestCode;
use rocketmq_protocol::code::response_code::ResponseCode;
use rocketmq_protocol::protocol::header::client_request_header::GetRouteInfoRequestHeader;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metadata::parse_name_servers;
use crate::transport::TransportError;

/// Timeout of a `nameServerDomain` lookup outside Init (the Go client's value).
pub const DOMAIN_FETCH_TIMEOUT_FULL: Duration = Duration::from_secs(10);

/// Largest address-server response we read (the body is streamed and cut there).
pub const MAX_BODY: usize = 64 * 1024;

/// Largest response frame the Init probe reads from a name server.
pub const PROBE_MAX_FRAME: usize = 1024 * 1024;

/// GETs `url` and parses the body as a name server list.
pub async fn fetch_name_servers(
    url: &str,
    timeout: Duration,
) -> Result<Vec<String>, TransportError> {
    let shown_url = crate::text::redact_userinfo(url).into_owned();
    let unavailable = |reason: String| TransportError::Unavailable {
        address: shown_url.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| unavailable(format!("HTTP client: {e}")))?;
    let resp = client.get(url).send().await.map_err(|e| {
        unavailable(format!(
            "nameServerDomain lookup failed: {}",
            e.without_url()
        ))
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(unavailable(format!(
            "nameServerDomain lookup answered HTTP {status}"
        )));
    }
    let too_big = |n: u64| {
        unavailable(format!(
            "nameServerDomain answer is {n} bytes or more, more than {MAX_BODY}"
        ))
    };
    if let Some(n) = resp.content_length().filter(|n| *n > MAX_BODY as u64) {
        return Err(too_big(n));
    }
    // Streamed: a body without (or lying about) Content-Length is cut at the cap.
    let mut body: Vec<u8> = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        unavailable(format!(
            "nameServerDomain lookup failed: {}",
            e.without_url()
        ))
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_big((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    parse_list(&String::from_utf8_lossy(&body)).map_err(unavailable)
}

/// Parses an address server's answer (`a:1;b:2`, also `,`/whitespace separated).
pub fn parse_list(body: &str) -> Result<Vec<String>, String> {
    let joined = body
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(";");
    if joined.is_empty() {
        return Err("nameServerDomain answered an empty address list".into());
    }
    parse_name_servers("nameServerDomain", &joined).map_err(|_| {
        let shown: String = body.chars().take(200).collect();
        format!("nameServerDomain answered {shown:?}, expected host:port entries separated by ';'")
    })
}

/// Succeeds when at least one name server answers the route request (module docs) within
/// `timeout` (per address).
pub async fn probe_any(addrs: &[String], timeout: Duration) -> Result<(), TransportError> {
    let mut last = String::from("no name server configured");
    for addr in addrs {
        match tokio::time::timeout(timeout, probe_one(addr)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => {
                last = format!(
                    "{addr}: no remoting answer within {timeout:?} (is it a RocketMQ name server?)"
                )
            }
        }
    }
    Err(TransportError::Unavailable {
        address: addrs.join(";"),
        reason: format!("no name server reachable ({last})"),
    })
}

/// One route request to one address; `Err` says what answered instead.
async fn probe_one(addr: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    const OPAQUE: i32 = 0x0b1d_0001;
    let mut request = RemotingCommand::create_request_command(
        RequestCode::GetRouteinfoByTopic,
        GetRouteInfoRequestHeader::new("TBW102", Some(true)),
    )
    .set_opaque(OPAQUE);
    let mut out = BytesMut::new();
    request
        .try_fast_header_encode(&mut out)
        .map_err(|e| format!("cannot encode the probe: {e}"))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let mut buf = BytesMut::with_capacity(4096);
    let response = loop {
        match RemotingCommand::decode_with_max_frame_bytes(&mut buf, PROBE_MAX_FRAME) {
            Ok(Some(cmd)) => break cmd,
            Ok(None) => {}
            Err(_) => return Err(not_remoting(&buf)),
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "closed the connection without answering (is it a RocketMQ name server?)".into()
            } else {
                not_remoting(&buf)
            });
        }
    };
    if !response.is_response_type() || response.opaque() != OPAQUE {
        return Err("answered with a remoting request, not a response to the probe".into());
    }
    if response.code() == i32::from(ResponseCode::RequestCodeNotSupported) {
        return Err(
            "speaks RocketMQ remoting but does not serve routes: a broker port, not a name server \
             (the name server listens on 9876 by default)"
                .into(),
        );
    }
    Ok(())
}

fn not_remoting(buf: &[u8]) -> String {
    let head = String::from_utf8_lossy(&buf[..buf.len().min(40)]).into_owned();
    format!(
        "answered {} — not RocketMQ remoting (an HTTP server? the Aliyun MQ HTTP endpoint \
         goes into `endpoint` with accessProto http)",
        crate::text::shown(&head)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_server_answers() {
        assert_eq!(
            parse_list("127.0.0.1:9876;127.0.0.2:9876\n").unwrap(),
            vec!["127.0.0.1:9876", "127.0.0.2:9876"]
        );
        assert_eq!(parse_list(" a:1 , http://b:2").unwrap(), vec!["a:1", "b:2"]);
        assert!(parse_list("").is_err());
        assert!(parse_list("<html>oops</html>").is_err());
    }

    #[tokio::test]
    async fn probe_names_the_address() {
        // Port 1 on loopback is closed.
        let e = probe_any(&["127.0.0.1:1".into()], Duration::from_millis(500))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("127.0.0.1:1"), "{e}");
    }
}
