//! Wire fix-ups for servers whose replies `rocketmq-client-rust` 1.0.0 does not decode as they
//! are. An [`RPCHook`] sees every response before the crate reads it; this one repairs what
//! the crate would refuse and passes everything else (and the ACL signing of the wrapped hook)
//! through untouched.
//!
//! - **4.x name servers** (Apache RocketMQ 4.9.x, the Alibaba Cloud 4.x instances) send route
//!   data whose `BrokerData` has no `enableActingMaster` (a 5.0 field). The crate decodes that
//!   field as a required `bool`, so every route lookup, and with it every send and every pull,
//!   failed with `core.serialization.failed`. The hook adds `"enableActingMaster":false`, which
//!   is what a 4.x broker means (it has no acting master), to route replies that lack it.
//! - **4.x ACL 1.0** rejects a request by throwing `AclException`, which reaches the client as
//!   `SYSTEM_ERROR` (1) with the exception text as remark (`org.apache.rocketmq.acl.common.
//!   AclException: Check signature failed for accessKey=…`); 5.x ACL 2.0 answers
//!   `NO_PERMISSION` (16). The crate keeps the code but drops the remark, so a wrong secret
//!   looked like any broker failure. The hook turns such a reply into `NO_PERMISSION`, remark
//!   kept.
//! - **4.x brokers refuse `LITE_PULL_MESSAGE`** (361, "request type 361 not supported"), the
//!   code every pull of the crate's lite-pull consumer (our concurrent input) carries. The
//!   header is the one of `PULL_MESSAGE` (11), and 5.x brokers route both codes to the same
//!   processor, so the hook sends every lite pull as `PULL_MESSAGE`. Pulls a broker still
//!   refuses are logged at debug with its code and remark (the crate only reports "Broker
//!   operation failed").
//! - **Batch sends carry the batch's own `UNIQ_KEY`** in the request header's properties (the
//!   crate, like Java's `DefaultMQProducer.batch`, gives the batch an id of its own). The Java
//!   5.3.3 broker appends the header's properties to each message of the batch, and the later
//!   key wins when a consumer decodes them: every message of a batch reached consumers with
//!   the batch's id instead of its own (measured: `tests/tcp_transport.rs`, coalesced creates).
//!   The hook removes `UNIQ_KEY` from the header of `SEND_BATCH_MESSAGE`, so each message keeps
//!   the id its receipt names.

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use cheetah_string::CheetahString;
use rocketmq_error::SharedError;
use rocketmq_protocol::protocol::header::message_operation_header::send_message_request_header_v2::SendMessageRequestHeaderV2;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use rocketmq_transport::api::RPCHook;

/// `GET_ROUTEINFO_BY_TOPIC` (Java `RequestCode`).
const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
/// Java `ResponseCode`s.
const SYSTEM_ERROR: i32 = 1;
const NO_PERMISSION: i32 = 16;

/// The hook every producer and consumer gets: the fix-ups, then `inner` (ACL signing), if any.
pub fn hook(inner: Option<Arc<dyn RPCHook>>) -> Arc<dyn RPCHook> {
    Arc::new(CompatHook { inner })
}

/// `SEND_BATCH_MESSAGE` (Java `RequestCode`).
const SEND_BATCH_MESSAGE: i32 = 320;
/// The message id property (Java `MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX`).
const UNIQ_KEY: &str = "UNIQ_KEY";

/// `PULL_MESSAGE` / `LITE_PULL_MESSAGE` request codes.
const PULL_MESSAGE: i32 = 11;
const LITE_PULL_MESSAGE: i32 = 361;

struct CompatHook {
    inner: Option<Arc<dyn RPCHook>>,
}

impl RPCHook for CompatHook {
    fn do_before_request(
        &self,
        remote_addr: SocketAddr,
        request: &mut RemotingCommand,
    ) -> Result<(), SharedError> {
        // The lite-pull consumer pulls with LITE_PULL_MESSAGE (361), which 4.x brokers refuse
        // ("request type 361 not supported"); PULL_MESSAGE carries the same header and both
        // 5.x codes go to the same processor, so every pull is sent as PULL_MESSAGE.
        if request.code() == LITE_PULL_MESSAGE {
            request.set_code_ref(PULL_MESSAGE);
        }
        if request.code() == SEND_BATCH_MESSAGE
            && let Some(h) = request.read_custom_header_mut::<SendMessageRequestHeaderV2>()
            && let Some(props) = h.i.as_ref()
            && let Some(kept) = without_property(props.as_str(), UNIQ_KEY)
        {
            h.i = Some(CheetahString::from_string(kept));
        }
        match &self.inner {
            Some(h) => h.do_before_request(remote_addr, request),
            None => Ok(()),
        }
    }

