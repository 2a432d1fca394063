//! The Aliyun MQ HTTP wire format: what the client sends and reads, and what both sides share.
//!
//! * Signing (spec §2): [`string_to_sign`], [`signature`], [`authorization`]. `Content-MD5` is
//!   base64 of the lowercase *hex* MD5 ([`content_md5`]), as the Go and Node SDKs send it.
//! * Properties (spec §3): `k1:v1|k2:v2|` with no escaping; [`encode_properties`] rejects the
//!   characters the format cannot carry, [`parse_properties`] follows the SDKs' lenient split.
//! * XML (spec §1.3–§1.7): the element names and document types, the request bodies the client
//!   writes (Go-style escaping, namespace `http://mq.aliyuncs.com/doc/v1` without a trailing
//!   slash), and namespace-agnostic parsing of the responses it reads (any child order, CDATA,
//!   entities, with or without a declaration) under one depth limit ([`MAX_XML_DEPTH`]).
//!
//! The server side of the same format (signature verification, the request parsers and the
//! response writers) is the emulator's: `crate::emulator::wire`, built on the shared parsing
//! helpers here, so a client build links none of it.
//!
//! Nothing here does I/O; every parser returns an error instead of panicking on bad input.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// `x-mq-version` sent on every request and response.
pub const MQ_VERSION: &str = "2015-06-06";
/// Content type the client sends (Go SDK spelling) and the emulator answers with.
pub const CONTENT_TYPE: &str = "text/xml;charset=utf-8";
/// Namespace on every XML root element either side writes (no trailing slash: spec §1.7).
pub const XML_NS: &str = "http://mq.aliyuncs.com/doc/v1";
/// Most receipt handles per ack request.
pub const MAX_ACK_HANDLES: usize = 16;
/// Most messages per consume request.
pub const MAX_BATCH: u32 = 16;
/// Longest long poll the API allows, in seconds.
pub const MAX_WAIT_SECONDS: u32 = 30;
/// Longest tag the SDKs accept.
pub const MAX_TAG_LEN: usize = 64;

/// System property: message keys (space separated, RocketMQ convention).
pub const PROP_KEYS: &str = "KEYS";
/// System property: tags (sent by Dapr's Go producer only; the API uses `<MessageTag>`).
pub const PROP_TAGS: &str = "TAGS";
/// System property: sharding key of partition-ordered messages.
pub const PROP_SHARDING_KEY: &str = "__SHARDINGKEY";
/// System property: absolute delivery time, epoch milliseconds.
pub const PROP_START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// System property: transactional half message, first check after N seconds.
pub const PROP_TRANS_CHECK: &str = "__TransCheckT";
/// This binding's marker for bodies that are not sent as plain text (see the `http` module).
pub const PROP_BODY_ENCODING: &str = "dapr-body-encoding";
/// This binding's marker for trace-context values sent percent-encoded (see the `http` module).
pub const PROP_TRACE_ENCODING: &str = "dapr-trace-encoding";

/// Characters no property key or value may contain (spec §3).
pub const FORBIDDEN_PROPERTY_CHARS: [char; 7] = ['\'', '"', '<', '>', '&', ':', '|'];

pub(crate) type HmacSha1 = Hmac<Sha1>;

/// The inputs of a signature, exactly as they appear (or will appear) on the wire.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// `Content-MD5` header value, if sent.
    pub content_md5: Option<&'a str>,
    /// `Content-Type` header value, if sent.
    pub content_type: Option<&'a str>,
    /// `Date` header value.
    pub date: &'a str,
    /// Every header whose name starts with `x-mq-` (any case), as `(name, value)`.
    pub mq_headers: &'a [(&'a str, &'a str)],
    /// The raw request-target: path, then `?` and the query if there is one.
    pub resource: &'a str,
}

/// The string-to-sign of spec §2.
pub fn string_to_sign(input: &SignInput<'_>) -> String {
    let mut s = String::with_capacity(128 + input.resource.len());
    s.push_str(input.method);
    s.push('\n');
    s.push_str(input.content_md5.unwrap_or(""));
    s.push('\n');
    s.push_str(input.content_type.unwrap_or(""));
    s.push('\n');
    s.push_str(input.date);
    s.push('\n');
    let mut mq: Vec<(String, &str)> = input
        .mq_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .filter(|(k, _)| k.starts_with("x-mq-"))
        .collect();
    mq.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in mq {
        s.push_str(&k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push_str(input.resource);
    s
}

/// HMAC-SHA1 of `data` under `secret` (for [`signature`] and the emulator's verification).
pub(crate) fn mac(secret: &[u8], data: &str) -> HmacSha1 {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key
    // rather than panic if a future version ever changes that.
    let mut m = <HmacSha1 as KeyInit>::new_from_slice(secret)
        .or_else(|_| <HmacSha1 as KeyInit>::new_from_slice(&[]))
        .expect("HMAC accepts keys of any length");
    m.update(data.as_bytes());
    m
}

/// Base64 HMAC-SHA1 of the string-to-sign with the secret.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    B64.encode(
        mac(secret.as_bytes(), string_to_sign)
            .finalize()
            .into_bytes(),
    )
}

