//! `aliyun-mq-emulator`: a local Aliyun MQ (RocketMQ 4.x) HTTP API server for development and
//! tests without a cloud account. All logic lives in [`rocketmq_binding::emulator`].

fn main() -> std::process::ExitCode {
    rocketmq_binding::emulator::main()
}
