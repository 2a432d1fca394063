//! The message contract with the app that both transports share: how request metadata keys
//! are looked up, which tag a send gets by default, which send receipt the app gets
//! (`sendReceipt`), how delivery metadata is encoded and which of it the app gets
//! (`deliveryMetadata`).
//!
//! These used to be written once per transport and drifted apart (the app saw different
//! behaviour for the same Component depending on `accessProto`): http matched request keys
//! exactly while tcp ignored their case, only tcp applied the default tag of a single-tag
//! `topics` entry, and only tcp escaped `%` in delivered values. Each rule now has one owner
//! here; the transports only map to and from their wire formats.

use std::collections::HashMap;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::metadata::{DeliveryMetadata, ReceiptMode, Settings, Subscription};
use crate::transport::keys;

/// The receipt key of a send's message id (the id consumers see), on both transports.
pub const RECEIPT_MESSAGE_ID: &str = "rocketmq-message-id";

/// The part of a transport's send `receipt` that `mode` (`sendReceipt`) returns to the app.
pub fn receipt_for_app(
    mut receipt: HashMap<String, String>,
    mode: ReceiptMode,
) -> HashMap<String, String> {
    match mode {
        ReceiptMode::Full => receipt,
        ReceiptMode::Id => receipt
            .remove_entry(RECEIPT_MESSAGE_ID)
            .into_iter()
            .collect(),
        ReceiptMode::None => HashMap::new(),
    }
}

/// The part of a delivery's `metadata` that `mode` (`deliveryMetadata`) passes to the app.
pub fn delivery_for_app(
    mut metadata: HashMap<String, String>,
    mode: DeliveryMetadata,
) -> HashMap<String, String> {
    if mode == DeliveryMetadata::Basic {
        metadata.retain(|k, _| is_basic_delivery_key(k));
    }
    metadata
}

/// The message's own keys, which `deliveryMetadata: basic` keeps: its topic, id, tag, keys,
/// sharding key and delivery time, its user properties and its trace context. What the
/// broker adds (queue, offset, reconsume times, born time, group, broker) is dropped.
fn is_basic_delivery_key(key: &str) -> bool {
    matches!(
        key,
        keys::TOPIC
            | RECEIPT_MESSAGE_ID
            | keys::TAG
            | keys::MESSAGE_KEYS
            | keys::SHARDING_KEY
            | keys::DELIVER_AT
    ) || key.starts_with(keys::PROPERTY_PREFIX)
        || keys::TRACE_KEYS.contains(&key)
}

/// A send request's metadata with Dapr's key semantics: keys match case-insensitively,
/// values are trimmed and an empty value counts as absent. Property names keep the spelling
/// the app used. When two keys differ only in case, the one first in byte order wins.
///
/// A request carries a handful of keys, so lookups scan a sorted list with
/// `eq_ignore_ascii_case` instead of hashing a lower-cased copy of each key (a send does seven
/// lookups; this halved the instructions `plan` spends on them).
pub struct RequestKeys<'a> {
    /// `(original key, value)`, one per case-insensitive key, in case-insensitive order
    /// (deterministic lookups and errors).
    entries: Vec<(&'a str, &'a str)>,
}

impl<'a> RequestKeys<'a> {
    /// A view of `metadata`.
    pub fn new(metadata: &'a HashMap<String, String>) -> Self {
        let mut entries: Vec<(&str, &str)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Case-insensitive order, then byte order: keys equal but for case end up adjacent, and
        // the first in byte order is kept.
        entries.sort_unstable_by(|a, b| {
            let fold = |s: &'a str| s.bytes().map(|c| c.to_ascii_lowercase());
            fold(a.0).cmp(fold(b.0)).then_with(|| a.cmp(b))
        });
        entries.dedup_by(|later, first| later.0.eq_ignore_ascii_case(first.0));
        RequestKeys { entries }
    }

    /// The trimmed, non-empty value of `key` (any case).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every `(original key, value)`, in case-insensitive key order (deterministic errors).
    pub fn sorted(&self) -> Vec<(&'a str, &'a str)> {
        self.entries.clone()
    }

    /// User properties: `(original key, name as the app spelled it, value)` for every key
    /// starting with [`super::keys::PROPERTY_PREFIX`] in any case, sorted by key.
    pub fn properties(&self) -> Vec<(&'a str, &'a str, &'a str)> {
        let prefix = super::keys::PROPERTY_PREFIX;
        self.sorted()
            .into_iter()
            .filter(|(k, _)| {
                k.len() >= prefix.len() && k[..prefix.len()].eq_ignore_ascii_case(prefix)
            })
            .map(|(k, v)| (k, &k[prefix.len()..], v))
            .collect()
    }
}

/// The tag a send to `topic` gets when the request names none: the tag of a `topics` entry
/// naming exactly one (`orders||created`).
pub fn default_tag(settings: &Settings, topic: &str) -> Option<String> {
    settings
        .topics
        .iter()
        .find(|s| s.topic == topic)
        .and_then(single_tag)
}

/// The tag of a `topics` entry naming exactly one tag.
pub fn single_tag(s: &Subscription) -> Option<String> {
    match s.tags() {
        Some(tags) if tags.len() == 1 => Some(tags[0].to_string()),
        _ => None,
    }
}

