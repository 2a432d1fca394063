//! The emulated broker state (spec §6.3–§6.6): topic logs, per-group progress, receipt
//! handles. Pure and synchronous: the HTTP layer locks it, calls one operation with the
//! current time and renders the result.

use std::collections::{HashMap, HashSet};

use crate::transport::http::protocol::{self, AckError, PublishMessage, ReceivedMessage};

/// Consume mode (`trans` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain consume.
    Normal,
    /// `trans=order`: partition order by sharding key.
    Order,
    /// `trans=pop`: transactional half messages due for a check.
    Pop,
}

/// Ack mode (`trans` query parameter on DELETE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Plain ack.
    Ack,
    /// `trans=commit`.
    Commit,
    /// `trans=rollback`.
    Rollback,
}

/// Invisibility durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Normal consume.
    pub normal_ms: i64,
    /// Ordered consume.
    pub order_ms: i64,
    /// Transaction check (pop).
    pub pop_ms: i64,
}

#[derive(Debug)]
struct Msg {
    id: String,
    body: String,
    body_md5: String,
    tag: Option<String>,
    props_raw: String,
    publish_ms: i64,
    deliver_at_ms: i64,
    shard: String,
    half: bool,
    check_at_ms: i64,
    committed: bool,
    dropped: bool,
}

#[derive(Debug, Default)]
struct GroupMsg {
    acked: bool,
    visible_at: i64,
    consumed_times: i64,
    first_consume: i64,
    current_handle: Option<String>,
}

#[derive(Debug, Default)]
struct Group {
    per_msg: HashMap<usize, GroupMsg>,
    /// Every message before this index is acked (or dropped) for this group.
    low: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HandleKind {
    /// From a consume (normal, order or pop) by `group`.
    Consume { group: String, pop: bool },
    /// From publishing a half message.
    Half,
}

#[derive(Debug, Clone)]
struct HandleInfo {
    ns: String,
    topic: String,
    idx: usize,
    expires: i64,
    kind: HandleKind,
}

type TopicKey = (String, String);
type GroupKey = (String, String, String, bool);

/// The whole broker.
#[derive(Debug, Default)]
pub struct State {
    topics: HashMap<TopicKey, Vec<Msg>>,
    groups: HashMap<GroupKey, Group>,
    handles: HashMap<String, HandleInfo>,
    seq: u64,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRefused(pub String);

/// What a consume found.
#[derive(Debug, Default)]
pub struct Selection {
    /// Messages handed out.
    pub messages: Vec<ReceivedMessage>,
    /// Earliest future moment something may become consumable (epoch ms), if any.
    pub next_event_ms: Option<i64>,
}

fn tag_matches(filter: Option<&str>, tag: Option<&str>) -> bool {
    match filter.map(str::trim) {
        None | Some("") | Some("*") => true,
        Some(f) => match tag {
            None => false,
            Some(t) => f.split("||").map(str::trim).any(|x| x == t),
        },
    }
}

impl State {
    fn next_handle(&mut self, msg_id: &str, kind: char) -> String {
        self.seq += 1;
        format!("{msg_id}-{kind}{:012X}", self.seq)
    }

    /// Appends a message; returns `(message id, body md5, half-message handle)`.
    pub fn publish(
        &mut self,
        ns: &str,
        topic: &str,
        msg: PublishMessage,
        now: i64,
    ) -> Result<(String, String, Option<String>), PublishRefused> {
        if msg.body.is_empty() {
            return Err(PublishRefused("The message body is empty.".into()));
        }
        if let Some(t) = &msg.tag
            && t.chars().count() > protocol::MAX_TAG_LEN
        {
            return Err(PublishRefused(
                "The message tag is longer than 64 characters.".into(),
            ));
        }
        let props = protocol::parse_properties(&msg.properties);
        let prop = |k: &str| props.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let deliver_at_ms = match prop(protocol::PROP_START_DELIVER_TIME) {
            Some(v) => v.parse::<i64>().map_err(|_| {
                PublishRefused(format!(
                    "{} is not a number.",
                    protocol::PROP_START_DELIVER_TIME
                ))
            })?,
            None => 0,
        };
        let (half, check_at_ms) = match prop(protocol::PROP_TRANS_CHECK) {
            Some(v) => {
                let secs = v.parse::<i64>().map_err(|_| {
                    PublishRefused(format!("{} is not a number.", protocol::PROP_TRANS_CHECK))
                })?;
                (true, now + secs.clamp(0, 86_400) * 1000)
            }
            None => (false, 0),
        };
        let id = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .to_ascii_uppercase();
        let body_md5 = super::wire::body_md5(&msg.body);
        let log = self
            .topics
            .entry((ns.to_string(), topic.to_string()))
            .or_default();
        log.push(Msg {
            id: id.clone(),
            body: msg.body,
            body_md5: body_md5.clone(),
            tag: msg.tag,
            props_raw: msg.properties,
            publish_ms: now,
            deliver_at_ms,
            shard: prop(protocol::PROP_SHARDING_KEY).unwrap_or_default(),
            half,
            check_at_ms,
            committed: false,
            dropped: false,
        });
        let idx = log.len() - 1;
        let handle = if half {
            let h = self.next_handle(&id, 'H');
            self.handles.insert(
                h.clone(),
                HandleInfo {
                    ns: ns.to_string(),
                    topic: topic.to_string(),
                    idx,
                    expires: check_at_ms,
                    kind: HandleKind::Half,
                },
            );
            Some(h)
        } else {
            None
        };
        Ok((id, body_md5, handle))
    }

