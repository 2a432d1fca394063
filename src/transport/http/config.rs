//! Settings only the http transport reads, decoded here (the common and Dapr-level keys are
//! [`crate::metadata`]'s): `endpoint`, and the http rules for shared keys: signed requests
//! need `accessKey`, `consumerBatchSize` is `numOfMessages` (1–16), and the Aliyun MQ HTTP
//! API has neither broadcasting nor SQL92 filters.
//!
//! After [`decode`] accepted an `accessProto: http` Component, its [`Settings`] holds an
//! endpoint and both keys, and clustering; [`super::open`] relies on that.

use crate::metadata::{
    AccessProto, ConsumerModel, MetadataError, Props, Settings, invalid, parse_http_url, parse_int,
};

/// The [`Owner::Http`](crate::metadata::Owner::Http) keys, and the http rules when `accessProto` is http, into `s`.
pub fn decode(p: &Props<'_>, s: &mut Settings) -> Result<(), MetadataError> {
    s.endpoint = match p.get("endpoint") {
        Some(v) => Some(
            parse_http_url(
                "endpoint",
                v,
                "an http:// or https:// URL such as http://<id>.mqrest.cn-hangzhou.aliyuncs.com",
            )?
            .trim_end_matches('/')
            .to_string(),
        ),
        None => None,
    };
    if s.access_proto != AccessProto::Http {
        return Ok(());
    }
    if s.endpoint.is_none() {
        return Err(MetadataError::Missing {
            key: "endpoint",
            why: "with accessProto http".into(),
        });
    }
    if s.access_key.is_none() {
        return Err(MetadataError::Missing {
            key: "accessKey",
            why: "with accessProto http (every request is signed)".into(),
        });
    }
    if let Some(v) = p.get("consumerBatchSize") {
        s.consumer_batch_size = Some(parse_int("consumerBatchSize", v, 1, 16)? as u32);
    }
    if s.consumer_model == ConsumerModel::Broadcasting {
        return Err(invalid(
            "consumerModel",
            p.get("consumerModel").unwrap_or_default(),
            "`clustering` with accessProto http (the Aliyun MQ HTTP API has no broadcasting)",
        ));
    }
    if let Some(ty) = p
        .get("rocketmq-sub-type")
        .map(str::trim)
        .filter(|t| t.eq_ignore_ascii_case("sql92"))
    {
        return Err(invalid(
            "rocketmq-sub-type",
            ty,
            "tag with accessProto http (the Aliyun MQ HTTP API has no SQL92 filter)",
        ));
    }
    Ok(())
}
