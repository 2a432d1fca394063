//! The server side of the Aliyun MQ HTTP wire format: what only the emulator does with it.
//!
//! * Authentication (spec §2): [`parse_authorization`] splits `MQ <ak>:<sig>`,
//!   [`verify_signature`] checks it in constant time against the string-to-sign that
//!   [`protocol::string_to_sign`] builds for both sides; [`content_md5_matches`] accepts the SDKs'
//!   hex-then-base64 `Content-MD5` and RFC 1864's raw base64.
//! * Requests: [`publish_message_from_xml`] and [`receipt_handles_from_xml`] read any SDK's
//!   layout with the shared, depth-limited parser of [`protocol`].
//! * Responses (spec §1.7, §6.1): [`publish_result_to_xml`], [`messages_to_xml`],
//!   [`ack_errors_to_xml`] and [`error_to_xml`] reproduce the golden responses byte for byte
//!   (the XML declaration aside), escaping text as the real service does
//!   ([`escape_response_text`]); [`body_md5`] is the `MessageBodyMD5` they carry.
//!
//! The document types, element names, namespace and property format stay in [`protocol`], the
//! one definition both the client and this server use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::Mac as _;
use md5::{Digest, Md5};

use crate::transport::http::protocol::{
    self, AckError, ErrorBody, PublishMessage, PublishResult, ReceivedMessage, XML_NS, XmlError,
    child_text, children_named, expect_root, parse, text_of,
};

/// Splits `MQ <ak>:<sig>` into its parts.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix("MQ ")?;
    let (ak, sig) = rest.split_once(':')?;
    if ak.is_empty() || sig.is_empty() {
        return None;
    }
    Some((ak, sig))
}

/// Checks a base64 signature in constant time.
pub fn verify_signature(secret: &str, string_to_sign: &str, provided_b64: &str) -> bool {
    let Ok(provided) = B64.decode(provided_b64.trim()) else {
        return false;
    };
    protocol::mac(secret.as_bytes(), string_to_sign)
        .verify_slice(&provided)
        .is_ok()
}

/// Whether a `Content-MD5` value matches `body` (hex-then-base64, or RFC 1864 raw base64).
pub fn content_md5_matches(value: &str, body: &[u8]) -> bool {
    let value = value.trim();
    value == protocol::content_md5(body) || value == B64.encode(Md5::digest(body))
}

/// `MessageBodyMD5`: uppercase hex MD5 of the UTF-8 body.
pub fn body_md5(body: &str) -> String {
    protocol::md5_hex(body.as_bytes()).to_ascii_uppercase()
}

/// Parses a publish request body (any SDK's layout).
pub fn publish_message_from_xml(xml: &str) -> Result<PublishMessage, XmlError> {
    let doc = parse(xml)?;
    let root = expect_root(&doc, "Message")?;
    let body = child_text(root, "MessageBody").ok_or(XmlError::Missing("MessageBody"))?;
    let tag = child_text(root, "MessageTag").filter(|t| !t.is_empty());
    let properties = child_text(root, "Properties").unwrap_or_default();
    Ok(PublishMessage {
        body,
        tag,
        properties,
    })
}

/// Parses an ack request body.
pub fn receipt_handles_from_xml(xml: &str) -> Result<Vec<String>, XmlError> {
    let doc = parse(xml)?;
    let root = expect_root(&doc, "ReceiptHandles")?;
    Ok(children_named(root, "ReceiptHandle").map(text_of).collect())
}

/// Escapes text the way the emulator answers (spec §6.1): `&amp; &lt; &gt;` and `\r` as
/// `&#13;`.
pub fn escape_response_text(s: &str) -> String {
    protocol::escape_text(s, |c| (c == '\r').then_some("&#13;"))
}

/// A response document up to its root's start tag (declaration, namespace).
fn open_root(name: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{name} xmlns=\"{XML_NS}\">")
}