/// Percent-encoded in delivered values: control characters (non-ASCII always is) and `%`
/// itself, so the encoding is reversible (`percent_decode` gives back the broker's value).
const VALUE_UNSAFE: &AsciiSet = &CONTROLS.add(b'%');

/// Percent-encoded in delivered property names: everything that is not an HTTP token
/// character.
const NAME_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'(')
    .add(b')')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'%');

/// A delivered metadata value, header-safe and reversible.
pub fn delivery_value(v: &str) -> String {
    // Through `Cow`: a value with nothing to encode (nearly all) is copied once, not
    // formatted piecewise into a growing string.
    std::borrow::Cow::from(utf8_percent_encode(v, VALUE_UNSAFE)).into_owned()
}

/// A delivered W3C trace context value (`traceparent`, `tracestate`, `baggage`): verbatim when
/// it is printable ASCII, as the W3C formats are by definition (daprd parses these keys, and a
/// `%` in `baggage` is part of its own encoding); otherwise like [`delivery_value`].
pub fn delivery_trace_value(v: &str) -> String {
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        v.to_string()
    } else {
        delivery_value(v)
    }
}

/// A delivered property name (after `rocketmq-property-`), header-safe.
pub fn delivery_name(v: &str) -> String {
    std::borrow::Cow::from(utf8_percent_encode(v, NAME_UNSAFE)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_receipt_modes_cut_the_receipt() {
        let full: HashMap<String, String> = [
            (RECEIPT_MESSAGE_ID, "7F00"),
            ("rocketmq-topic", "orders"),
            ("rocketmq-queue-offset", "12"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(receipt_for_app(full.clone(), ReceiptMode::Full), full);
        let id = receipt_for_app(full.clone(), ReceiptMode::Id);
        assert_eq!(id.len(), 1);
        assert_eq!(id[RECEIPT_MESSAGE_ID], "7F00");
        assert!(receipt_for_app(full, ReceiptMode::None).is_empty());
        // A receipt without an id (nothing was sent) stays empty under `id`.
        assert!(receipt_for_app(HashMap::new(), ReceiptMode::Id).is_empty());
    }

    #[test]
    fn basic_delivery_metadata_keeps_the_messages_own_keys() {
        let all = [
            "rocketmq-topic",
            "rocketmq-message-id",
            "rocketmq-tag",
            "rocketmq-keys",
            "rocketmq-shardingkey",
            "rocketmq-deliver-at",
            "rocketmq-property-color",
            "traceparent",
            "tracestate",
            "baggage",
            "rocketmq-queue-id",
            "rocketmq-queue-offset",
            "rocketmq-reconsume-times",
            "rocketmq-born-timestamp",
            "rocketmq-consumer-group",
            "rocketmq-broker-name",
            "rocketmq-first-consume-time",
            "rocketmq-next-consume-time",
        ];
        let md: HashMap<String, String> = all
            .iter()
            .map(|k| (k.to_string(), "v".to_string()))
            .collect();
        assert_eq!(delivery_for_app(md.clone(), DeliveryMetadata::Full), md);
        let basic = delivery_for_app(md, DeliveryMetadata::Basic);
        let mut kept: Vec<&str> = basic.keys().map(String::as_str).collect();
        kept.sort_unstable();
        let mut want = all[..10].to_vec();
        want.sort_unstable();
        assert_eq!(kept, want);
    }

    #[test]
    fn keys_ignore_case_and_empty_values() {
        let m: HashMap<String, String> = [
            ("Rocketmq-Tag", " A "),
            ("rocketmq-key", ""),
            ("Rocketmq-Property-Size", "XL"),
            ("rocketmq-property-color", "red"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = RequestKeys::new(&m);
        assert_eq!(r.get("rocketmq-tag"), Some("A"));
        assert_eq!(r.get("ROCKETMQ-KEY"), None);
        assert_eq!(
            r.properties(),
            vec![
                ("rocketmq-property-color", "color", "red"),
                ("Rocketmq-Property-Size", "Size", "XL"),
            ]
        );
    }

    /// Keys equal but for case: one of them, the first in byte order, whatever order the map
    /// iterates in; never both as two properties.
    #[test]
    fn keys_equal_but_for_case_resolve_to_one_deterministically() {
        let m: HashMap<String, String> = [
            ("rocketmq-tag", "lower"),
            ("Rocketmq-Tag", "upper"),
            ("rocketmq-property-Size", "S"),
            ("Rocketmq-Property-Size", "XL"),
            ("ROCKETMQ-PROPERTY-SIZE", "XXL"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = RequestKeys::new(&m);
        assert_eq!(r.get("rocketmq-tag"), Some("upper"));
        assert_eq!(
            r.properties(),
            vec![("ROCKETMQ-PROPERTY-SIZE", "SIZE", "XXL")]
        );
        assert_eq!(r.sorted().len(), 2);
    }

    #[test]
    fn delivery_encoding_is_reversible_and_header_safe() {
        for v in ["50%", "a\nb", "héllo", "%25", "plain"] {
            let e = delivery_value(v);
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e}");
            assert_eq!(
                percent_encoding::percent_decode_str(&e)
                    .decode_utf8()
                    .unwrap(),
                v
            );
        }
        assert_eq!(delivery_name("a b:c"), "a%20b%3Ac");
    }
}
