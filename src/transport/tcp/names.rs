//! Name server addresses: the `nameServerDomain` lookup and the reachability probe.
//!
//! `nameServerDomain` works like rocketmq-client-go's `WithNameServerDomain` (HTTP resolver):
//! the binding GETs the URL exactly as given and reads a body of `host:port` entries separated
//! by `;` (commas, whitespace and an `http://` prefix are tolerated). The lookup is done once,
//! when the client starts (within Init's bound during Init: 2 s; otherwise 10 s, the Go
//! client's timeout). Re-Init the component to pick up a changed list.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::metadata::parse_name_servers;
use crate::transport::TransportError;

/// Timeout of a `nameServerDomain` lookup outside Init (the Go client's value).
pub const DOMAIN_FETCH_TIMEOUT_FULL: Duration = Duration::from_secs(10);

/// Largest address-server response we read.
const MAX_BODY: usize = 64 * 1024;

/// GETs `url` and parses the body as a name server list.
pub async fn fetch_name_servers(
    url: &str,
    timeout: Duration,
) -> Result<Vec<String>, TransportError> {
    let unavailable = |reason: String| TransportError::Unavailable {
        address: url.to_string(),
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
    let body = resp.bytes().await.map_err(|e| {
        unavailable(format!(
            "nameServerDomain lookup failed: {}",
            e.without_url()
        ))
    })?;
    if body.len() > MAX_BODY {
        return Err(unavailable(format!(
            "nameServerDomain answer is {} bytes, more than {MAX_BODY}",
            body.len()
        )));
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

/// Succeeds when at least one name server accepts a TCP connection within `timeout`.
pub async fn probe_any(addrs: &[String], timeout: Duration) -> Result<(), TransportError> {
    let mut last = String::from("no name server configured");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {timeout:?}"),
        }
    }
    Err(TransportError::Unavailable {
        address: addrs.join(";"),
        reason: format!("no name server reachable ({last})"),
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
