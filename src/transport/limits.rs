//! Broker limits checked before a send, with the same numbers and error texts on both
//! transports.
//!
//! Without these checks a message the broker will refuse travels all the way to it: the Java
//! broker then answers an opaque "Broker operation failed (broker code 13)" on tcp, and the
//! HTTP transport accepted what the cloud service would reject. The numbers are the Apache
//! RocketMQ 5.3.3 broker's, measured against it on 127.0.0.1:
//! - **properties**: the broker refuses a message whose encoded properties (`name\x01value\x02`
//!   for each) exceed 32,767 bytes (`Short.MAX_VALUE`), counting the system properties the
//!   client and the broker add (unique id, region, trace flag, …: 114 bytes measured). A user
//!   property of 32,648 value bytes was the largest accepted. The local limit,
//!   [`MAX_PROPERTIES_BYTES`], counts what the request sets (user properties, tag, keys,
//!   sharding key, trace context, delivery time) and keeps 256 bytes for the rest.
//! - **timer window**: a delivery time more than `timerMaxDelaySec` (default 259,200 s = 72 h)
//!   ahead is refused; a time in the past is delivered at once (accepted). The window is the
//!   Component's `timerMaxDelay` (default `72h`), so a broker configured wider, or Alibaba
//!   Cloud's longer window, can be matched.

use std::time::Duration;

use super::TransportError;

/// The broker's limit on encoded message properties (`Short.MAX_VALUE`).
pub const BROKER_MAX_PROPERTIES_BYTES: usize = 32_767;

/// What a request's own properties may take: the broker's limit minus 256 bytes for the
/// system properties added after it.
pub const MAX_PROPERTIES_BYTES: usize = BROKER_MAX_PROPERTIES_BYTES - 256;

/// The metadata key named when the properties are too large.
pub const PROPERTIES_KEY: &str = "rocketmq-property-*";

/// Checks the encoded size of a message's properties (`name\x01value\x02` each).
pub fn check_properties<'a>(
    props: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TransportError> {
    let size: usize = props.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if size > MAX_PROPERTIES_BYTES {
        return Err(TransportError::InvalidRequest {
            key: PROPERTIES_KEY.into(),
            reason: format!(
                "the message's properties (user properties, tag, keys, sharding key, trace \
                 context) take {size} bytes encoded; at most {MAX_PROPERTIES_BYTES} are accepted \
                 (the broker's {BROKER_MAX_PROPERTIES_BYTES} minus room for system properties)"
            ),
        });
    }
    Ok(())
}

/// Checks a delivery time (Unix milliseconds) against the timer window: at most `max` after
/// `now_ms`. Times in the past are accepted (the broker delivers them at once).
pub fn check_deliver_time(
    key: &str,
    at_ms: u64,
    now_ms: u64,
    max: Duration,
) -> Result<(), TransportError> {
    let ahead = at_ms.saturating_sub(now_ms);
    if u128::from(ahead) > max.as_millis() {
        return Err(TransportError::InvalidRequest {
            key: key.into(),
            reason: format!(
                "the delivery time is {} s ahead; the timer window is {} s (Component metadata \
                 `timerMaxDelay`, default 72h like the broker's timerMaxDelaySec)",
                ahead / 1000,
                max.as_secs()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_limit_counts_names_values_and_separators() {
        let v = "a".repeat(MAX_PROPERTIES_BYTES - 3 - 2);
        assert!(check_properties([("big", v.as_str())]).is_ok());
        let v = "a".repeat(MAX_PROPERTIES_BYTES - 3 - 1);
        let e = check_properties([("big", v.as_str())]).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("{}", MAX_PROPERTIES_BYTES + 1)),
            "{e}"
        );
        assert!(e.to_string().contains(PROPERTIES_KEY), "{e}");
    }

    #[test]
    fn timer_window() {
        let max = Duration::from_secs(259_200);
        let now = 1_000_000_000_000;
        assert!(check_deliver_time("k", now - 60_000, now, max).is_ok());
        assert!(check_deliver_time("k", now + 259_200_000, now, max).is_ok());
        let e =
            check_deliver_time("rocketmq-deliver-after", now + 259_201_000, now, max).unwrap_err();
        assert!(e.to_string().contains("`rocketmq-deliver-after`"), "{e}");
        assert!(e.to_string().contains("259201 s ahead"), "{e}");
    }
}

/// Both transports, one request: the same limit gives the same error.
#[cfg(test)]
mod both_transports {
    use std::collections::HashMap;

    use crate::metadata::{Role, Settings};
    use crate::transport::{OutboundMessage, http::build_publish, tcp::plan_for_tests};

    fn settings() -> Settings {
        let m: HashMap<String, String> = [("nameServer", "127.0.0.1:9876"), ("topics", "t")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::decode(&m, Role::Output).unwrap()
    }

    fn msg(md: &[(&str, &str)]) -> OutboundMessage {
        OutboundMessage {
            data: bytes::Bytes::from_static(b"x"),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn same_error_on_tcp_and_http() {
        let s = settings();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let big = "a".repeat(33_000);
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("rocketmq-property-big", big.as_str())],
            vec![("rocketmq-deliver-after", "73h")],
        ];
        // The counted size differs by what each wire format adds itself (tcp's WAIT flag), so
        // the comparison leaves out the number after "take".
        let shape = |e: String| {
            let mut words: Vec<String> = e.split(' ').map(str::to_string).collect();
            if let Some(i) = words.iter().position(|w| w == "take") {
                words[i + 1] = "N".into();
            }
            words.join(" ")
        };
        for md in cases {
            let m = msg(&md);
            let tcp = plan_for_tests(&m, &s).unwrap_err().to_string();
            let http = build_publish(&m, now, s.timer_max_delay)
                .unwrap_err()
                .to_string();
            assert_eq!(shape(tcp), shape(http), "{}", md[0].0);
        }
        // Just under the limits both accept.
        let ok = "a".repeat(32_000);
        let m = msg(&[
            ("rocketmq-property-big", &ok),
            ("rocketmq-deliver-after", "71h"),
        ]);
        assert!(plan_for_tests(&m, &s).is_ok());
        assert!(build_publish(&m, now, s.timer_max_delay).is_ok());
    }
}
