//! The real daemon binary on a private socket folder, for the suites that need the process
//! itself (signals, RSS, the pull consumer in its own runtime). Included with
//! `#[path = "common/daemon_bin.rs"] mod daemon_bin;` beside `mod common;` by integration tests only: it needs
//! `CARGO_BIN_EXE_rocketmq-binding`, which examples do not get.
//!
//! `TEST_DAEMON_LOG` sets the daemon's `RUST_LOG` (default `warn`); `TEST_DAEMON_STDERR=FILE`
//! appends its stderr to FILE (default: discarded).

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::{Daprd, wait_for_socket};

const BIN: &str = env!("CARGO_BIN_EXE_rocketmq-binding");

/// A started daemon; dropping it sends SIGTERM, waits up to 10 s, then kills.
pub struct Bin {
    child: Child,
    dir: PathBuf,
}

impl Bin {
    /// Starts the daemon on `dir` (`--shutdown-timeout 2s`) and waits until its socket accepts.
    pub fn start(dir: &Path) -> Bin {
        Bin::start_with(dir, None)
    }

    /// [`Bin::start`] with `RUST_LOG=filter` and stderr appended to `log` (whatever the
    /// environment says): for a test that shows the daemon's own account when it fails.
    pub fn start_logging(dir: &Path, filter: &str, log: &Path) -> Bin {
        Bin::start_with(dir, Some((filter, log)))
    }

    fn start_with(dir: &Path, log: Option<(&str, &Path)>) -> Bin {
        let append = |f: &Path| {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .unwrap(),
            )
        };
        let filter = match log {
            Some((filter, _)) => filter.to_string(),
            None => std::env::var("TEST_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        };
        let stderr = match (log, std::env::var("TEST_DAEMON_STDERR")) {
            (Some((_, f)), _) => append(f),
            (None, Ok(f)) => append(Path::new(&f)),
            (None, Err(_)) => Stdio::null(),
        };
        let child = Command::new(BIN)
            .arg("--socket-folder")
            .arg(dir)
            .arg("--shutdown-timeout")
            .arg("2s")
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        wait_for_socket(dir);
        Bin {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// A daprd-like client on the daemon's socket.
    pub async fn daprd(&self) -> Daprd {
        Daprd::connect(&self.dir.join("rocketmq-pluggable.sock")).await
    }

    /// A `VmRSS` / `VmHWM` line of the daemon's `/proc` status, in bytes.
    pub fn status_bytes(&self, field: &str) -> usize {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
            * 1024
    }

    /// Sends `sig` and waits (at most 30 s) for the daemon to exit; returns how long it took.
    pub fn signal(&mut self, sig: i32) -> Duration {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(30), "daemon did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.elapsed()
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while self.child.try_wait().ok().flatten().is_none()
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
