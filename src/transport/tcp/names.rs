//! Name server addresses: the `nameServerDomain` lookup (the Init probe that speaks to them is
//! [`super::probe`]).
//!
//! `nameServerDomain` works like rocketmq-client-go's `WithNameServerDomain` (HTTP resolver):
//! the binding GETs the URL exactly as given and reads a body of `host:port` entries separated
//! by `;` (commas, whitespace and an `http://` prefix are tolerated). The lookup is done once,
//! when the client starts (within Init's bound during Init: 2 s; otherwise 10 s, the Go
//! client's timeout). Re-Init the component to pick up a changed list.

use std::time::Duration;

use crate::metadata::parse_name_servers;
use crate::transport::TransportError;

/// Timeout of a `nameServerDomain` lookup outside Init (the Go client's value).
pub const DOMAIN_FETCH_TIMEOUT_FULL: Duration = Duration::from_secs(10);

/// Largest address-server response we read (the body is streamed and cut there).
pub const MAX_BODY: usize = 64 * 1024;

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
}
