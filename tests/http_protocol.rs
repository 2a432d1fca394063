//! The Aliyun MQ HTTP wire format against the 54 captured SDK requests
//! (`tests/data/aliyun-http-vectors.json`, a copy of `shared/spec/aliyun-http-vectors.json`):
//! signatures, Content-MD5, request and response XML, properties; both sides of the format,
//! the client's (`transport::http::protocol`) and the emulator's (`emulator::wire`).

use rocketmq_binding::emulator::wire;
use rocketmq_binding::transport::http::protocol::{self, SignInput};
use serde_json::Value;

const VECTORS: &str = include_str!("data/aliyun-http-vectors.json");

fn vectors() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).expect("vectors file is JSON");
    let v = doc["vectors"].as_array().expect("vectors array").clone();
    assert_eq!(v.len(), 54, "the spec promises 54 captured requests");
    v
}

fn header<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers_as_sent"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{}: field {k} missing", v["id"]))
}

#[test]
fn every_vector_signature_is_reproduced_from_its_inputs() {
    let mut checked = 0;
    for v in vectors() {
        let id = s(&v, "id");
        let mq: Vec<(&str, &str)> = v["headers_as_sent"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| Some((h[0].as_str()?, h[1].as_str()?)))
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-mq-"))
            .collect();
        let input = SignInput {
            method: s(&v, "method"),
            content_md5: header(&v, "content-md5"),
            content_type: header(&v, "content-type"),
            date: header(&v, "date").expect("date header"),
            mq_headers: &mq,
            resource: s(&v, "path_and_query"),
        };
        assert_eq!(
            protocol::string_to_sign(&input),
            s(&v, "string_to_sign"),
            "{id}: string to sign"
        );
        let auth =
            protocol::authorization(s(&v, "access_key_id"), s(&v, "access_key_secret"), &input);
        assert_eq!(auth, s(&v, "authorization"), "{id}: Authorization");
        assert_eq!(
            Some(auth.as_str()),
            header(&v, "authorization"),
            "{id}: header as sent"
        );
        // The server side verifies it, and rejects a wrong secret.
        let (ak, sig) = wire::parse_authorization(&auth).expect("MQ ak:sig");
        assert_eq!(ak, s(&v, "access_key_id"));
        let sts = protocol::string_to_sign(&input);
        assert!(
            wire::verify_signature(s(&v, "access_key_secret"), &sts, sig),
            "{id}"
        );
        assert!(!wire::verify_signature("not-the-secret", &sts, sig), "{id}");
        checked += 1;
    }
    assert_eq!(checked, 54);
}

#[test]
fn content_md5_headers_are_hex_then_base64_of_the_body() {
    let mut seen = 0;
    for v in vectors() {
        if let Some(md5) = header(&v, "content-md5") {
            let body = s(&v, "body");
            assert_eq!(protocol::content_md5(body.as_bytes()), md5, "{}", v["id"]);
            assert!(wire::content_md5_matches(md5, body.as_bytes()));
            assert!(!wire::content_md5_matches(md5, b"other"));
            seen += 1;
        }
    }
    assert!(seen > 10, "Go and Node vectors carry Content-MD5 ({seen})");
}

#[test]
fn every_sdk_publish_body_parses() {
    let mut seen = 0;
    for v in vectors() {
        if s(&v, "method") != "POST" {
            continue;
        }
        let id = s(&v, "id");
        let m =
            wire::publish_message_from_xml(s(&v, "body")).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(!m.body.is_empty(), "{id}");
        if id.ends_with("publish_tag_key_props") {
            assert_eq!(m.body, "hello rocketmq", "{id}");
            assert_eq!(m.tag.as_deref(), Some("TagA"), "{id}");
            let p = protocol::parse_properties(&m.properties);
            assert!(
                p.contains(&("KEYS".into(), "order-123".into())),
                "{id}: {p:?}"
            );
            assert!(p.contains(&("color".into(), "red".into())), "{id}: {p:?}");
        }
        if id.ends_with("sharding_key") {
            let p = protocol::parse_properties(&m.properties);
            assert!(p.iter().any(|(k, _)| k == "__SHARDINGKEY"), "{id}: {p:?}");
        }
        seen += 1;
    }
    assert!(seen >= 16, "{seen}");
}

#[test]
fn go_escaping_is_reproduced_and_parsed() {
    let v = vectors()
        .into_iter()
        .find(|v| v["id"] == "go_publish_escaping")
        .unwrap();
    let m = wire::publish_message_from_xml(s(&v, "body")).unwrap();
    assert_eq!(m.body, "a<b>&c\"d'e\r\nf\tg");
    let expected_inner = "a&lt;b&gt;&amp;c&#34;d&#39;e&#xD;&#xA;f&#x9;g";
    assert_eq!(protocol::escape_request_text(&m.body), expected_inner);
    // Our own request body carries the same text back.
    let again = wire::publish_message_from_xml(&m.to_xml()).unwrap();
    assert_eq!(again, m);
}

#[test]
fn ack_bodies_parse() {
    for v in vectors() {
        if s(&v, "method") != "DELETE" {
            continue;
        }
        let id = s(&v, "id");
        let h =
            wire::receipt_handles_from_xml(s(&v, "body")).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(!h.is_empty() && h.iter().all(|x| !x.is_empty()), "{id}");
        if id.ends_with("ack_two_handles") {
            assert_eq!(h.len(), 2, "{id}");
        }
    }
    let ours = protocol::receipt_handles_to_xml(&["a-1", "b<2>"]);
    assert_eq!(
        wire::receipt_handles_from_xml(&ours).unwrap(),
        vec!["a-1", "b<2>"]
    );
}