/// The `Authorization` header value: `MQ <ak>:<signature>`.
pub fn authorization(access_key: &str, secret: &str, input: &SignInput<'_>) -> String {
    format!(
        "MQ {access_key}:{}",
        signature(secret, &string_to_sign(input))
    )
}

/// Lowercase hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `Content-MD5` as the Go and Node SDKs send it: base64 of the lowercase hex MD5.
pub fn content_md5(body: &[u8]) -> String {
    B64.encode(md5_hex(body))
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A property the format cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// Empty key or value.
    #[error("property {key:?} has an empty {what}; the HTTP API drops empty properties")]
    Empty { key: String, what: &'static str },
    /// A forbidden character.
    #[error(
        "property {key:?}: its {what} contains {ch:?}, which the Aliyun MQ HTTP properties format \
         cannot carry (not allowed: ' \" < > & : |)"
    )]
    Forbidden {
        key: String,
        what: &'static str,
        ch: char,
    },
    /// A character XML 1.0 cannot carry at all.
    #[error("property {key:?}: its {what} contains a control character XML cannot carry")]
    Control { key: String, what: &'static str },
}

/// Checks one key or value.
pub fn check_property_part(key: &str, part: &str, what: &'static str) -> Result<(), PropertyError> {
    if part.is_empty() {
        return Err(PropertyError::Empty {
            key: key.to_string(),
            what,
        });
    }
    if let Some(ch) = part.chars().find(|c| FORBIDDEN_PROPERTY_CHARS.contains(c)) {
        return Err(PropertyError::Forbidden {
            key: key.to_string(),
            what,
            ch,
        });
    }
    if !xml_text_ok(part) {
        return Err(PropertyError::Control {
            key: key.to_string(),
            what,
        });
    }
    Ok(())
}

/// Encodes properties as `k1:v1|k2:v2|` after checking every key and value.
pub fn encode_properties<K: AsRef<str>, V: AsRef<str>>(
    props: &[(K, V)],
) -> Result<String, PropertyError> {
    let mut out = String::new();
    for (k, v) in props {
        let (k, v) = (k.as_ref(), v.as_ref());
        check_property_part(k, k, "name")?;
        check_property_part(k, v, "value")?;
        out.push_str(k);
        out.push(':');
        out.push_str(v);
        out.push('|');
    }
    Ok(out)
}

/// Parses `k1:v1|k2:v2|` like every SDK does: split on `|`, then on `:`, keep items with
/// exactly two non-empty parts. Later duplicates win.
pub fn parse_properties(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in raw.split('|') {
        let mut parts = item.split(':');
        let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if k.is_empty() || v.is_empty() {
            continue;
        }
        if let Some(slot) = out.iter_mut().find(|(ek, _)| ek == k) {
            slot.1 = v.to_string();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// XML writing
// ---------------------------------------------------------------------------------------------

/// Whether every character of `s` is allowed in XML 1.0 text (escaped or not).
pub fn xml_text_ok(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    })
}

/// Escapes `& < >` as entities and every character `more` maps to its reference; the client
/// and the emulator differ only in `more` (the emulator's is in `emulator::wire`).
pub(crate) fn escape_text(s: &str, more: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => match more(c) {
                Some(r) => out.push_str(r),
                None => out.push(c),
            },
        }
    }
    out
}

