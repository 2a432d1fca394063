//! Property tests of the decoders that read what peers send (issue 13: "fuzzed with a real
//! fuzzer or property tests on the XML and metadata decoders and run briefly in CI"): the
//! Aliyun MQ HTTP XML parsers (daemon and emulator side), the properties format, Init metadata,
//! durations, and the text helpers that put untrusted values into errors and logs. Each
//! property runs proptest's default 256 cases (a few seconds in all); a failure prints the
//! shrunk input. `PROPTEST_CASES=100000 cargo test --test decoders_prop` runs longer.

use std::collections::HashMap;

use proptest::prelude::*;
use rocketmq_binding::emulator::wire::{publish_message_from_xml, receipt_handles_from_xml};
use rocketmq_binding::metadata::{KEYS, Role, Settings, parse_duration};
use rocketmq_binding::telemetry::escape_event;
use rocketmq_binding::text::{SHOWN_MAX_CHARS, shown};
use rocketmq_binding::transport::http::protocol::{
    ErrorBody, PublishResult, ack_errors_from_xml, messages_from_xml, parse_properties,
};

/// XML-ish text: tags of the API's element names, text with entities, random nesting.
fn xmlish() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "Messages",
        "Message",
        "MessageBody",
        "MessageTag",
        "Properties",
        "MessageId",
        "ReceiptHandle",
        "Error",
        "Code",
        "x",
    ]);
    let leaf = prop_oneof![
        "[a-zA-Z0-9 &;<>'\"=/:|_.-]{0,40}".prop_map(|s| s),
        Just("&amp;&lt;&#x1F600;&#0;&bogus;".to_string()),
        Just("<![CDATA[<x>]]>".to_string()),
        Just("<?xml version=\"1.0\"?>".to_string()),
    ];
    leaf.prop_recursive(8, 64, 6, move |inner| {
        (
            names.clone(),
            prop::collection::vec(inner, 0..6),
            any::<bool>(),
        )
            .prop_map(|(n, kids, close)| {
                let body: String = kids.concat();
                if close {
                    format!("<{n}>{body}</{n}>")
                } else {
                    format!("<{n}>{body}")
                }
            })
    })
}

fn parse_all(xml: &str) {
    let _ = messages_from_xml(xml);
    let _ = publish_message_from_xml(xml);
    let _ = PublishResult::from_xml(xml);
    let _ = ErrorBody::from_xml(xml);
    let _ = receipt_handles_from_xml(xml);
    let _ = ack_errors_from_xml(xml);
}

proptest! {
    /// No XML input makes a parser panic or overflow the stack.
    #[test]
    fn xml_parsers_never_panic(xml in xmlish()) {
        parse_all(&xml);
    }

    /// Arbitrary bytes (as text) neither.
    #[test]
    fn xml_parsers_never_panic_on_noise(s in any::<String>()) {
        parse_all(&s);
    }

    /// Any nesting depth, up to far beyond what once aborted the daemon (5,000), is an error,
    /// not a crash.
    #[test]
    fn deep_nesting_is_refused(depth in 33usize..20_000, name in "[A-Za-z]{1,8}") {
        let xml = format!("{}{}", format!("<{name}>").repeat(depth), format!("</{name}>").repeat(depth));
        prop_assert!(messages_from_xml(&xml).is_err());
        prop_assert!(publish_message_from_xml(&xml).is_err());
    }

    /// The properties format never panics and every pair it returns came from the input.
    #[test]
    fn properties_parse_never_panics(s in "[a-z:|%=&;<>\"' ]{0,200}") {
        for (k, v) in parse_properties(&s) {
            prop_assert!(s.contains(&k));
            prop_assert!(s.contains(&v));
        }
    }

    /// Init metadata: any map of known keys (any spelling) with arbitrary values decodes or is
    /// rejected, never panics; a rejection is short and never echoes a secret.
    #[test]
    fn metadata_decode_never_panics(
        pairs in prop::collection::vec(
            (prop::sample::select(KEYS.iter().map(|k| k.name).collect::<Vec<_>>()), any::<bool>(), ".{0,300}"),
            0..12,
        ),
        role in prop::sample::select(vec![Role::Input, Role::Output]),
    ) {
        let secret = "SECRET-VALUE-9f2c";
        let mut m: HashMap<String, String> = HashMap::new();
        for (k, upper, v) in pairs {
            let k = if upper { k.to_ascii_uppercase() } else { k.to_string() };
            m.insert(k, v);
        }
        m.insert("secretKey".into(), secret.into());
        if let Err(e) = Settings::decode(&m, role) {
            let text = e.to_string();
            prop_assert!(text.len() < 2048, "{} bytes", text.len());
            prop_assert!(!text.contains(secret));
        }
    }

    /// Durations: any text is parsed or rejected, never a panic or an overflow.
    #[test]
    fn durations_never_panic(s in ".{0,40}") {
        let _ = parse_duration("k", &s);
    }

    #[test]
    fn durations_never_panic_on_numbers(s in "[0-9.]{1,30}(ns|us|ms|s|m|h){0,3}") {
        let _ = parse_duration("k", &s);
    }

    /// A shown value is bounded, on one line, and cut on a character boundary.
    #[test]
    fn shown_is_bounded_and_single_line(s in any::<String>()) {
        let out = shown(&s).to_string();
        prop_assert!(!out.contains('\n') && !out.contains('\r'));
        prop_assert!(out.chars().count() <= SHOWN_MAX_CHARS * 10 + 40);
    }

    /// A text log event is one line whatever its fields hold.
    #[test]
    fn a_log_event_is_one_line(s in any::<String>()) {
        let mut line = s.into_bytes();
        line.push(b'\n');
        let out = escape_event(&line, false);
        prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        prop_assert_eq!(out.last(), Some(&b'\n'));
    }
}