    fn do_after_response(
        &self,
        remote_addr: SocketAddr,
        request: &RemotingCommand,
        response: &mut RemotingCommand,
    ) -> Result<(), SharedError> {
        if request.code() == GET_ROUTEINFO_BY_TOPIC
            && response.code() == 0
            && let Some(fixed) = response
                .get_body()
                .and_then(|b| route_with_acting_master(b))
        {
            response.set_body_mut_ref(fixed);
        }
        if matches!(request.code(), PULL_MESSAGE | LITE_PULL_MESSAGE)
            && !matches!(response.code(), 0 | 19 | 20 | 21 | 22)
        {
            // Not found / no new message / retry immediately / offset moved are ordinary
            // answers; anything else is why a pull failed (the client only says "Broker
            // operation failed").
            tracing::debug!(
                request = request.code(),
                code = response.code(),
                remark = %response.remark().map(|r| r.as_str()).unwrap_or_default(),
                "pull refused by the broker"
            );
        }
        if response.code() == SYSTEM_ERROR
            && response
                .remark()
                .is_some_and(|r| r.as_str().contains("acl.common.AclException"))
        {
            response.set_code_ref(NO_PERMISSION);
        }
        match &self.inner {
            Some(h) => h.do_after_response(remote_addr, request, response),
            None => Ok(()),
        }
    }
}

/// A 4.x route body (no `enableActingMaster` anywhere) with `"enableActingMaster":false` added
/// to each broker entry; `None` when the body already has the field or is not a route.
///
/// Textual on purpose: every `BrokerData` has exactly one `brokerAddrs` key and no other part
/// of `TopicRouteData` uses that name, and fastjson may write the broker-id keys of
/// `brokerAddrs` unquoted (`{0:"host:port"}`), which a JSON parser would refuse.
pub(super) fn route_with_acting_master(body: &[u8]) -> Option<Bytes> {
    const FIELD: &[u8] = b"\"enableActingMaster\"";
    const ADDRS: &[u8] = b"\"brokerAddrs\":";
    if find(body, FIELD).is_some() || find(body, ADDRS).is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    while let Some(i) = find(rest, ADDRS) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(b"\"enableActingMaster\":false,");
        out.extend_from_slice(ADDRS);
        rest = &rest[i + ADDRS.len()..];
    }
    out.extend_from_slice(rest);
    Some(Bytes::from(out))
}

