//! Peers that answer with far too much (issue 13, item 2): an Aliyun MQ HTTP endpoint whose
//! consume response is hundreds of MiB, and a `nameServerDomain` address server whose answer
//! claims or streams 200 MiB. The peer is a few lines of raw TCP here on purpose: no real
//! server misbehaves this way on request. The daemon's code reads them under its caps; the
//! process's peak RSS (VmHWM) shows nothing was buffered whole.

use std::time::{Duration, Instant};

use rocketmq_binding::transport::http::client::{
    Client, ConsumeParams, Credentials, consume_response_cap,
};
use rocketmq_binding::transport::tcp::names::{MAX_BODY, fetch_name_servers};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Peak resident set of this process in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// Serves every connection with `head` and then `total` bytes of `fill`, as fast as the
/// client reads; returns the address and a counter of bytes actually written.
async fn flooding_server(
    head: String,
    fill: &'static [u8],
    total: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let head = head.clone();
            let w = w.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk: Vec<u8> = fill.iter().copied().cycle().take(64 * 1024).collect();
                let mut sent = 0;
                while sent < total {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                    w.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (addr, written)
}

fn client_of(addr: &str) -> Client {
    Client::new(
        &format!("http://{addr}"),
        Credentials {
            access_key: "AK".into(),
            secret_key: SecretString::from("SK".to_string()),
            security_token: None,
        },
        None,
    )
    .unwrap()
}

fn params(batch: u32) -> ConsumeParams<'static> {
    ConsumeParams {
        topic: "t",
        group: "GID_g",
        batch,
        wait_seconds: 0,
        tag: None,
        orderly: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_answers_are_cut_at_their_caps() {
    let base = peak_rss_mib();

    // A 300 MiB consume response without Content-Length.
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml;charset=utf-8\r\nConnection: close\r\n\r\n\
                <?xml version=\"1.0\" encoding=\"UTF-8\"?><Messages><Message><MessageBody>"
            .to_string();
    let (addr, written) = flooding_server(head, b"QUJDRA==", 300 << 20).await;
    let client = client_of(&addr);
    let t = Instant::now();
    let e = client.consume(&params(1)).await.unwrap_err();
    let cap = consume_response_cap(1);
    assert!(e.to_string().contains(&format!("at most {cap}")), "{e}");
    let sent = written.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "consume: refused after {:?}; the peer got {} MiB out before the cut; peak RSS {} → {} MiB",
        t.elapsed(),
        sent >> 20,
        base,
        peak_rss_mib()
    );
    assert!(sent < 64 << 20, "{} MiB were read", sent >> 20);

    // The same with a Content-Length that announces 300 MiB: refused before reading.
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        300u64 << 20
    );
    let (addr, _) = flooding_server(head, b"<", 300 << 20).await;
    let client = client_of(&addr);
    let e = client.consume(&params(16)).await.unwrap_err();
    assert!(e.to_string().contains("314572800 bytes"), "{e}");

    // nameServerDomain: 200 MiB, streamed (no Content-Length), and announced.
    let (addr, written) = flooding_server(
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
        b"127.0.0.1:9876;",
        200 << 20,
    )
    .await;
    let e = fetch_name_servers(&format!("http://{addr}/ns"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("more than {MAX_BODY}")),
        "{e}"
    );
    let sent = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 16 << 20, "{} MiB were read", sent >> 20);
    let (addr, _) = flooding_server(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            200u64 << 20
        ),
        b"127.0.0.1:9876;",
        200 << 20,
    )
    .await;
    let e = fetch_name_servers(&format!("http://{addr}/ns"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("209715200 bytes"), "{e}");

    let peak = peak_rss_mib();
    eprintln!("peak RSS {base} → {peak} MiB");
    // The consume cap for one message is ~5.4 MiB; nothing near 200/300 MiB was held.
    assert!(peak < base + 64, "peak RSS grew from {base} to {peak} MiB");
}
