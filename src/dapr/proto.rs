//! Code generated from `proto/dapr/proto/components/v1/{common,bindings}.proto` by `build.rs`.
//!
//! The generated types derive `Debug`; never log an Init request with it (it would print
//! `secretKey`).

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("dapr.proto.components.v1");

/// The encoded descriptor set of the component protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("components_descriptor");