fn elem(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape_response_text(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The publish response body.
pub fn publish_result_to_xml(r: &PublishResult) -> String {
    let mut out = open_root("Message");
    elem(&mut out, "MessageId", &r.message_id);
    elem(&mut out, "MessageBodyMD5", &r.body_md5);
    if let Some(h) = &r.receipt_handle {
        elem(&mut out, "ReceiptHandle", h);
    }
    out.push_str("</Message>");
    out
}

/// Renders a consume response.
pub fn messages_to_xml(msgs: &[ReceivedMessage]) -> String {
    let mut out = open_root("Messages");
    for m in msgs {
        out.push_str("<Message>");
        elem(&mut out, "MessageId", &m.message_id);
        elem(&mut out, "ReceiptHandle", &m.receipt_handle);
        elem(&mut out, "MessageBodyMD5", &m.body_md5);
        elem(&mut out, "MessageBody", &m.body);
        elem(&mut out, "PublishTime", &m.publish_time.to_string());
        elem(
            &mut out,
            "FirstConsumeTime",
            &m.first_consume_time.to_string(),
        );
        elem(
            &mut out,
            "NextConsumeTime",
            &m.next_consume_time.to_string(),
        );
        elem(&mut out, "ConsumedTimes", &m.consumed_times.to_string());
        if let Some(tag) = m.tag.as_deref().filter(|t| !t.is_empty()) {
            elem(&mut out, "MessageTag", tag);
        }
        if !m.properties.is_empty() {
            elem(&mut out, "Properties", &m.properties);
        }
        out.push_str("</Message>");
    }
    out.push_str("</Messages>");
    out
}

/// Renders a request-level `<Error>` with all four elements (spec §1.7).
pub fn error_to_xml(e: &ErrorBody) -> String {
    let mut out = open_root("Error");
    elem(&mut out, "Code", &e.code);
    elem(&mut out, "Message", &e.message);
    elem(&mut out, "RequestId", &e.request_id);
    elem(&mut out, "HostId", &e.host_id);
    out.push_str("</Error>");
    out
}

/// Renders an ack's `<Errors>` list.
pub fn ack_errors_to_xml(errors: &[AckError]) -> String {
    let mut out = open_root("Errors");
    for e in errors {
        out.push_str("<Error>");
        elem(&mut out, "ErrorCode", &e.code);
        elem(&mut out, "ErrorMessage", &e.message);
        elem(&mut out, "ReceiptHandle", &e.receipt_handle);
        out.push_str("</Error>");
    }
    out.push_str("</Errors>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client signs, the server accepts; a wrong secret, a changed string-to-sign or
    /// a signature that is not base64 is refused.
    #[test]
    fn verification_accepts_exactly_the_clients_signature() {
        let sts =
            "GET\n\n\nMon, 15 Jan 2024 10:30:00 GMT\nx-mq-version:2015-06-06\n/topics/T/messages";
        let sig = protocol::signature("secret", sts);
        assert!(verify_signature("secret", sts, &sig));
        assert!(verify_signature("secret", sts, &format!(" {sig}\n")));
        assert!(!verify_signature("wrong", sts, &sig));
        assert!(!verify_signature("secret", &format!("{sts}x"), &sig));
        assert!(!verify_signature("secret", sts, "not base64!"));
        assert_eq!(parse_authorization("MQ ak:sig"), Some(("ak", "sig")));
        for bad in ["MQ ak", "MQ :sig", "MQ ak:", "Basic ak:sig"] {
            assert_eq!(parse_authorization(bad), None, "{bad}");
        }
    }

    /// A peer's deeply nested request is refused by the shared depth limit.
    #[test]
    fn deeply_nested_requests_are_refused() {
        let deep = |root: &str| {
            format!(
                "<{root}>{}{}</{root}>",
                "<a>".repeat(5_000),
                "</a>".repeat(5_000)
            )
        };
        let e = publish_message_from_xml(&deep("Message")).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 32"), "{e}");
        assert!(receipt_handles_from_xml(&deep("ReceiptHandles")).is_err());
    }
}