    /// Selects up to `n` messages for `group` and marks them in flight (spec §6.5).
    #[allow(clippy::too_many_arguments)]
    pub fn consume(
        &mut self,
        ns: &str,
        topic: &str,
        group: &str,
        n: usize,
        tag: Option<&str>,
        mode: Mode,
        timeouts: Timeouts,
        now: i64,
    ) -> Selection {
        let mut sel = Selection::default();
        let tkey = (ns.to_string(), topic.to_string());
        let Some(log) = self.topics.get(&tkey) else {
            return sel;
        };
        let gkey = (
            ns.to_string(),
            topic.to_string(),
            group.to_string(),
            mode == Mode::Pop,
        );
        let g = self.groups.entry(gkey).or_default();
        // Advance the fully-acked prefix.
        while g.low < log.len()
            && (log[g.low].dropped || g.per_msg.get(&g.low).is_some_and(|m| m.acked))
        {
            g.low += 1;
        }
        let mut chosen: Vec<usize> = Vec::new();
        let mut blocked: HashSet<&str> = HashSet::new();
        let note = |t: i64, sel: &mut Selection| {
            if t > now {
                sel.next_event_ms = Some(sel.next_event_ms.map_or(t, |c| c.min(t)));
            }
        };
        for (idx, m) in log.iter().enumerate().skip(g.low) {
            if chosen.len() >= n {
                break;
            }
            if m.dropped {
                continue;
            }
            if mode == Mode::Pop {
                if !m.half || m.committed {
                    continue;
                }
                if m.check_at_ms > now {
                    note(m.check_at_ms, &mut sel);
                    continue;
                }
            } else if m.half && !m.committed {
                continue;
            }
            if !tag_matches(tag, m.tag.as_deref()) {
                continue;
            }
            let gm = g.per_msg.get(&idx);
            if gm.is_some_and(|x| x.acked) {
                continue;
            }
            if mode == Mode::Order && blocked.contains(m.shard.as_str()) {
                continue;
            }
            let invisible = gm.is_some_and(|x| x.visible_at > now);
            if m.deliver_at_ms > now || invisible {
                note(
                    if invisible {
                        gm.map_or(0, |x| x.visible_at)
                    } else {
                        m.deliver_at_ms
                    },
                    &mut sel,
                );
                if mode == Mode::Order {
                    blocked.insert(m.shard.as_str());
                }
                continue;
            }
            chosen.push(idx);
        }
        let timeout = match mode {
            Mode::Normal => timeouts.normal_ms,
            Mode::Order => timeouts.order_ms,
            Mode::Pop => timeouts.pop_ms,
        };
        let kind_char = match mode {
            Mode::Normal => 'N',
            Mode::Order => 'O',
            Mode::Pop => 'P',
        };
        let mut new_handles = Vec::with_capacity(chosen.len());
        for idx in chosen {
            self.seq += 1;
            let m = &log[idx];
            let handle = format!("{}-{kind_char}{:012X}", m.id, self.seq);
            let gm = g.per_msg.entry(idx).or_default();
            gm.consumed_times += 1;
            if gm.first_consume == 0 {
                gm.first_consume = now;
            }
            gm.visible_at = now + timeout;
            gm.current_handle = Some(handle.clone());
            sel.messages.push(ReceivedMessage {
                message_id: m.id.clone(),
                receipt_handle: handle.clone(),
                body_md5: m.body_md5.clone(),
                body: m.body.clone(),
                publish_time: m.publish_ms,
                first_consume_time: gm.first_consume,
                next_consume_time: gm.visible_at,
                consumed_times: gm.consumed_times,
                tag: m.tag.clone(),
                properties: m.props_raw.clone(),
            });
            new_handles.push((handle, idx, gm.visible_at));
        }
        for (h, idx, expires) in new_handles {
            self.handles.insert(
                h,
                HandleInfo {
                    ns: ns.to_string(),
                    topic: topic.to_string(),
                    idx,
                    expires,
                    kind: HandleKind::Consume {
                        group: group.to_string(),
                        pop: mode == Mode::Pop,
                    },
                },
            );
        }
        sel
    }

