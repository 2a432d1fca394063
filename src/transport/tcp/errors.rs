//! `ClientError` → [`TransportError`].
//!
//! The crate keeps a canonical condition (`unavailable`, `not_found`, …) and the broker's
//! response code but drops the broker's remark text, so the mapping works on those two.

use rocketmq_client_rust::{ClientError, MQBrokerException, MQClientException, SendResult};

use crate::transport::TransportError;

/// Broker response codes (Java `ResponseCode`) the mapping needs.
mod code {
    pub const SYSTEM_BUSY: i32 = 2;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const NO_MESSAGE: i32 = 208;
    /// Client-side: no route for the topic (Java `ClientErrorCode.NOT_FOUND_TOPIC_EXCEPTION`).
    pub const CLIENT_NOT_FOUND_TOPIC: i32 = 10005;
}

/// Maps a client error. `topic` names the topic of a send; `known_topic` says it accepted
/// sends before (then "no route" means its broker is gone, i.e. unavailable).
pub fn map(
    e: &ClientError,
    address: &str,
    topic: Option<&str>,
    known_topic: bool,
) -> TransportError {
    let condition = e.descriptor().condition().as_str();
    let code_name = e.descriptor().code().as_str();
    // The typed causes keep the code and the text the canonical error drops.
    let client_exc = e.source_ref::<MQClientException>();
    let broker_exc = e.source_ref::<MQBrokerException>();
    let detail = broker_exc
        .and_then(|b| b.error_message())
        .or_else(|| client_exc.and_then(|c| c.error_message()))
        .map(|m| {
            m.lines()
                .next()
                .unwrap_or_default()
                .trim()
                .trim_end_matches(',')
                .to_string()
        });
    let text = match &detail {
        Some(d) if !d.is_empty() => format!("{e}: {d}"),
        _ => e.to_string(),
    };
    let broker_code = e
        .broker_response_code()
        .or_else(|| broker_exc.map(|b| b.response_code()));
    let client_code = client_exc.map(|c| c.response_code());
    let lowered = text.to_ascii_lowercase();
    let auth = condition == "unauthenticated"
        || condition == "permission_denied"
        || broker_code == Some(code::NO_PERMISSION)
        || lowered.contains("authenticat")
        || code_name.contains("auth");
    if auth {
        return TransportError::Unauthenticated {
            address: address.to_string(),
            reason: format!("the broker rejected the credentials or permissions ({text})"),
        };
    }
    // A name server without the topic answers TOPIC_NOT_EXIST too; with auto-creation off the
    // Java broker registers no `TBW102` default topic, so the client's fallback lookup of that
    // route is what fails ("No topic route info in name server for the topic: TBW102").
    let not_found = broker_code == Some(code::TOPIC_NOT_EXIST)
        || client_code == Some(code::TOPIC_NOT_EXIST)
        || client_code == Some(code::CLIENT_NOT_FOUND_TOPIC)
        || detail.as_deref().is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("no route info")
                || d.contains("no topic route info")
                || d.contains("route was not found")
        })
        || broker_code == Some(code::SUBSCRIPTION_GROUP_NOT_EXIST)
        || condition == "not_found"
        || code_name.contains("not_found");
    if not_found {
        if known_topic {
            return TransportError::Unavailable {
                address: address.to_string(),
                reason: format!(
                    "no broker serves topic `{}` right now ({text})",
                    topic.unwrap_or_default()
                ),
            };
        }
        return TransportError::NotFound(match topic {
            Some(t) => format!(
                "topic `{t}` does not exist at {address} and the broker does not create it \
                 (create it, or enable autoCreateTopicEnable) ({text})"
            ),
            None => format!("not found at {address}: {text}"),
        });
    }
    match condition {
        "unavailable" | "deadline_exceeded" | "cancelled" | "aborted" | "resource_exhausted" => {
            TransportError::Unavailable {
                address: address.to_string(),
                reason: text,
            }
        }
        _ if broker_code == Some(code::SYSTEM_BUSY) || broker_code == Some(code::NO_MESSAGE) => {
            TransportError::Unavailable {
                address: address.to_string(),
                reason: text,
            }
        }
        _ if code_name.starts_with("transport") || code_name.starts_with("remoting") => {
            TransportError::Unavailable {
                address: address.to_string(),
                reason: text,
            }
        }
        "invalid_argument" => TransportError::Rejected(format!(
            "the client rejected the request or configuration: {text}"
        )),
        _ => TransportError::Rejected(match broker_code {
            Some(c) => format!("{text} (broker code {c})"),
            None => text,
        }),
    }
}

/// Adds "what was already sent" to an error of a fanned-out send.
pub fn partial(err: TransportError, index: usize, done: &[(String, SendResult)]) -> TransportError {
    if index == 0 || done.is_empty() {
        return err;
    }
    let sent: Vec<String> = done
        .iter()
        .map(|(t, r)| {
            format!(
                "{t} (id {})",
                r.msg_id.as_ref().map(|m| m.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let note = format!("; already sent to: {}", sent.join(", "));
    match err {
        TransportError::Unavailable { address, reason } => TransportError::Unavailable {
            address,
            reason: reason + &note,
        },
        TransportError::Unauthenticated { address, reason } => TransportError::Unauthenticated {
            address,
            reason: reason + &note,
        },
        TransportError::NotFound(m) => TransportError::NotFound(m + &note),
        TransportError::Rejected(m) => TransportError::Rejected(m + &note),
        TransportError::InvalidRequest { key, reason } => TransportError::InvalidRequest {
            key,
            reason: reason + &note,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rocketmq-client-rust` returns when the Java name server has no route for the
    /// default topic `TBW102` (a broker with autoCreateTopicEnable=false registers none).
    fn no_default_topic_route() -> ClientError {
        ClientError::from(MQClientException::new_with_code(
            code::TOPIC_NOT_EXIST,
            "No topic route info in name server for the topic: TBW102\nSee \
             http://rocketmq.apache.org/docs/faq/ for further details.",
        ))
    }

    #[test]
    fn name_server_without_the_default_topic_means_not_found_for_the_sent_topic() {
        match map(
            &no_default_topic_route(),
            "127.0.0.1:9876",
            Some("orders"),
            false,
        ) {
            TransportError::NotFound(m) => {
                assert!(m.contains("`orders` does not exist"), "{m}");
                assert!(m.contains("TBW102"), "the name server's text is kept: {m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_route_for_a_topic_that_took_sends_before_is_unavailable() {
        assert!(matches!(
            map(
                &no_default_topic_route(),
                "127.0.0.1:9876",
                Some("orders"),
                true
            ),
            TransportError::Unavailable { .. }
        ));
    }
}