/// Drops the XML declaration (some golden responses omit it).
fn no_decl(xml: &str) -> &str {
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(xml, |(_, r)| r.trim_start_matches('\n')),
        None => xml,
    }
}

/// The golden responses of the signing vectors (which every SDK accepted) parse, and the
/// emulator's writers reproduce them byte for byte (the XML declaration aside).
#[test]
fn golden_responses_round_trip_through_our_writers() {
    let mut counts = [0usize; 4];
    for v in vectors() {
        if v["kind"] != "signing_vector" {
            continue;
        }
        let id = s(&v, "id");
        let body = v["response"]["body"].as_str().unwrap_or("");
        let status = v["response"]["status"].as_u64().unwrap();
        match protocol::root_name(body).as_deref() {
            Some("Message") => {
                let r = protocol::PublishResult::from_xml(body).unwrap();
                assert_eq!(
                    no_decl(&wire::publish_result_to_xml(&r)),
                    no_decl(body),
                    "{id}"
                );
                assert_eq!(status, 201);
                counts[0] += 1;
            }
            Some("Messages") => {
                let m = protocol::messages_from_xml(body).unwrap();
                assert!(!m.is_empty(), "{id}");
                assert_eq!(no_decl(&wire::messages_to_xml(&m)), no_decl(body), "{id}");
                counts[1] += 1;
            }
            Some("Error") => {
                let e = protocol::ErrorBody::from_xml(body).unwrap();
                assert!(!e.code.is_empty() && !e.host_id.is_empty(), "{id}");
                assert_eq!(no_decl(&wire::error_to_xml(&e)), no_decl(body), "{id}");
                counts[2] += 1;
            }
            Some("Errors") => {
                let e = protocol::ack_errors_from_xml(body).unwrap();
                assert!(
                    e.iter()
                        .all(|x| !x.code.is_empty() && !x.receipt_handle.is_empty())
                );
                assert_eq!(no_decl(&wire::ack_errors_to_xml(&e)), no_decl(body), "{id}");
                assert_eq!(status, 404);
                counts[3] += 1;
            }
            None => assert_eq!(status, 204, "{id}: only 204 has no body"),
            Some(other) => panic!("{id}: unexpected root {other}"),
        }
    }
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
}

#[test]
fn consume_golden_values() {
    let v = vectors()
        .into_iter()
        .find(|v| v["id"] == "py_consume_ns_tag")
        .unwrap();
    let m = protocol::messages_from_xml(v["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].body, "second <msg> & more");
    assert_eq!(m[1].consumed_times, 2);
    assert_eq!(m[0].publish_time, 1705314590000);
    assert_eq!(m[0].tag.as_deref(), Some("TagA"));
    assert_eq!(wire::body_md5("hello rocketmq"), m[0].body_md5);
}

#[test]
fn xml_parsing_is_namespace_and_cdata_agnostic_and_rejects_garbage() {
    for xml in [
        "<Message><MessageBody><![CDATA[x<y]]></MessageBody></Message>",
        "<?xml version=\"1.0\"?><Message xmlns=\"http://mq.aliyuncs.com/doc/v1/\"><MessageTag>t</MessageTag><MessageBody>x&lt;y</MessageBody></Message>",
        "<m:Message xmlns:m=\"urn:x\"><m:MessageBody>x&#60;y</m:MessageBody></m:Message>",
    ] {
        assert_eq!(
            wire::publish_message_from_xml(xml).unwrap().body,
            "x<y",
            "{xml}"
        );
    }
    for bad in [
        "",
        "not xml",
        "<Message><MessageBody>x</Message>",
        "<Other/>",
        "<Message/>",
        "<!DOCTYPE x [<!ENTITY a \"b\">]><Message><MessageBody>&a;</MessageBody></Message>",
    ] {
        assert!(wire::publish_message_from_xml(bad).is_err(), "{bad:?}");
    }
    // `\r` survives the emulator's escaping.
    let out = wire::messages_to_xml(&[protocol::ReceivedMessage {
        message_id: "I".into(),
        receipt_handle: "H".into(),
        body: "a\r\nb".into(),
        ..Default::default()
    }]);
    assert!(out.contains("a&#13;\nb"), "{out}");
    assert_eq!(protocol::messages_from_xml(&out).unwrap()[0].body, "a\r\nb");
}

#[test]
fn properties_follow_the_sdk_rules() {
    assert_eq!(
        protocol::parse_properties("KEYS:order-123|color:red|size:L|"),
        vec![
            ("KEYS".to_string(), "order-123".to_string()),
            ("color".to_string(), "red".to_string()),
            ("size".to_string(), "L".to_string())
        ]
    );
    // Node omits the trailing bar.
    assert_eq!(protocol::parse_properties("a:1|b:2").len(), 2);
    for ch in protocol::FORBIDDEN_PROPERTY_CHARS {
        let e = protocol::encode_properties(&[("k", format!("a{ch}b"))]).unwrap_err();
        assert!(e.to_string().contains("cannot carry"), "{e}");
        assert!(protocol::encode_properties(&[(format!("k{ch}"), "v".to_string())]).is_err());
    }
}
