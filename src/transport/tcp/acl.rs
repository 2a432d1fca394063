//! ACL signing: `accessKey`/`secretKey`/`securityToken` → the crate's `AclClientRPCHook`.
//!
//! The hook is Java `AclClientRPCHook`-compatible: it adds `AccessKey` (and `SecurityToken`)
//! to the request's ext fields, merges the typed header into them, sorts all fields by key,
//! concatenates their values (except `Signature`) and the body, and stores
//! `Signature = Base64(HMAC-SHA1(secretKey, data))`. It is attached to every request of the
//! producer and the consumer. The secrets only live inside the hook (whose `Debug` redacts
//! them) and in [`Settings`] (a `SecretString`).

use std::sync::Arc;

use rocketmq_client_rust::{AclClientRPCHook, SessionCredentials};
use rocketmq_transport::api::RPCHook;
use secrecy::ExposeSecret;

use crate::metadata::Settings;

/// The signing hook, when an access key is configured.
pub fn hook(settings: &Settings) -> Option<Arc<dyn RPCHook>> {
    signer(settings).map(|h| Arc::new(h) as Arc<dyn RPCHook>)
}

/// The concrete hook (its `Debug` redacts the credentials).
fn signer(settings: &Settings) -> Option<AclClientRPCHook> {
    let ak = settings.access_key.as_deref().filter(|s| !s.is_empty())?;
    let sk = settings
        .secret_key
        .as_ref()
        .map(|s| s.expose_secret().to_string())
        .unwrap_or_default();
    let creds = match settings
        .security_token
        .as_ref()
        .map(|t| t.expose_secret())
        .filter(|t| !t.is_empty())
    {
        Some(token) => SessionCredentials::with_token(ak.to_string(), sk, token.to_string()),
        None => SessionCredentials::with_keys(ak.to_string(), sk),
    };
    Some(AclClientRPCHook::new(creds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use cheetah_string::CheetahString;
    use rocketmq_protocol::protocol::remoting_command::RemotingCommand;

    fn settings(kv: &[(&str, &str)]) -> Settings {
        let map = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("nameServer".to_string(), "127.0.0.1:9876".to_string())])
            .collect();
        Settings::decode(&map, crate::metadata::Role::Output).unwrap()
    }

    #[test]
    fn signs_the_java_vector() {
        let s = settings(&[
            ("accessKey", "ak"),
            ("secretKey", "secret"),
            ("securityToken", "token"),
        ]);
        let hook = hook(&s).expect("hook with an access key");
        let mut request =
            RemotingCommand::create_remoting_command(10).set_body(Bytes::from_static(b"body"));
        request.ensure_ext_fields_initialized();
        request.add_ext_field("z", "last");
        request.add_ext_field("a", "first");
        hook.do_before_request("127.0.0.1:9876".parse().unwrap(), &mut request)
            .unwrap();
        let ext = request.ext_fields().unwrap();
        let get = |k: &'static str| ext.get(&CheetahString::from_static_str(k)).cloned();
        assert_eq!(get("AccessKey").as_deref(), Some("ak"));
        assert_eq!(get("SecurityToken").as_deref(), Some("token"));
        assert_eq!(
            get("Signature").as_deref(),
            Some("wuJkFDNRMKY6aFXTDwT/vg0UC8M=")
        );
    }

    #[test]
    fn no_hook_without_access_key_and_no_secret_in_debug() {
        assert!(hook(&settings(&[])).is_none());
        let s = settings(&[("accessKey", "ak"), ("secretKey", "VERY-secret-1")]);
        let h = signer(&s).unwrap();
        let dbg = format!("{h:?}");
        assert!(!dbg.contains("VERY-secret-1"), "{dbg}");
    }
}