/// Escapes text Go-style (`encoding/xml`): `& < > " '` and `\r \n \t` as character
/// references, so nothing is normalised away by the receiving parser.
pub fn escape_request_text(s: &str) -> String {
    escape_text(s, |c| match c {
        '"' => Some("&#34;"),
        '\'' => Some("&#39;"),
        '\r' => Some("&#xD;"),
        '\n' => Some("&#xA;"),
        '\t' => Some("&#x9;"),
        _ => None,
    })
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishMessage {
    /// `MessageBody` (text).
    pub body: String,
    /// `MessageTag`, omitted when `None`.
    pub tag: Option<String>,
    /// Raw `Properties` string (already encoded), omitted when empty.
    pub properties: String,
}

impl PublishMessage {
    /// The request body the client sends (Go SDK layout plus the namespace).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(self.body.len() + 256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        out.push_str("<Message xmlns=\"");
        out.push_str(XML_NS);
        out.push_str("\"><MessageBody>");
        out.push_str(&escape_request_text(&self.body));
        out.push_str("</MessageBody>");
        if let Some(tag) = &self.tag {
            out.push_str("<MessageTag>");
            out.push_str(&escape_request_text(tag));
            out.push_str("</MessageTag>");
        }
        if !self.properties.is_empty() {
            out.push_str("<Properties>");
            out.push_str(&escape_request_text(&self.properties));
            out.push_str("</Properties>");
        }
        out.push_str("</Message>");
        out
    }
}

/// The publish response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishResult {
    /// `MessageId`.
    pub message_id: String,
    /// `MessageBodyMD5`.
    pub body_md5: String,
    /// `ReceiptHandle` (transactional half messages only).
    pub receipt_handle: Option<String>,
}

impl PublishResult {
    /// Parses a publish response.
    pub fn from_xml(xml: &str) -> Result<Self, XmlError> {
        let doc = parse(xml)?;
        let root = expect_root(&doc, "Message")?;
        let message_id = child_text(root, "MessageId")
            .filter(|s| !s.is_empty())
            .ok_or(XmlError::Missing("MessageId"))?;
        Ok(PublishResult {
            message_id,
            body_md5: child_text(root, "MessageBodyMD5").unwrap_or_default(),
            receipt_handle: child_text(root, "ReceiptHandle").filter(|s| !s.is_empty()),
        })
    }
}

/// One consumed message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// `MessageId`.
    pub message_id: String,
    /// `ReceiptHandle`.
    pub receipt_handle: String,
    /// `MessageBodyMD5`.
    pub body_md5: String,
    /// `MessageBody` (text).
    pub body: String,
    /// `PublishTime` (epoch ms).
    pub publish_time: i64,
    /// `FirstConsumeTime` (epoch ms).
    pub first_consume_time: i64,
    /// `NextConsumeTime` (epoch ms).
    pub next_consume_time: i64,
    /// `ConsumedTimes` (1 on first delivery).
    pub consumed_times: i64,
    /// `MessageTag`.
    pub tag: Option<String>,
    /// Raw `Properties`.
    pub properties: String,
}

