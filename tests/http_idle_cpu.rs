//! An idle HTTP consumer (long polls, no busy loop) uses no measurable CPU. Its own test
//! binary, so that no other test's work is counted in the process CPU time.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use rocketmq_binding::{
    emulator::{self, Config},
    metadata::{Role, Settings},
    transport::{Transport, http},
};
use tokio::sync::mpsc;

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct passed to it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumer_uses_no_measurable_cpu() {
    let emu = emulator::spawn(Config::new("127.0.0.1:0".parse().unwrap(), "ak", "sk"))
        .await
        .unwrap();
    let kv: HashMap<String, String> = [
        ("accessProto", "http"),
        ("endpoint", emu.endpoint().as_str()),
        ("accessKey", "ak"),
        ("secretKey", "sk"),
        ("topics", "idle1,idle2"),
        ("consumerThreadNums", "16"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = Arc::new(Settings::decode(&kv, Role::Input).unwrap());
    let inp = http::open_http("idle", s, Role::Input).unwrap();
    inp.ping(deadline()).await.unwrap();
    let (tx, _rx) = mpsc::channel(8);
    inp.subscribe(tx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (c0, t0) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu, wall) = (cpu_time() - c0, t0.elapsed());
    let pct = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "idle consumer (2 topics x 16 long-poll loops) + emulator: {cpu:?} CPU over {wall:?} = {pct:.3}%"
    );
    assert!(pct < 1.0, "idle consumer used {pct:.2}% CPU");
    assert_eq!(inp.stats().poll_errors.load(Ordering::Relaxed), 0);
    inp.close(deadline()).await;
    emu.shutdown().await;
}

/// A ping or close deadline as the Dapr layer gives one (its budgets are at most 5 s).
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}
