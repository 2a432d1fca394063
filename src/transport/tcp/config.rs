//! Settings only the tcp transport reads, decoded here (the common and Dapr-level keys are
//! [`crate::metadata`]'s): the name servers (`nameServer`, `nameServerDomain`), the SQL92
//! filter (`rocketmq-sub-type`, `rocketmq-sub-expression`), the consumer's cache bounds
//! (`pullThreshold*`), `consumeMessageBatchMaxSize`, the output's `maxSendBatch`, and
//! `consumerBatchSize`'s tcp range.
//!
//! The values land in the plain [`Settings`] fields of the same names; the keys are the
//! [`Owner::Tcp`](crate::metadata::Owner::Tcp) rows of [`crate::metadata::KEYS`].

use crate::metadata::{
    AccessProto, DEFAULT_MAX_SEND_BATCH, DEFAULT_PULL_THRESHOLD_FOR_QUEUE,
    DEFAULT_PULL_THRESHOLD_FOR_TOPIC, DEFAULT_PULL_THRESHOLD_SIZE_FOR_QUEUE, MetadataError, Props,
    Settings, Subscription, invalid, parse_http_url, parse_int, parse_name_servers,
};

/// The [`Owner::Tcp`](crate::metadata::Owner::Tcp) keys (and, for tcp, `consumerBatchSize`) into `s`.
pub fn decode(p: &Props<'_>, s: &mut Settings) -> Result<(), MetadataError> {
    s.name_servers = match p.get("nameServer") {
        Some(v) => parse_name_servers("nameServer", v)?,
        None => Vec::new(),
    };
    s.name_server_domain = match p.get("nameServerDomain") {
        Some(v) => Some(
            parse_http_url(
                "nameServerDomain",
                v,
                "an http:// or https:// URL of an address server",
            )?
            .to_string(),
        ),
        None => None,
    };
    if s.access_proto == AccessProto::Tcp
        && s.name_servers.is_empty()
        && s.name_server_domain.is_none()
    {
        return Err(MetadataError::Missing {
            key: "nameServer",
            why: "with accessProto tcp (or set nameServerDomain)".into(),
        });
    }
    if s.access_proto == AccessProto::Tcp
        && let Some(v) = p.get("consumerBatchSize")
    {
        s.consumer_batch_size = Some(parse_int("consumerBatchSize", v, 1, 1024)? as u32);
    }
    s.consume_batch_max_size = match p.get("consumeMessageBatchMaxSize") {
        Some(v) => parse_int("consumeMessageBatchMaxSize", v, 1, 1024)? as u32,
        None => 1,
    };
    s.sql_filter = decode_sql_filter(p, &s.topics)?;
    s.pull_threshold_for_queue = match p.get("pullThresholdForQueue") {
        Some(v) => parse_int("pullThresholdForQueue", v, 1, 65_535)? as u32,
        None => DEFAULT_PULL_THRESHOLD_FOR_QUEUE,
    };
    s.pull_threshold_size_for_queue = match p.get("pullThresholdSizeForQueue") {
        Some(v) => parse_int("pullThresholdSizeForQueue", v, 1, 1024)? as u32,
        None => DEFAULT_PULL_THRESHOLD_SIZE_FOR_QUEUE,
    };
    s.pull_threshold_for_all = match p.get("pullThresholdForTopic") {
        Some(v) => parse_int("pullThresholdForTopic", v, 1, 1_000_000)? as u32,
        None => DEFAULT_PULL_THRESHOLD_FOR_TOPIC,
    };
    s.max_send_batch = match p.get("maxSendBatch") {
        Some(v) => parse_int("maxSendBatch", v, 1, 1024)? as u32,
        None => DEFAULT_MAX_SEND_BATCH,
    };
    Ok(())
}

/// `rocketmq-sub-type` (`tag`, the default: the tags in `topics`; or `sql92`) and
/// `rocketmq-sub-expression` (the SQL92 expression, for every topic).
fn decode_sql_filter(
    p: &Props<'_>,
    topics: &[Subscription],
) -> Result<Option<String>, MetadataError> {
    let ty = p.get("rocketmq-sub-type").map(str::trim).unwrap_or("tag");
    let expr = p.get("rocketmq-sub-expression").map(str::trim);
    if ty.eq_ignore_ascii_case("tag") {
        if let Some(e) = expr.filter(|e| !e.is_empty()) {
            return Err(invalid(
                "rocketmq-sub-expression",
                e,
                "only with rocketmq-sub-type sql92 (tag filters go into topics: `topic||tagA||tagB`)",
            ));
        }
        return Ok(None);
    }
    if !ty.eq_ignore_ascii_case("sql92") {
        return Err(invalid("rocketmq-sub-type", ty, "tag (default) or sql92"));
    }
    let Some(e) = expr.filter(|e| !e.is_empty()) else {
        return Err(MetadataError::Missing {
            key: "rocketmq-sub-expression",
            why: "with rocketmq-sub-type sql92 (e.g. `region = 'eu' AND amount > 100`)".into(),
        });
    };
    if let Some(t) = topics.iter().find(|t| t.expression != "*") {
        return Err(invalid(
            "topics",
            &format!("{}||{}", t.topic, t.expression),
            "topics without tags when rocketmq-sub-type is sql92 (filter on TAGS in the expression)",
        ));
    }
    Ok(Some(e.to_string()))
}