/// Parses a consume response (`<Messages>`; zero messages is allowed).
pub fn messages_from_xml(xml: &str) -> Result<Vec<ReceivedMessage>, XmlError> {
    let doc = parse(xml)?;
    let root = expect_root(&doc, "Messages")?;
    let num = |m: roxmltree::Node<'_, '_>, name: &'static str| -> Result<i64, XmlError> {
        match child_text(m, name) {
            None => Ok(0),
            Some(s) if s.trim().is_empty() => Ok(0),
            Some(s) => s.trim().parse().map_err(|_| XmlError::BadNumber(name)),
        }
    };
    let mut out = Vec::new();
    for m in children_named(root, "Message") {
        let message_id = child_text(m, "MessageId")
            .filter(|s| !s.is_empty())
            .ok_or(XmlError::Missing("MessageId"))?;
        let receipt_handle = child_text(m, "ReceiptHandle")
            .filter(|s| !s.is_empty())
            .ok_or(XmlError::Missing("ReceiptHandle"))?;
        out.push(ReceivedMessage {
            message_id,
            receipt_handle,
            body_md5: child_text(m, "MessageBodyMD5").unwrap_or_default(),
            body: child_text(m, "MessageBody").unwrap_or_default(),
            publish_time: num(m, "PublishTime")?,
            first_consume_time: num(m, "FirstConsumeTime")?,
            next_consume_time: num(m, "NextConsumeTime")?,
            consumed_times: num(m, "ConsumedTimes")?,
            tag: child_text(m, "MessageTag").filter(|t| !t.is_empty()),
            properties: child_text(m, "Properties").unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Renders an ack request body.
pub fn receipt_handles_to_xml<S: AsRef<str>>(handles: &[S]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = write!(out, "<ReceiptHandles xmlns=\"{XML_NS}\">");
    for h in handles {
        out.push_str("<ReceiptHandle>");
        out.push_str(&escape_request_text(h.as_ref()));
        out.push_str("</ReceiptHandle>");
    }
    out.push_str("</ReceiptHandles>");
    out
}

/// A request-level error (`<Error>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// `Code`.
    pub code: String,
    /// `Message`.
    pub message: String,
    /// `RequestId`.
    pub request_id: String,
    /// `HostId`.
    pub host_id: String,
}

impl ErrorBody {
    /// Parses an `<Error>` document.
    pub fn from_xml(xml: &str) -> Result<Self, XmlError> {
        let doc = parse(xml)?;
        let root = expect_root(&doc, "Error")?;
        Ok(ErrorBody {
            code: child_text(root, "Code").unwrap_or_default(),
            message: child_text(root, "Message").unwrap_or_default(),
            request_id: child_text(root, "RequestId").unwrap_or_default(),
            host_id: child_text(root, "HostId").unwrap_or_default(),
        })
    }
}

/// One failed handle of an ack (`<Errors><Error>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckError {
    /// `ErrorCode`.
    pub code: String,
    /// `ErrorMessage`.
    pub message: String,
    /// `ReceiptHandle`.
    pub receipt_handle: String,
}

/// Parses an `<Errors>` list.
pub fn ack_errors_from_xml(xml: &str) -> Result<Vec<AckError>, XmlError> {
    let doc = parse(xml)?;
    let root = expect_root(&doc, "Errors")?;
    Ok(children_named(root, "Error")
        .map(|e| AckError {
            code: child_text(e, "ErrorCode").unwrap_or_default(),
            message: child_text(e, "ErrorMessage").unwrap_or_default(),
            receipt_handle: child_text(e, "ReceiptHandle").unwrap_or_default(),
        })
        .collect())
}

/// The local name of a document's root element, if it parses.
pub fn root_name(xml: &str) -> Option<String> {
    let doc = parse(xml).ok()?;
    Some(doc.root_element().tag_name().name().to_string())
}

// ---------------------------------------------------------------------------------------------
// XML reading
// ---------------------------------------------------------------------------------------------

/// Why an XML document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Another root element than expected.
    #[error("unexpected XML root <{found}>, expected <{expected}>")]
    Root {
        expected: &'static str,
        found: String,
    },
    /// A required element is missing.
    #[error("XML element <{0}> is missing or empty")]
    Missing(&'static str),
    /// A numeric element does not parse.
    #[error("XML element <{0}> is not a number")]
    BadNumber(&'static str),
}

/// The deepest element nesting accepted in an API body. The API's documents are four
/// levels deep; the XML parser recurses per level, so an unbounded depth would let a peer
/// overflow the stack of the thread that parses it.
pub const MAX_XML_DEPTH: usize = 32;

/// The element nesting depth of `xml`, counted without parsing (tags, ignoring comments,
/// processing instructions, declarations, CDATA and `>` inside quoted attribute values);
/// stops counting once it passes `limit`.
fn nesting_depth(xml: &str, limit: usize) -> usize {
    let b = xml.as_bytes();
    let (mut i, mut depth, mut max) = (0usize, 0usize, 0usize);
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off + 1;
        let rest = &b[i..];
        let skip_to = |pat: &[u8]| {
            rest.windows(pat.len())
                .position(|w| w == pat)
                .map(|p| p + pat.len())
        };
        let skipped = if rest.starts_with(b"!--") {
            skip_to(b"-->")
        } else if rest.starts_with(b"![CDATA[") {
            skip_to(b"]]>")
        } else if rest.starts_with(b"?") || rest.starts_with(b"!") {
            skip_to(b">")
        } else if rest.starts_with(b"/") {
            depth = depth.saturating_sub(1);
            skip_to(b">")
        } else {
            // A start tag: find its end outside quotes; `/>` closes it at once.
            let mut quote = None;
            let mut end = None;
            for (k, &c) in rest.iter().enumerate() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(c),
                    (None, b'>') => {
                        end = Some(k);
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(k) = end
                && !(k > 0 && rest[k - 1] == b'/')
            {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    return max;
                }
            }
            end.map(|k| k + 1)
        };
        match skipped {
            Some(n) => i += n,
            None => break,
        }
    }
    max
}

/// Parses a document with the depth limit and without DTDs (every reader, either side).
pub(crate) fn parse(xml: &str) -> Result<roxmltree::Document<'_>, XmlError> {
    if nesting_depth(xml, MAX_XML_DEPTH) > MAX_XML_DEPTH {
        return Err(XmlError::Malformed(format!(
            "elements nested deeper than {MAX_XML_DEPTH} levels"
        )));
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, opts)
        .map_err(|e| XmlError::Malformed(e.to_string()))
}

