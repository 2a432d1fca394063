//! The Dapr-facing layer: the generated protos, per-component instances, the
//! `InputBinding` (Read stream and acks) and `OutputBinding` (Invoke) services, and the
//! time budgets of the contract with daprd ([`budget`]).
//!
//! This layer speaks only the [`crate::transport`] trait; it never names TCP or HTTP.

pub mod budget;
pub mod input;
pub mod instances;
pub mod output;
pub mod proto;

/// gRPC metadata key daprd sets to the Component's `metadata.name` on every call.
pub const INSTANCE_HEADER: &str = "x-component-instance";
/// Instance name used when a call carries no `x-component-instance` header.
pub const DEFAULT_INSTANCE: &str = "#default__instance#";

/// The instance a request addresses.
pub fn instance_of<T>(req: &tonic::Request<T>) -> String {
    req.metadata()
        .get(INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_INSTANCE)
        .to_string()
}
