//! aliyun-mq-emulator at the HTTP level: every captured SDK request (Python, Node, Go and
//! Java, from the spec's vectors) is replayed byte for byte and accepted, and the error
//! paths of spec §1.7 / §2 / §6 answer with the right status, code and headers.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rocketmq_binding::{
    emulator::{self, Config, Credential, Emulator},
    transport::http::protocol::{self, SignInput},
};
use secrecy::SecretString;
use serde_json::Value;

const VECTORS: &str = include_str!("data/aliyun-http-vectors.json");
const AK: &str = "TESTAKID1234567890";
const SK: &str = "TestSecretKey0123456789abcdef";

async fn emu(cfg: impl FnOnce(&mut Config)) -> Emulator {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), AK, SK);
    cfg(&mut c);
    emulator::spawn(c).await.unwrap()
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn raw(
    e: &Emulator,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> Resp {
    let url = format!("{}{}", e.endpoint(), target);
    let mut req = reqwest::Client::new()
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .timeout(Duration::from_secs(40))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.expect("request");
    Resp {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// A correctly signed request, Go-style headers.
async fn signed(e: &Emulator, method: &str, target: &str, body: &str, secret: &str) -> Resp {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let md5 = protocol::content_md5(body.as_bytes());
    let mq = [("x-mq-version", protocol::MQ_VERSION)];
    let auth = protocol::authorization(
        AK,
        secret,
        &SignInput {
            method,
            content_md5: Some(&md5),
            content_type: Some(protocol::CONTENT_TYPE),
            date: &date,
            mq_headers: &mq,
            resource: target,
        },
    );
    let h = [
        ("Date", date.as_str()),
        ("Content-MD5", md5.as_str()),
        ("Content-Type", protocol::CONTENT_TYPE),
        ("x-mq-version", protocol::MQ_VERSION),
        ("Authorization", auth.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    raw(e, method, target, &h, body).await
}

fn code_of(r: &Resp) -> String {
    protocol::ErrorBody::from_xml(&r.body)
        .map(|e| e.code)
        .unwrap_or_default()
}

fn assert_common_headers(r: &Resp) {
    assert!(r.headers.contains_key("x-mq-request-id"), "{:?}", r.headers);
    assert_eq!(r.headers["x-mq-version"], protocol::MQ_VERSION);
    assert!(r.headers.contains_key("date"));
    if !r.body.is_empty() {
        assert_eq!(r.headers["content-type"], protocol::CONTENT_TYPE);
        assert!(r.headers.contains_key("content-length"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_sdk_request_is_accepted() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let e = emu(|_| {}).await;
    // Publishes first (in order), then every other request concurrently: some carry a
    // long poll of a few seconds.
    let mut vs: Vec<&Value> = doc["vectors"].as_array().unwrap().iter().collect();
    vs.sort_by_key(|v| v["method"] != "POST");
    let mut n = 0;
    let mut rest = Vec::new();
    for v in vs {
        if v["method"] == "POST" {
            replay_one(&e, v).await;
            n += 1;
        } else {
            rest.push(replay_one(&e, v));
        }
    }
    let answers = futures::future::join_all(rest).await;
    n += answers.len();
    assert_eq!(n, 54);
    // Both GET answers occur after the publishes: some polls get messages, the rest find the
    // queue drained by the concurrent ones.
    let got = answers.iter().filter(|s| s.as_u16() == 200).count();
    assert!(
        got >= 1,
        "no GET vector received any of the published messages"
    );
}

/// Every signed GET vector against an empty emulator: each must be authenticated and answered
/// 404 `MessageNotExist` (403 for the vectors signed with another secret). No 200 can pass
/// here, so a GET the emulator misparsed cannot hide behind "200 or 404".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_get_on_an_empty_queue_is_message_not_exist() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let e = emu(|_| {}).await;
    let gets: Vec<&Value> = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["method"] == "GET")
        .collect();
    assert!(gets.len() >= 20, "{} GET vectors", gets.len());
    let answers = futures::future::join_all(gets.iter().map(|v| async {
        let id = v["id"].as_str().unwrap();
        let headers = vector_headers(v);
        let r = raw(
            &e,
            "GET",
            v["path_and_query"].as_str().unwrap(),
            &headers,
            "",
        )
        .await;
        (id, v["access_key_secret"].as_str() != Some(SK), r)
    }))
    .await;
    for (id, bad_secret, r) in answers {
        assert_common_headers(&r);
        if bad_secret {
            assert_eq!(r.status, 403, "{id}: {}", r.body);
        } else {
            assert_eq!(r.status, 404, "{id}: {}", r.body);
            assert_eq!(code_of(&r), "MessageNotExist", "{id}");
        }
    }
}

/// The headers a vector was sent with, minus the connection-level ones the client sets.
fn vector_headers(v: &Value) -> Vec<(String, String)> {
    v["headers_as_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .filter(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "host" | "content-length" | "connection" | "expect" | "accept-encoding"
            )
        })
        .collect()
}

async fn replay_one(e: &Emulator, v: &Value) -> StatusCode {
    let id = v["id"].as_str().unwrap();
    let headers = vector_headers(v);
    let method = v["method"].as_str().unwrap();
    let target = v["path_and_query"].as_str().unwrap();
    let r = raw(e, method, target, &headers, v["body"].as_str().unwrap()).await;
    assert_common_headers(&r);
    let bad_secret = v["access_key_secret"].as_str() != Some(SK);
    match method {
        _ if bad_secret => {
            assert_eq!(r.status, 403, "{id}");
            assert_eq!(code_of(&r), "SignatureDoesNotMatch", "{id}");
            let golden = v["response"]["body"].as_str().unwrap();
            assert_eq!(
                protocol::ErrorBody::from_xml(golden).unwrap().message,
                protocol::ErrorBody::from_xml(&r.body).unwrap().message,
                "{id}: SDK-exact message"
            );
        }
        "POST" => {
            assert_eq!(r.status, 201, "{id}: {}", r.body);
            let res = protocol::PublishResult::from_xml(&r.body).unwrap();
            assert_eq!(res.message_id.len(), 32);
            let half = v["body"].as_str().unwrap().contains("__TransCheckT");
            assert_eq!(res.receipt_handle.is_some(), half, "{id}");
        }
        "GET" => {
            // Messages published by the replays above, or MessageNotExist (404).
            match r.status.as_u16() {
                200 => assert!(!protocol::messages_from_xml(&r.body).unwrap().is_empty()),
                404 => assert_eq!(code_of(&r), "MessageNotExist", "{id}"),
                s => panic!("{id}: status {s}: {}", r.body),
            }
        }
        "DELETE" => {
            // The captured handles are not ours: per-handle errors in an <Errors> list.
            assert_eq!(r.status, 404, "{id}: {}", r.body);
            let errs = protocol::ack_errors_from_xml(&r.body).unwrap();
            assert!(!errs.is_empty());
            assert!(errs.iter().all(|x| x.code == "ReceiptHandleError"
                && !x.message.is_empty()
                && !x.receipt_handle.is_empty()));
        }
        m => panic!("{id}: method {m}"),
    }
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_errors() {
    let e = emu(|c| c.check_clock_skew = true).await;
    let t = "/topics/T/messages?consumer=G&numOfMessages=1";
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    for (headers, status, code) in [
        (h(&[("Date", &now)]), 400, "MissingAuthorizationHeader"),
        (
            h(&[("Authorization", "Bearer x"), ("Date", &now)]),
            400,
            "InvalidAuthorizationHeader",
        ),
        (
            h(&[("Authorization", "MQ nocolon")]),
            400,
            "InvalidAuthorizationHeader",
        ),
        (h(&[("Authorization", "MQ a:b")]), 400, "MissingDateHeader"),
        (
            h(&[("Authorization", "MQ a:b"), ("Date", "yesterday")]),
            400,
            "InvalidDateHeader",
        ),
        (
            h(&[
                ("Authorization", "MQ a:b"),
                ("Date", "Mon, 15 Jan 2024 10:30:00 GMT"),
            ]),
            408,
            "TimeExpired",
        ),
        (
            h(&[("Authorization", "MQ nobody:c2ln"), ("Date", &now)]),
            403,
            "InvalidAccessKeyId",
        ),
        (
            h(&[("Authorization", &format!("MQ {AK}:c2ln")), ("Date", &now)]),
            403,
            "SignatureDoesNotMatch",
        ),
    ] {
        let r = raw(&e, "GET", t, &headers, "").await;
        assert_eq!(r.status.as_u16(), status, "{headers:?}: {}", r.body);
        assert_eq!(code_of(&r), code, "{headers:?}");
        let err = protocol::ErrorBody::from_xml(&r.body).unwrap();
        assert!(!err.message.is_empty() && !err.request_id.is_empty() && !err.host_id.is_empty());
        assert_eq!(
            err.request_id,
            r.headers["x-mq-request-id"].to_str().unwrap()
        );
        assert!(r.body.contains("xmlns=\"http://mq.aliyuncs.com/doc/v1\""));
        assert_common_headers(&r);
    }
    // A wrong secret.
    let r = signed(&e, "GET", t, "", "wrong").await;
    assert_eq!(
        (r.status.as_u16(), code_of(&r)),
        (403, "SignatureDoesNotMatch".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_token_is_checked_when_configured() {
    let e = emu(|c| {
        c.credentials = vec![Credential {
            access_key: AK.into(),
            secret_key: SecretString::from(SK),
            security_token: Some(SecretString::from("the-token")),
        }]
    })
    .await;
    let r = signed(
        &e,
        "GET",
        "/topics/T/messages?consumer=G&numOfMessages=1",
        "",
        SK,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code_of(&r)),
        (403, "AccessDenied".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_and_success_shapes() {
    let e = emu(|_| {}).await;
    let pub_body = PublishBody("hi");
    // Publish, consume, ack: 201, 200, 204 (no body).
    let r = signed(&e, "POST", "/topics/T/messages", &pub_body.xml(), SK).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = signed(
        &e,
        "GET",
        "/topics/T/messages?consumer=G&numOfMessages=16",
        "",
        SK,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let msgs = protocol::messages_from_xml(&r.body).unwrap();
    assert_eq!(msgs[0].body, "hi");
    assert_eq!(msgs[0].body_md5, emulator::wire::body_md5("hi"));
    let ack = protocol::receipt_handles_to_xml(&[msgs[0].receipt_handle.as_str()]);
    let r = signed(&e, "DELETE", "/topics/T/messages?consumer=G", &ack, SK).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_common_headers(&r);

    let many: Vec<String> = (0..17).map(|i| format!("h{i}")).collect();
    for (method, target, body, status, code) in [
        (
            "PUT",
            "/topics/T/messages",
            String::new(),
            400,
            "InvalidRequestURL",
        ),
        (
            "GET",
            "/queues/T/messages?consumer=G&numOfMessages=1",
            String::new(),
            400,
            "InvalidRequestURL",
        ),
        (
            "GET",
            "/topics/T/messages?numOfMessages=1",
            String::new(),
            400,
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/T/messages?consumer=G&numOfMessages=17",
            String::new(),
            400,
            "InvalidArgument",
        ),
        (
            "GET",
            "/topics/T/messages?consumer=G&numOfMessages=1&waitseconds=31",
            String::new(),
            400,
            "InvalidArgument",
        ),
        (
            "POST",
            "/topics/T/messages",
            "<Message><MessageBody>x".into(),
            400,
            "MalformedXML",
        ),
        (
            "POST",
            "/topics/T/messages",
            PublishBody("").xml(),
            400,
            "InvalidArgument",
        ),
        (
            "POST",
            "/topics/T/messages",
            "<Message/>".into(),
            400,
            "InvalidArgument",
        ),
        (
            "DELETE",
            "/topics/T/messages?consumer=G",
            "<ReceiptHandles/>".into(),
            400,
            "MissingReceiptHandle",
        ),
        (
            "DELETE",
            "/topics/T/messages?consumer=G",
            protocol::receipt_handles_to_xml(&many),
            400,
            "InvalidArgument",
        ),
        (
            "DELETE",
            "/topics/T/messages?consumer=G",
            "garbage".into(),
            400,
            "MalformedXML",
        ),
    ] {
        let r = signed(&e, method, target, &body, SK).await;
        assert_eq!(
            (r.status.as_u16(), code_of(&r)),
            (status, code.to_string()),
            "{method} {target} {body}"
        );
        assert_common_headers(&r);
    }

    // A Content-MD5 that does not match the body.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let md5 = protocol::content_md5(b"something else");
    let mq = [("x-mq-version", protocol::MQ_VERSION)];
    let target = "/topics/T/messages";
    let auth = protocol::authorization(
        AK,
        SK,
        &SignInput {
            method: "POST",
            content_md5: Some(&md5),
            content_type: None,
            date: &date,
            mq_headers: &mq,
            resource: target,
        },
    );
    let h: Vec<(String, String)> = [
        ("Date", date.as_str()),
        ("Content-MD5", md5.as_str()),
        ("x-mq-version", protocol::MQ_VERSION),
        ("Authorization", auth.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = raw(&e, "POST", target, &h, &pub_body.xml()).await;
    assert_eq!(
        (r.status.as_u16(), code_of(&r)),
        (400, "InvalidDigest".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waits_then_answers_message_not_exist() {
    let e = emu(|_| {}).await;
    let t0 = std::time::Instant::now();
    let r = signed(
        &e,
        "GET",
        "/topics/E/messages?consumer=G&numOfMessages=1&waitseconds=1",
        "",
        SK,
    )
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        (r.status.as_u16(), code_of(&r)),
        (404, "MessageNotExist".into())
    );
    // Form-decoded tag: `+` is a space, `%7C%7C` is `||`; `*` is everything.
    let r = signed(
        &e,
        "POST",
        "/topics/F/messages",
        &PublishBody("x").tagged("A B"),
        SK,
    )
    .await;
    assert_eq!(r.status, 201);
    let r = signed(
        &e,
        "GET",
        "/topics/F/messages?consumer=G&numOfMessages=1&tag=Z%7C%7CA+B",
        "",
        SK,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = signed(
        &e,
        "GET",
        "/topics/F/messages?consumer=G2&numOfMessages=1&tag=%2A",
        "",
        SK,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

struct PublishBody(&'static str);

impl PublishBody {
    fn xml(&self) -> String {
        protocol::PublishMessage {
            body: self.0.to_string(),
            tag: None,
            properties: String::new(),
        }
        .to_xml()
    }

    fn tagged(&self, tag: &str) -> String {
        protocol::PublishMessage {
            body: self.0.to_string(),
            tag: Some(tag.to_string()),
            properties: String::new(),
        }
        .to_xml()
    }
}
