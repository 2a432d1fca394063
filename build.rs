//! Compiles the Dapr component protos with the pure-Rust `protox` compiler (no system
//! `protoc`), generates tonic server and client code from the descriptor set, and writes
//! the descriptor set that the reflection service serves to daprd.

use std::{env, fs, path::PathBuf};

use prost_types::FileDescriptorSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/dapr/proto/components/v1/common.proto",
        "proto/dapr/proto/components/v1/bindings.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds: FileDescriptorSet = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("components_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
