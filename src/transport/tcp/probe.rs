//! Init probes that speak RocketMQ remoting: the name server check and the SQL92 check.
//!
//! **Name server.** Init asks each name server for the route of the default topic `TBW102`
//! (what every client asks first) and expects a remoting response. A port that accepts and
//! hangs, answers something else (an HTTP server) or is a broker (which answers "request code
//! not supported") fails Init with a message saying which; any other response (route found,
//! topic not found, no permission) proves a name server.
//!
//! **SQL92 subscription** (`rocketmq-sub-type: sql92`). The broker compiles a filter
//! expression only when a consumer registers it, so a typo used to surface at the first Read.
//! Init now asks a broker of each subscribed topic to check the subscription
//! (`CHECK_CLIENT_CONFIG`, what the Java push consumer does at start) and fails with the
//! broker's own reason (an invalid expression, or a broker without `enablePropertyFilter`).
//! A topic the name servers do not route yet is checked on a broker of the default topic
//! `TBW102`; with neither route (auto-create off and a new topic), or a broker that does not
//! implement the check, it is left to the consumer. Requests are signed like the client's when an access key is set.
//!
//! Each exchange is one request on its own connection; a response frame is read up to
//! [`MAX_FRAME`] bytes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use cheetah_string::CheetahString;
use rocketmq_protocol::code::request_code::RequestCode;
use rocketmq_protocol::code::response_code::ResponseCode;
use rocketmq_protocol::protocol::RemotingSerializable;
use rocketmq_protocol::protocol::body::check_client_request_body::CheckClientRequestBody;
use rocketmq_protocol::protocol::header::client_request_header::GetRouteInfoRequestHeader;
use rocketmq_protocol::protocol::heartbeat::subscription_data::SubscriptionData;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_transport::api::RPCHook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::compat;
use crate::transport::TransportError;

