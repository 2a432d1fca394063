//! Untrusted text in errors and logs: how a value from a peer is shown.
//!
//! Values the daemon echoes (a bad metadata value, a request key's value, an ack's
//! `message_id`, an app's error text, an endpoint URL) come from daprd's callers, the app or a
//! broker. Shown raw they could be megabytes long (a 1 MB value in an error makes gRPC clients
//! fail with `RESOURCE_EXHAUSTED` instead of seeing `INVALID_ARGUMENT`), forge log lines with
//! `\n`, or carry credentials (`http://user:pass@host`). [`shown`] is the one way to put such a
//! value into a message: quoted and escaped like Rust's `Debug`, cut after
//! [`SHOWN_MAX_CHARS`] characters with the full length stated, URL user-info replaced by
//! `***`. The text log's writer ([`crate::telemetry`]) escapes whatever still carries a control
//! character, as a second line of defence.

use std::{borrow::Cow, fmt};

/// Characters of a value shown before it is cut (the length in bytes is stated after it).
pub const SHOWN_MAX_CHARS: usize = 128;

/// A value quoted for an error or a log field; see the module docs.
#[derive(Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// Quotes `v` for an error message or log field: `"abc"`, or `"abc…" (1048576 bytes)` when
/// longer than [`SHOWN_MAX_CHARS`] characters; URL user-info is redacted.
pub fn shown(v: &str) -> Shown<'_> {
    Shown(v)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = redact_userinfo(self.0);
        let cut = redacted.char_indices().nth(SHOWN_MAX_CHARS).map(|(i, _)| i);
        match cut {
            None => write!(f, "{:?}", redacted.as_ref()),
            Some(i) => write!(
                f,
                "{:?} ({} bytes)",
                format!("{}…", &redacted[..i]),
                self.0.len()
            ),
        }
    }
}

/// Like [`shown`] without the quotes, for names shown between backticks: control characters
/// escaped, cut after [`SHOWN_MAX_CHARS`] characters with the length stated.
pub fn clipped(v: &str) -> Clipped<'_> {
    Clipped(v)
}

/// See [`clipped`].
#[derive(Clone, Copy)]
pub struct Clipped<'a>(&'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == SHOWN_MAX_CHARS {
                return write!(f, "… ({} bytes)", self.0.len());
            }
            write!(f, "{}", c.escape_debug())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the user-info of every `scheme://user:pass@host` in `s` with `***`
/// (`http://***@host`). Text without user-info is returned as is.
pub fn redact_userinfo(s: &str) -> Cow<'_, str> {
    if !s.contains("://") || !s.contains('@') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_and_escaped() {
        assert_eq!(shown("abc").to_string(), "\"abc\"");
        assert_eq!(shown("a\nb\"c").to_string(), "\"a\\nb\\\"c\"");
        assert_eq!(shown("").to_string(), "\"\"");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let v = "x".repeat(1 << 20);
        let s = shown(&v).to_string();
        assert!(s.len() < 200, "{}", s.len());
        assert!(s.ends_with("…\" (1048576 bytes)"), "{s}");
        // Cut on a character boundary.
        let v = "é".repeat(500);
        let s = shown(&v).to_string();
        assert!(s.contains(&"é".repeat(SHOWN_MAX_CHARS)), "{s}");
        assert!(!s.contains(&"é".repeat(SHOWN_MAX_CHARS + 1)), "{s}");
        assert!(s.ends_with("(1000 bytes)"), "{s}");
    }

    #[test]
    fn clipped_names_are_escaped_and_cut() {
        assert_eq!(clipped("rocketmq-tag").to_string(), "rocketmq-tag");
        assert_eq!(clipped("a\nb").to_string(), "a\\nb");
        let long = "k".repeat(1000);
        assert!(clipped(&long).to_string().ends_with("… (1000 bytes)"));
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_userinfo("http://user:pass@host:8080/x?a=b"),
            "http://***@host:8080/x?a=b"
        );
        assert_eq!(
            redact_userinfo("a https://k@h and http://u:p@q@h2 end"),
            "a https://***@h and http://***@h2 end"
        );
        assert_eq!(redact_userinfo("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact_userinfo("user@example.com"), "user@example.com");
        assert!(
            !shown("http://user:hunter2@host")
                .to_string()
                .contains("hunter2")
        );
    }
}
