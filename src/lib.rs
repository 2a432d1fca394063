//! # rocketmq-binding
//!
//! A Dapr pluggable component: a gRPC server on a Unix socket that daprd discovers at
//! startup and uses as the input and output binding `bindings.rocketmq-pluggable`, moving
//! messages to and from Apache RocketMQ (native remoting, `accessProto: tcp`) or Alibaba
//! Cloud RocketMQ (also the Aliyun MQ HTTP API, `accessProto: http`).
//!
//! # Layout
//!
//! | module | concern |
//! |---|---|
//! | [`cli`] | flags and env twins (clap), the `serve` / `healthcheck` / `client` entry points |
//! | [`client`] | `rocketmq-binding client`: a daprd-like client for debugging without Dapr |
//! | [`telemetry`] | `tracing` subscriber: `RUST_LOG`, text or JSON |
//! | [`daemon`] | the socket (folder resolution, stale/live checks, mode), the tonic server with reflection and health, signal-driven shutdown |
//! | [`dapr`] | the Dapr contract: [`dapr::proto`] (generated), [`dapr::instances`] (per-Component instances by `x-component-instance`), [`dapr::input`] (Read stream, out-of-order acks, flow control), [`dapr::output`] (Invoke), [`dapr::budget`] (every time budget of the contract with daprd: Init, Ping, shutdown stages, close; the deadlines passed to `ping` and `close`) |
//! | [`metadata`] | Init metadata → [`metadata::Settings`] with Dapr's decoding rules; the key table [`metadata::KEYS`] (name, owner, default); common and Dapr-level keys; secrets redacted |
//! | [`transport`] | the seam: [`transport::Transport`] and [`transport::Connector`]; [`transport::tcp`] and [`transport::http`] implement it, each with a `config` module decoding its own keys (joined in [`metadata::Settings::decode`]); tcp opens a producer (output) or a consumer (input) transport per role |
//! | [`emulator`] | the Aliyun MQ HTTP emulator behind the `aliyun-mq-emulator` binary; [`emulator::wire`] is the server side of the wire format (signature verification, request parsing, response XML), [`transport::http::protocol`] the half the client shares with it (string-to-sign, document types, properties, the depth-limited parser) |
//! | [`error`] | the daemon's error enum and its single mapping to `tonic::Status` |
//! | [`text`] | untrusted values in errors and logs: quoted, escaped, cut with their length, URL credentials redacted |
//!
//! Imports point one way: `daemon` → `dapr` → `transport` → `metadata`. The Dapr layer
//! never names a concrete transport; transports never import the Dapr layer.

// rocketmq-client-rust's futures are deeply nested; proving them `Send` needs more depth.
#![recursion_limit = "256"]

pub mod cli;
pub mod client;
pub mod daemon;
pub mod dapr;
pub mod emulator;
pub mod error;
pub mod metadata;
pub mod telemetry;
pub mod text;
pub mod transport;