    /// Acks (or commits / rolls back) handles; returns the failed ones (spec §6.6).
    pub fn ack(
        &mut self,
        ns: &str,
        topic: &str,
        group: &str,
        handles: &[String],
        mode: AckMode,
        now: i64,
    ) -> Vec<AckError> {
        let mut errors = Vec::new();
        let bad = |h: &str| AckError {
            code: "ReceiptHandleError".into(),
            message: "The receipt handle you provide is not valid.".into(),
            receipt_handle: if h.is_empty() {
                "(empty)".into()
            } else {
                h.to_string()
            },
        };
        let gone = |h: &str| AckError {
            code: "MessageNotExist".into(),
            message: "Message not exist.".into(),
            receipt_handle: h.to_string(),
        };
        for h in handles {
            let Some(info) = self.handles.get(h).cloned() else {
                errors.push(bad(h));
                continue;
            };
            if info.ns != ns || info.topic != topic {
                errors.push(bad(h));
                continue;
            }
            let tkey = (ns.to_string(), topic.to_string());
            match (&info.kind, mode) {
                (
                    HandleKind::Consume {
                        group: g,
                        pop: false,
                    },
                    AckMode::Ack,
                ) => {
                    if g != group {
                        errors.push(bad(h));
                        continue;
                    }
                    let gkey = (ns.to_string(), topic.to_string(), group.to_string(), false);
                    let Some(gm) = self
                        .groups
                        .get_mut(&gkey)
                        .and_then(|gr| gr.per_msg.get_mut(&info.idx))
                    else {
                        errors.push(bad(h));
                        continue;
                    };
                    if info.expires < now || gm.current_handle.as_deref() != Some(h.as_str()) {
                        errors.push(gone(h));
                        continue;
                    }
                    gm.acked = true;
                    gm.current_handle = None;
                    self.handles.remove(h);
                }
                (HandleKind::Half, AckMode::Commit | AckMode::Rollback)
                | (HandleKind::Consume { pop: true, .. }, AckMode::Commit | AckMode::Rollback) => {
                    if info.expires < now {
                        errors.push(gone(h));
                        continue;
                    }
                    if let HandleKind::Consume { group: g, .. } = &info.kind {
                        let gkey = (ns.to_string(), topic.to_string(), g.clone(), true);
                        let current = self
                            .groups
                            .get(&gkey)
                            .and_then(|gr| gr.per_msg.get(&info.idx))
                            .and_then(|gm| gm.current_handle.clone());
                        if g != group || current.as_deref() != Some(h.as_str()) {
                            errors.push(if g != group { bad(h) } else { gone(h) });
                            continue;
                        }
                    }
                    let Some(m) = self.topics.get_mut(&tkey).and_then(|l| l.get_mut(info.idx))
                    else {
                        errors.push(bad(h));
                        continue;
                    };
                    if m.committed || m.dropped {
                        errors.push(gone(h));
                        continue;
                    }
                    if mode == AckMode::Commit {
                        m.committed = true;
                    } else {
                        m.dropped = true;
                    }
                    self.handles.remove(h);
                }
                _ => errors.push(bad(h)),
            }
        }
        errors
    }

    /// Number of messages stored across all topics (for diagnostics).
    pub fn message_count(&self) -> usize {
        self.topics.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        normal_ms: 1000,
        order_ms: 1000,
        pop_ms: 1000,
    };

    fn pm(body: &str, tag: Option<&str>, props: &str) -> PublishMessage {
        PublishMessage {
            body: body.into(),
            tag: tag.map(Into::into),
            properties: props.into(),
        }
    }