/// The root element, if it is `expected`.
pub(crate) fn expect_root<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    expected: &'static str,
) -> Result<roxmltree::Node<'a, 'i>, XmlError> {
    let root = doc.root_element();
    if root.tag_name().name() != expected {
        return Err(XmlError::Root {
            expected,
            found: root.tag_name().name().to_string(),
        });
    }
    Ok(root)
}

/// All text (including CDATA) directly inside `node`, concatenated.
pub(crate) fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect()
}

/// The child elements of `node` called `name`, in document order.
pub(crate) fn children_named<'a, 'i: 'a>(
    node: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// The text of `node`'s first child element called `name`.
pub(crate) fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .map(text_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize, root: &str) -> String {
        let mut x = format!("<{root}>");
        x.push_str(&"<a>".repeat(depth));
        x.push_str(&"</a>".repeat(depth));
        x.push_str(&format!("</{root}>"));
        x
    }

    /// A peer's deeply nested XML is refused, not parsed (the parser's recursion used to
    /// overflow the stack at ~5,000 levels and abort the whole daemon or emulator).
    #[test]
    fn deeply_nested_xml_is_refused_without_recursing() {
        for depth in [100_000, 5_000, MAX_XML_DEPTH] {
            let x = nested(depth, "Messages");
            let e = messages_from_xml(&x).unwrap_err();
            assert!(e.to_string().contains("nested deeper than 32"), "{e}");
            assert!(PublishResult::from_xml(&nested(depth, "Message")).is_err());
            assert_eq!(root_name(&x), None);
        }
        // Just inside the limit still parses (root + 31 levels).
        assert_eq!(
            root_name(&nested(MAX_XML_DEPTH - 1, "Messages")).as_deref(),
            Some("Messages")
        );
    }

    #[test]
    fn nesting_depth_skips_what_is_not_an_element() {
        let x = r#"<?xml version="1.0"?><!-- <x><y> --><R a="<b>" b='>'><![CDATA[<c><d>]]><e/><f></f></R>"#;
        assert_eq!(nesting_depth(x, 64), 2);
        assert_eq!(nesting_depth("<a><b><c/></b></a>", 64), 2);
        assert_eq!(nesting_depth("<a", 64), 0);
        assert_eq!(
            nesting_depth(&"<a>".repeat(1000), 10),
            11,
            "stops counting past the limit"
        );
    }

    #[test]
    fn worked_example_from_the_spec() {
        let input = SignInput {
            method: "GET",
            content_md5: Some("ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U="),
            content_type: Some("text/xml;charset=utf-8"),
            date: "Mon, 15 Jan 2024 10:30:00 GMT",
            mq_headers: &[("X-Mq-Version", "2015-06-06")],
            resource: "/topics/TopicA/messages?consumer=GID_test&ns=MQ_INST_1234567890123456_BXhkzQ0A&numOfMessages=3&waitseconds=5&tag=TagA%7C%7CTagB",
        };
        assert_eq!(
            authorization(
                "TESTAKID1234567890",
                "TestSecretKey0123456789abcdef",
                &input
            ),
            "MQ TESTAKID1234567890:vMgw6QBrKUfBknrLKoyotl+6l5c="
        );
        assert_eq!(
            content_md5(b""),
            "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U="
        );
    }

    #[test]
    fn properties_round_trip_and_rejections() {
        let enc = encode_properties(&[("KEYS", "a b"), ("color", "red")]).unwrap();
        assert_eq!(enc, "KEYS:a b|color:red|");
        assert_eq!(
            parse_properties(&enc),
            vec![
                ("KEYS".into(), "a b".into()),
                ("color".into(), "red".into())
            ]
        );
        assert_eq!(
            parse_properties("a:1|bad|c:|:d|e:f:g|h:2"),
            vec![("a".into(), "1".into()), ("h".into(), "2".into())]
        );
        for bad in ["a|b", "a:b", "<", ">", "&", "'", "\""] {
            let e = encode_properties(&[("k", bad)]).unwrap_err();
            assert!(matches!(e, PropertyError::Forbidden { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("cannot carry"), "{e}");
        }
        assert!(matches!(
            encode_properties(&[("k", "")]).unwrap_err(),
            PropertyError::Empty { .. }
        ));
        assert!(matches!(
            encode_properties(&[("k", "a\u{1}b")]).unwrap_err(),
            PropertyError::Control { .. }
        ));
    }
}
