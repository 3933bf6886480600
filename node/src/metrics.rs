//! Prometheus metrics on `GET /metrics`.
//!
//! A deliberately tiny HTTP/1.1 responder: scrapers send one GET and read one response, and
//! pulling a web framework into the binary for that is not worth its build time.

use std::{net::SocketAddr, sync::LazyLock};

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY
        .register(Box::new(counter.clone()))
        .expect("registered once");
    counter
}

/// gRPC requests served, by method and status code (Temporal's `service_requests`).
pub static SERVICE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "service_requests",
        "gRPC requests handled by the frontend",
        &["operation", "status_code"],
    )
});

/// Workflow/activity tasks moved from an outbox to their queue, by how they got there: `sync`
/// (handed to a waiting poller), `backlog` (written to the partition's backlog) or `sticky`.
pub static TASK_DISPATCH: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "task_dispatch",
        "tasks moved from an outbox to their task queue",
        &["path"],
    )
});

fn render() -> Vec<u8> {
    LazyLock::force(&SERVICE_REQUESTS);
    LazyLock::force(&TASK_DISPATCH);
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut buf)
        .expect("text encoding cannot fail");
    buf
}

/// Binds the metrics listener; the server task runs until the runtime stops.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let response = if request.starts_with("GET /metrics") {
                    let body = render();
                    let mut head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    head.extend(body);
                    head
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = socket.write_all(&response).await;
            });
        }
    });
    Ok(local)
}
