//! The `rocketmq-binding` daemon binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    rocketmq_binding::cli::main()
}
