//! Compiles the Dapr component protos with the pure-Rust `protox` compiler (no system
//! `protoc`), generates tonic server and client code from the descriptor set, and writes
//! the descriptor set that the reflection service serves to daprd; for release builds of the
//! daemon it also hands the linker the code-layout file `link/symbol-order.txt`.

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
    symbol_order();
    Ok(())
}

/// Release builds of the daemon binary lay out the functions listed in `link/symbol-order.txt`
/// (those that ran in a benchmark of the daemon, `scripts/symbol-order.sh`) first and together
/// in `.text`: the kernel maps a binary's code in 64 KiB windows around every page that runs, so
/// the few megabytes that run, scattered over 16 MB of text, kept ~11 MB of code resident.
///
/// The file holds exact (legacy-mangled) symbol names. A name the build no longer has is
/// skipped without a warning, so a stale file costs only memory, never a failed build; the
/// hashes stay the same across edits of the source as long as the compiler, the dependency
/// versions, their features and the release profile do. The option needs LLD, the linker
/// Rust uses by default on x86_64 Linux; `ROCKETMQ_BINDING_NO_SYMBOL_ORDER=1` turns it off for
/// another linker.
fn symbol_order() {
    const FILE: &str = "link/symbol-order.txt";
    println!("cargo:rerun-if-changed={FILE}");
    println!("cargo:rerun-if-env-changed=ROCKETMQ_BINDING_NO_SYMBOL_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_x86_64 = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "x86_64");
    let off = env::var_os("ROCKETMQ_BINDING_NO_SYMBOL_ORDER").is_some_and(|v| v != "0");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let file = PathBuf::from(dir).join(FILE);
    if release && linux_x86_64 && !off && file.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=rocketmq-binding=-Wl,--symbol-ordering-file={}",
            file.display()
        );
        println!("cargo:rustc-link-arg-bin=rocketmq-binding=-Wl,--no-warn-symbol-ordering");
    }
}