    #[test]
    fn redelivery_groups_and_acks() {
        let mut s = State::default();
        s.publish("", "t", pm("a", Some("A"), ""), 0).unwrap();
        let first = s.consume("", "t", "g", 16, None, Mode::Normal, T, 10);
        assert_eq!(first.messages.len(), 1);
        // Invisible for the same group, visible for another.
        assert!(
            s.consume("", "t", "g", 16, None, Mode::Normal, T, 20)
                .messages
                .is_empty()
        );
        assert_eq!(
            s.consume("", "t", "g2", 16, None, Mode::Normal, T, 20)
                .messages
                .len(),
            1
        );
        // Redelivered after the timeout with a new handle; the old handle is dead.
        let again = s.consume("", "t", "g", 16, None, Mode::Normal, T, 1011);
        let (m1, m2) = (&first.messages[0], &again.messages[0]);
        assert_eq!(m1.message_id, m2.message_id);
        assert_ne!(m1.receipt_handle, m2.receipt_handle);
        assert_eq!(m2.consumed_times, 2);
        assert_eq!(m2.first_consume_time, 10);
        let errs = s.ack(
            "",
            "t",
            "g",
            std::slice::from_ref(&m1.receipt_handle),
            AckMode::Ack,
            1012,
        );
        assert_eq!(errs[0].code, "MessageNotExist");
        let errs = s.ack(
            "",
            "t",
            "g",
            &[m2.receipt_handle.clone(), "bogus".into()],
            AckMode::Ack,
            1012,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, "ReceiptHandleError");
        assert!(
            s.consume("", "t", "g", 16, None, Mode::Normal, T, 5000)
                .messages
                .is_empty()
        );
    }

    #[test]
    fn tags_timers_order_and_transactions() {
        let mut s = State::default();
        s.publish("", "t", pm("a", Some("A"), ""), 0).unwrap();
        s.publish("", "t", pm("b", Some("B"), ""), 0).unwrap();
        s.publish("", "t", pm("late", None, "__STARTDELIVERTIME:500|"), 0)
            .unwrap();
        let got = s.consume("", "t", "g", 16, Some("B||C"), Mode::Normal, T, 1);
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.messages[0].body, "b");
        let got = s.consume("", "t", "g", 16, None, Mode::Normal, T, 1);
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.next_event_ms, Some(500));
        assert_eq!(
            s.consume("", "t", "g", 16, None, Mode::Normal, T, 600)
                .messages[0]
                .body,
            "late"
        );

        // Ordered: a shard with an in-flight message is not served again.
        let mut s = State::default();
        for (b, k) in [("1", "x"), ("2", "x"), ("3", "y")] {
            s.publish("", "o", pm(b, None, &format!("__SHARDINGKEY:{k}|")), 0)
                .unwrap();
        }
        let a = s.consume("", "o", "g", 1, None, Mode::Order, T, 1);
        assert_eq!(a.messages[0].body, "1");
        let b = s.consume("", "o", "g", 16, None, Mode::Order, T, 2);
        assert_eq!(b.messages.len(), 1);
        assert_eq!(b.messages[0].body, "3");
        assert!(
            s.ack(
                "",
                "o",
                "g",
                &[a.messages[0].receipt_handle.clone()],
                AckMode::Ack,
                3
            )
            .is_empty()
        );
        let c = s.consume("", "o", "g", 16, None, Mode::Order, T, 4);
        assert_eq!(c.messages[0].body, "2");

        // Transactions: half invisible until committed; pop after the check time.
        let mut s = State::default();
        let (_, _, h) = s
            .publish("", "tx", pm("half", None, "__TransCheckT:1|"), 0)
            .unwrap();
        assert!(
            s.consume("", "tx", "g", 16, None, Mode::Normal, T, 1)
                .messages
                .is_empty()
        );
        assert!(
            s.consume("", "tx", "p", 16, None, Mode::Pop, T, 1)
                .messages
                .is_empty()
        );
        let popped = s.consume("", "tx", "p", 16, None, Mode::Pop, T, 1001);
        assert_eq!(popped.messages.len(), 1);
        assert!(
            s.ack("", "tx", "p", &[h.unwrap()], AckMode::Commit, 999)
                .is_empty()
        );
        assert_eq!(
            s.consume("", "tx", "g", 16, None, Mode::Normal, T, 1002)
                .messages
                .len(),
            1
        );
    }
}
