//! `metadata.yaml` (components-contrib schema) and the decoder agree: the same keys, the
//! same defaults, secrets marked sensitive; and the README's table lists every key.

use std::collections::{BTreeSet, HashMap};

use rocketmq_binding::metadata::{KNOWN_KEYS, Role, Settings};
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
    let code: BTreeSet<String> = KNOWN_KEYS.iter().map(|s| s.to_string()).collect();
    assert_eq!(yaml, code, "metadata.yaml and metadata::KNOWN_KEYS differ");
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
    for (name, e) in entries(&load()) {
        let declared = e.get("default").and_then(Value::as_str).map(str::to_string);
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
        let secret = matches!(name.as_str(), "secretKey" | "securityToken");
        assert_eq!(sensitive, secret, "`{name}` sensitivity");
    }
}

#[test]
fn readme_documents_every_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in KNOWN_KEYS {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document `{key}`"
        );
    }
}