/// A RocketMQ properties string (`name\u{1}value\u{2}…`) without `name`; `None` when it has
/// no such entry.
pub(super) fn without_property(props: &str, name: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(props.len());
    for entry in props.split('\u{2}').filter(|e| !e.is_empty()) {
        if entry.split('\u{1}').next() == Some(name) {
            found = true;
            continue;
        }
        out.push_str(entry);
        out.push('\u{2}');
    }
    found.then_some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;

    #[test]
    fn a_property_is_removed_from_a_properties_string_and_the_rest_kept() {
        let p = "WAIT\u{1}true\u{2}UNIQ_KEY\u{1}AC11\u{2}CLUSTER\u{1}c\u{2}";
        assert_eq!(
            without_property(p, "UNIQ_KEY").as_deref(),
            Some("WAIT\u{1}true\u{2}CLUSTER\u{1}c\u{2}")
        );
        assert_eq!(without_property("WAIT\u{1}true", "UNIQ_KEY"), None);
        assert_eq!(
            without_property("UNIQ_KEY\u{1}x", "UNIQ_KEY").as_deref(),
            Some("")
        );
        assert_eq!(
            without_property("UNIQ_KEYS\u{1}x", "UNIQ_KEY"),
            None,
            "whole names only"
        );
    }

    /// Route data as an Apache RocketMQ 4.9.7 name server returns it (captured), two brokers.
    const ROUTE_4X: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:40911"},"brokerName":"broker-a","cluster":"DefaultCluster"},{"brokerAddrs":{0:"127.0.0.1:40921",1:"127.0.0.1:40922"},"brokerName":"broker-b","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":7,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}]}"#;

    #[test]
    fn a_4x_route_decodes_only_after_the_fix_up() {
        assert!(
            TopicRouteData::decode(ROUTE_4X.as_bytes()).is_err(),
            "the crate now decodes 4.x routes itself: this fix-up can go"
        );
        let fixed = route_with_acting_master(ROUTE_4X.as_bytes()).unwrap();
        let route = TopicRouteData::decode(&fixed).unwrap();
        assert_eq!(route.broker_datas.len(), 2);
        assert_eq!(route.queue_datas[0].write_queue_nums, 8);
        let text = String::from_utf8(fixed.to_vec()).unwrap();
        assert_eq!(text.matches("\"enableActingMaster\":false").count(), 2);
    }

    #[test]
    fn routes_of_5x_servers_and_other_bodies_are_left_alone() {
        let route_5x = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b","cluster":"c","enableActingMaster":false}],"queueDatas":[]}"#;
        assert!(route_with_acting_master(route_5x.as_bytes()).is_none());
        assert!(route_with_acting_master(b"{\"consumerIdList\":[]}").is_none());
        assert!(route_with_acting_master(b"").is_none());
    }

    #[test]
    fn the_hook_fixes_only_successful_route_replies() {
        let h = hook(None);
        let addr: SocketAddr = "127.0.0.1:9876".parse().unwrap();
        let reply = |code: i32| {
            RemotingCommand::create_response_command_with_code(code).set_body(ROUTE_4X.as_bytes())
        };
        let route_req = RemotingCommand::create_remoting_command(GET_ROUTEINFO_BY_TOPIC);
        let mut ok = reply(0);
        h.do_after_response(addr, &route_req, &mut ok).unwrap();
        assert!(TopicRouteData::decode(ok.get_body().unwrap()).is_ok());
        let mut failed = reply(17);
        h.do_after_response(addr, &route_req, &mut failed).unwrap();
        assert_eq!(failed.get_body().unwrap().as_ref(), ROUTE_4X.as_bytes());
        let other_req = RemotingCommand::create_remoting_command(10);
        let mut other = reply(0);
        h.do_after_response(addr, &other_req, &mut other).unwrap();
        assert_eq!(other.get_body().unwrap().as_ref(), ROUTE_4X.as_bytes());
    }

    #[test]
    fn lite_pulls_are_sent_as_plain_pulls_other_requests_unchanged() {
        let h = hook(None);
        let addr: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let mut lite = RemotingCommand::create_remoting_command(LITE_PULL_MESSAGE);
        h.do_before_request(addr, &mut lite).unwrap();
        assert_eq!(lite.code(), PULL_MESSAGE);
        let mut route = RemotingCommand::create_remoting_command(GET_ROUTEINFO_BY_TOPIC);
        h.do_before_request(addr, &mut route).unwrap();
        assert_eq!(route.code(), GET_ROUTEINFO_BY_TOPIC);
    }

    #[test]
    fn a_4x_acl_rejection_becomes_no_permission_other_system_errors_stay() {
        let h = hook(None);
        let addr: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let send = RemotingCommand::create_remoting_command(10);
        // What an Apache RocketMQ 4.9.7 broker with aclEnable answers to a wrong secret.
        let acl = "org.apache.rocketmq.acl.common.AclException: Check signature failed for \
                   accessKey=rocketmq, org.apache.rocketmq.acl.plain.PlainPermissionManager.\
                   validate(PlainPermissionManager.java:683)";
        let mut r = RemotingCommand::create_response_command_with_code_remark(SYSTEM_ERROR, acl);
        h.do_after_response(addr, &send, &mut r).unwrap();
        assert_eq!(r.code(), NO_PERMISSION);
        assert_eq!(r.remark().unwrap().as_str(), acl);
        let mut busy =
            RemotingCommand::create_response_command_with_code_remark(SYSTEM_ERROR, "disk full");
        h.do_after_response(addr, &send, &mut busy).unwrap();
        assert_eq!(busy.code(), SYSTEM_ERROR);
    }
}
