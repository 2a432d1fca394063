//! The manifests under `deploy/` agree with the daemon: Component type and socket name,
//! Dapr annotation names, socket folder, user id, probes, and every Component's metadata
//! decodes with the binding's own decoder. (Schema validation of the Kubernetes objects and
//! YAML lint run in scripts/validate-deploy.sh.)

use std::{collections::HashMap, path::PathBuf};

use rocketmq_binding::{
    daemon::{DEFAULT_SOCKET_FOLDER, DEFAULT_SOCKET_NAME},
    metadata::{KEYS, Role, Settings},
};
use serde_yaml::Value;

fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")),
        &mut out,
    );
    out.sort();
    out
}

fn docs() -> Vec<(PathBuf, Value)> {
    deploy_files()
        .into_iter()
        .map(|p| {
            let v = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

const DAPR_ANNOTATIONS: &[&str] = &[
    "dapr.io/enabled",
    "dapr.io/app-id",
    "dapr.io/app-port",
    "dapr.io/inject-pluggable-components",
    "dapr.io/pluggable-components",
    "dapr.io/component-container",
];

#[test]
fn components_use_the_daemon_socket_type_and_decode() {
    let mut n = 0;
    for (path, doc) in docs() {
        if doc["kind"].as_str() != Some("Component") {
            continue;
        }
        n += 1;
        let p = path.display();
        assert_eq!(doc["apiVersion"].as_str(), Some("dapr.io/v1alpha1"), "{p}");
        assert_eq!(
            doc["spec"]["type"].as_str(),
            Some(format!("bindings.{DEFAULT_SOCKET_NAME}").as_str()),
            "{p}"
        );
        assert!(
            matches!(doc["spec"]["version"].as_str(), Some("v1" | "v0" | "")),
            "{p}"
        );
        let mut props = HashMap::new();
        for item in doc["spec"]["metadata"].as_sequence().unwrap() {
            let key = item["name"].as_str().unwrap();
            assert!(
                KEYS.iter().any(|k| k.name == key) || matches!(key, "direction" | "route"),
                "{p}: unknown metadata key {key}"
            );
            let value = if item.get("secretKeyRef").is_some() {
                "from-secret".to_string()
            } else {
                item["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{p}: {key} is not a string"))
                    .to_string()
            };
            props.insert(key.to_string(), value);
        }
        for role in [Role::Input, Role::Output] {
            Settings::decode(&props, role).unwrap_or_else(|e| panic!("{p} ({role}): {e}"));
        }
    }
    assert!(n >= 6, "only {n} Components found");
}

#[test]
fn kubernetes_annotations_probes_and_user_match_the_daemon() {
    let (mut injected, mut manual) = (0, 0);
    for (path, doc) in docs() {
        let p = path.display();
        let annotations = match doc["kind"].as_str() {
            Some("Component") => &doc["metadata"]["annotations"],
            Some("Deployment") => &doc["spec"]["template"]["metadata"]["annotations"],
            _ => continue,
        };
        let Some(map) = annotations.as_mapping() else {
            continue;
        };
        for (k, v) in map {
            let k = k.as_str().unwrap();
            if k.starts_with("dapr.io/") {
                assert!(
                    DAPR_ANNOTATIONS.contains(&k),
                    "{p}: unknown Dapr annotation {k}"
                );
            }
            if k == "dapr.io/component-container" {
                injected += 1;
                let c: serde_json::Value = serde_json::from_str(v.as_str().unwrap())
                    .unwrap_or_else(|e| panic!("{p}: component-container is not JSON: {e}"));
                check_container(&c, &p.to_string());
            }
            if k == "dapr.io/pluggable-components" {
                manual += 1;
                let names: Vec<&str> = v.as_str().unwrap().split(',').map(str::trim).collect();
                let containers = doc["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .unwrap();
                for name in names {
                    let c = containers
                        .iter()
                        .find(|c| c["name"].as_str() == Some(name))
                        .unwrap_or_else(|| panic!("{p}: no container {name}"));
                    let c: serde_json::Value = serde_json::to_value(c).unwrap();
                    check_container(&c, &p.to_string());
                    // The injector owns the socket volume; a hand-made one would clash.
                    assert!(
                        doc["spec"]["template"]["spec"]["volumes"].is_null(),
                        "{p}: do not declare the socket volume in manual mode"
                    );
                }
            }
        }
    }
    assert_eq!((injected, manual), (1, 1));
}

fn check_container(c: &serde_json::Value, p: &str) {
    assert!(
        c["image"]
            .as_str()
            .is_some_and(|i| i.contains("rocketmq-binding")),
        "{p}"
    );
    assert_eq!(
        c["securityContext"]["runAsUser"], 65532,
        "{p}: run as daprd's uid"
    );
    assert_eq!(c["securityContext"]["runAsNonRoot"], true, "{p}");
    let probe = &c["livenessProbe"]["exec"]["command"];
    assert_eq!(probe[0], "/usr/local/bin/rocketmq-binding", "{p}");
    assert_eq!(probe[1], "healthcheck", "{p}");
    // No socket overrides: the injector's default folder is what daprd reads.
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    assert!(
        !args.contains(&"--socket-folder") && !args.contains(&"--socket-name"),
        "{p}"
    );
}

#[test]
fn dockerfile_runs_as_daprd_user_with_exec_entrypoint() {
    let d =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Dockerfile")).unwrap();
    assert!(d.contains("USER 65532:65532"));
    assert!(d.contains(r#"ENTRYPOINT ["/usr/local/bin/rocketmq-binding"]"#));
    assert!(d.contains(&format!(
        "DAPR_COMPONENT_SOCKETS_FOLDER={DEFAULT_SOCKET_FOLDER}"
    )));
    assert!(d.contains("--locked"));
}