/// Largest response frame a probe reads.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Sends `request` to `addr` on a fresh connection and reads its response.
async fn exchange(
    addr: &str,
    mut request: RemotingCommand,
    hook: Option<&Arc<dyn RPCHook>>,
) -> Result<RemotingCommand, String> {
    const OPAQUE: i32 = 0x0b1d_0001;
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    request = request.set_opaque(OPAQUE);
    if let Some(h) = hook {
        let peer: SocketAddr = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        h.do_before_request(peer, &mut request)
            .map_err(|e| format!("cannot sign the probe: {e}"))?;
    }
    let mut out = BytesMut::new();
    request
        .try_fast_header_encode(&mut out)
        .map_err(|e| format!("cannot encode the probe: {e}"))?;
    if let Some(body) = request.body() {
        out.extend_from_slice(body);
    }
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let mut buf = BytesMut::with_capacity(4096);
    let response = loop {
        match RemotingCommand::decode_with_max_frame_bytes(&mut buf, MAX_FRAME) {
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
    Ok(response)
}

fn not_remoting(buf: &[u8]) -> String {
    let head = String::from_utf8_lossy(&buf[..buf.len().min(40)]).into_owned();
    format!(
        "answered {} — not RocketMQ remoting (an HTTP server? the Aliyun MQ HTTP endpoint \
         goes into `endpoint` with accessProto http)",
        crate::text::shown(&head)
    )
}

fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::create_request_command(
        RequestCode::GetRouteinfoByTopic,
        GetRouteInfoRequestHeader::new(topic, Some(true)),
    )
}

/// Succeeds when at least one name server answers the route request (module docs) within
/// `cap` per address, all by `deadline` (addresses not tried by then count as unreachable).
pub async fn probe_any(
    addrs: &[String],
    cap: Duration,
    deadline: tokio::time::Instant,
) -> Result<(), TransportError> {
    let mut last = String::from("no name server configured");
    for addr in addrs {
        let timeout = crate::transport::within(cap, deadline);
        if timeout.is_zero() {
            last = format!("{addr}: not tried, the probe's deadline passed");
            break;
        }
        match tokio::time::timeout(timeout, exchange(addr, route_request("TBW102"), None)).await {
            Ok(Ok(r)) if r.code() == i32::from(ResponseCode::RequestCodeNotSupported) => {
                last = format!(
                    "{addr}: speaks RocketMQ remoting but does not serve routes: a broker port, \
                     not a name server (the name server listens on 9876 by default)"
                );
            }
            Ok(Ok(_)) => return Ok(()),
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

/// What [`check_sql92`] needs of the subscription.
pub struct SqlSubscription<'a> {
    /// Name servers to ask for routes.
    pub name_servers: &'a [String],
    /// Topics as the broker knows them (namespace applied).
    pub topics: Vec<String>,
    /// Consumer group as the broker knows it (namespace applied).
    pub group: String,
    /// The SQL92 expression.
    pub expression: &'a str,
    /// Signs the requests (access key set).
    pub hook: Option<Arc<dyn RPCHook>>,
}

/// Asks a broker of every subscribed topic to check the SQL92 subscription (module docs).
/// `Err(Config)` carries the broker's reason; broker trouble is `Unavailable`.
pub async fn check_sql92(
    sub: &SqlSubscription<'_>,
    timeout: Duration,
) -> Result<(), TransportError> {
    for topic in &sub.topics {
        // The check compiles the expression and does not need the topic on that broker: a
        // topic the name servers do not route yet (a new one, or its registration still in
        // flight) is checked on a broker of the default topic instead.
        let broker = match master_of(sub, topic, timeout).await? {
            Some(b) => b,
            None => match master_of(sub, "TBW102", timeout).await? {
                Some(b) => b,
                None => {
                    tracing::debug!(topic, "SQL92 check skipped: no route to any broker yet");
                    continue;
                }
            },
        };
        let data = SubscriptionData {
            topic: CheetahString::from_string(topic.clone()),
            sub_string: CheetahString::from_string(sub.expression.to_string()),
            expression_type: CheetahString::from_static_str("SQL92"),
            ..Default::default()
        };
        let body = CheckClientRequestBody::new(
            format!("rocketmq-binding-init-check@{}", std::process::id()),
            sub.group.clone(),
            data,
        );
        let encoded = body.encode().map_err(|e| TransportError::Unavailable {
            address: broker.clone(),
            reason: format!("cannot encode the SQL92 check: {e}"),
        })?;
        let mut request = RemotingCommand::create_remoting_command(RequestCode::CheckClientConfig);
        request.set_body_mut_ref(encoded);
        let response = tokio::time::timeout(timeout, exchange(&broker, request, sub.hook.as_ref()))
            .await
            .map_err(|_| TransportError::Unavailable {
                address: broker.clone(),
                reason: format!("the SQL92 check got no answer within {timeout:?}"),
            })?
            .map_err(|reason| TransportError::Unavailable {
                address: broker.clone(),
                reason,
            })?;
        let code = response.code();
        tracing::debug!(%broker, topic, code, remark = ?response.remark(), "SQL92 subscription check");
        if code == i32::from(ResponseCode::Success) {
            continue;
        }
        if code == i32::from(ResponseCode::RequestCodeNotSupported) {
            // A broker without the check (not Apache's): the consumer finds out instead.
            continue;
        }
        let remark = response.remark().map(|r| r.to_string()).unwrap_or_default();
        if code == i32::from(ResponseCode::NoPermission) {
            return Err(TransportError::Unauthenticated {
                address: broker,
                reason: format!(
                    "the SQL92 check was refused: {}",
                    crate::text::shown(&remark)
                ),
            });
        }
        return Err(TransportError::Config {
            key: "rocketmq-sub-expression".into(),
            reason: format!(
                "the broker at {broker} rejected the subscription to `{topic}` (code {code}): {}",
                crate::text::shown(&remark)
            ),
        });
    }
    Ok(())
}

/// The master broker address of `topic`, or `None` when the name servers know no route yet.
async fn master_of(
    sub: &SqlSubscription<'_>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<String>, TransportError> {
    let mut last = String::new();
    for ns in sub.name_servers {
        let r = match tokio::time::timeout(timeout, exchange(ns, route_request(topic), None)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                last = format!("{ns}: {e}");
                continue;
            }
            Err(_) => {
                last = format!("{ns}: no answer within {timeout:?}");
                continue;
            }
        };
        if r.code() == i32::from(ResponseCode::TopicNotExist) {
            return Ok(None);
        }
        let body = r.body().map(|b| b.to_vec()).unwrap_or_default();
        let fixed = compat::route_with_acting_master(&body).unwrap_or_else(|| body.clone().into());
        let route = TopicRouteData::decode(&fixed).map_err(|e| TransportError::Unavailable {
            address: ns.clone(),
            reason: format!("route of `{topic}` does not decode: {e}"),
        })?;
        return Ok(route
            .broker_datas
            .iter()
            .find_map(|b| b.broker_addrs().get(&0).map(|a| a.to_string())));
    }
    Err(TransportError::Unavailable {
        address: sub.name_servers.join(";"),
        reason: format!("no name server answered the route request ({last})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_names_the_address() {
        // Port 1 on loopback is closed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let e = probe_any(
            &["127.0.0.1:1".into()],
            Duration::from_millis(500),
            deadline,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("127.0.0.1:1"), "{e}");
    }
}
