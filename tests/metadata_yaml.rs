//! One key table ([`metadata::KEYS`]: name, owner, default, secret) and what must agree with
//! it: `metadata.yaml` (components-contrib schema: the same keys, defaults, secrets marked
//! sensitive), the decoder (the defaults it applies) and the README's table (a row per key,
//! its transport column naming the owning transport).

use std::collections::{BTreeSet, HashMap};

use rocketmq_binding::metadata::{KEYS, Owner, Role, Settings};
use serde_yaml::Value;

fn load() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/metadata.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// (name, entry) of every metadata item, including the authentication profile's.
fn entries(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut push = |list: &Value| {
        for e in list.as_sequence().unwrap() {
            out.push((e["name"].as_str().unwrap().to_string(), e.clone()));
        }
    };
    push(&doc["metadata"]);
    for profile in doc["authenticationProfiles"].as_sequence().unwrap() {
        push(&profile["metadata"]);
    }
    out
}

#[test]
fn same_keys_as_the_decoder() {
    let doc = load();
    assert_eq!(doc["type"], Value::from("bindings"));
    assert_eq!(doc["name"], Value::from("rocketmq-pluggable"));
    let yaml: BTreeSet<String> = entries(&doc).into_iter().map(|(n, _)| n).collect();
    let code: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_string()).collect();
    assert_eq!(
        yaml.len(),
        entries(&doc).len(),
        "a key twice in metadata.yaml"
    );
    assert_eq!(code.len(), KEYS.len(), "a key twice in metadata::KEYS");
    assert_eq!(yaml, code, "metadata.yaml and metadata::KEYS differ");
}

#[test]
fn same_defaults_as_the_decoder() {
    // Minimal metadata: what each default is measured against.
    let base: HashMap<String, String> = [("nameServer", "127.0.0.1:9876"), ("topics", "t")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = Settings::decode(&base, Role::Input).unwrap();
    let mut checked = 0;
    let table: HashMap<&str, Option<&str>> = KEYS.iter().map(|k| (k.name, k.default)).collect();
    for (name, e) in entries(&load()) {
        let declared = e.get("default").and_then(Value::as_str).map(str::to_string);
        assert_eq!(
            declared.as_deref(),
            table[name.as_str()],
            "default of `{name}`: metadata.yaml vs metadata::KEYS"
        );
        let effective = s.effective(&name);
        match (&declared, &effective) {
            (Some(d), Some(v)) => assert_eq!(d, v, "default of `{name}`"),
            (None, None) => {}
            (d, v) => panic!("`{name}`: metadata.yaml default {d:?}, decoder {v:?}"),
        }
        checked += declared.is_some() as usize;
    }
    assert!(checked >= 10, "only {checked} defaults checked");
}

#[test]
fn secrets_are_sensitive() {
    for (name, e) in entries(&load()) {
        let sensitive = e.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
        let secret = KEYS.iter().any(|k| k.name == name && k.sensitive);
        assert_eq!(sensitive, secret, "`{name}` sensitivity");
    }
}

#[test]
fn readme_documents_every_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // The rows of "## Component metadata": | `key`[, `key`…] | type | default | transport | … |
    let rows: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Component metadata"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.replace("\\|", "/"))
        .collect();
    for key in KEYS {
        let row = rows
            .iter()
            .find(|r| {
                r.split('|')
                    .nth(1)
                    .is_some_and(|c| c.contains(&format!("`{}`", key.name)))
            })
            .unwrap_or_else(|| panic!("README.md's metadata table has no row for `{}`", key.name));
        let transport = row.split('|').nth(4).unwrap_or_default();
        let named = match key.owner {
            Owner::Tcp => Some("tcp"),
            Owner::Http => Some("http"),
            _ => None,
        };
        if let Some(t) = named {
            assert!(
                transport.contains(t),
                "README.md: `{}` is {t}-only (metadata::KEYS) but its row says {transport:?}",
                key.name
            );
        }
    }
}
