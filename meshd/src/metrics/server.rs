//! The metrics listener: HTTP/1.1, one request per connection, `GET` or `HEAD` of `/metrics`.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections are served at once (more wait in the
//! kernel's listen queue); a request's head must arrive whole within [`DEADLINE`] and fit in
//! [`MAX_HEAD`] bytes, and the answer must be taken within [`DEADLINE`], so a connection that
//! holds still or trickles is closed and frees its slot. Scrapes are answered one at a time
//! (they share the running totals); a scrape waits at most [`DEADLINE`] for the event loop.

use super::{Snapshot, Totals};
use crate::admin::{AdminRequest, Reply, Request};
use anyhow::Context;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Time for a request's head to arrive, for the answer to be taken, and for the daemon to
/// answer one scrape.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The content type of the answer to a client that accepts OpenMetrics (Prometheus).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text format, for every other client.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running listener; dropping it stops accepting.
pub struct Server {
    task: tokio::task::JoinHandle<()>,
    /// Where it listens (the port chosen, if the configuration said 0).
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves scrapes, asking the daemon loop through `ask`.
pub async fn start(addr: SocketAddr, ask: mpsc::Sender<AdminRequest>) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "metrics_listen: cannot listen on {addr} (another program may hold the port; \
             choose another port, or remove metrics_listen to turn the endpoint off)"
        )
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served beyond loopback: anyone who reaches {addr} reads them");
    }
    tracing::info!(%addr, "metrics endpoint up: GET /metrics");
    let state = Arc::new(Scraper {
        ask,
        totals: Mutex::new(Totals::default()),
    });
    let task = tokio::spawn(accept_loop(listener, state));
    Ok(Server { task, addr })
}

struct Scraper {
    ask: mpsc::Sender<AdminRequest>,
    totals: Mutex<Totals>,
}

async fn accept_loop(listener: TcpListener, state: Arc<Scraper>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    serve(stream, &state).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// `GET /metrics`, or `HEAD` (the same answer without its body).
    Metrics {
        /// Asked with `HEAD`.
        head: bool,
        /// The client accepts OpenMetrics (Prometheus does); else the classic text format.
        openmetrics: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not HTTP, or too long.
    Bad,
}

/// Reads a request head from `buf` (complete or not): `None` while more bytes are needed.
pub fn parse(buf: &[u8]) -> Option<Asked> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
        Ok(httparse::Status::Partial) | Err(_) => Some(Asked::Bad),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            let head = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Some(Asked::BadMethod),
            };
            let openmetrics = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("accept")
                    && String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
            });
            Some(if path == "/metrics" {
                Asked::Metrics { head, openmetrics }
            } else {
                Asked::NotFound
            })
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Asked {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Asked::Bad,
            Ok(n) => n,
        };
        // (At most MAX_HEAD + 1 KiB: `parse` gives up on a partial head that long.)
        buf.extend_from_slice(&chunk[..n]);
        if let Some(a) = parse(&buf) {
            return a;
        }
    }
}

async fn serve(mut stream: TcpStream, state: &Scraper) {
    let asked = tokio::time::timeout(DEADLINE, read_head(&mut stream))
        .await
        .unwrap_or(Asked::Bad);
    let (status, ctype, body, head, allow) = match asked {
        Asked::Metrics { head, openmetrics } => match state.scrape().await {
            Ok(page) if openmetrics => ("200 OK", OPENMETRICS, page, head, false),
            Ok(page) => (
                "200 OK",
                CLASSIC,
                super::render::classic(&page),
                head,
                false,
            ),
            Err(e) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("{e}\n"),
                head,
                false,
            ),
        },
        Asked::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "meshd serves its metrics at /metrics only\n".into(),
            false,
            false,
        ),
        Asked::BadMethod => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "the metrics endpoint answers GET and HEAD only\n".into(),
            false,
            true,
        ),
        Asked::Bad => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "not an HTTP request (or one over 8 KiB, or not sent within 5 s)\n".into(),
            false,
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        body.len(),
        if allow { "Allow: GET, HEAD\r\n" } else { "" },
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = tokio::time::timeout(DEADLINE, async {
        if stream.write_all(&out).await.is_ok() {
            let _ = stream.shutdown().await;
        }
    })
    .await;
}

impl Scraper {
    async fn ask<T: DeserializeOwned>(&self, req: Request) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.ask
            .send((req, tx))
            .await
            .map_err(|_| anyhow::anyhow!("meshd is shutting down"))?;
        let reply: Reply = tokio::time::timeout(DEADLINE, rx)
            .await
            .map_err(|_| anyhow::anyhow!("meshd did not answer within {DEADLINE:?}"))?
            .map_err(|_| anyhow::anyhow!("meshd is shutting down"))?;
        let data = reply
            .into_result()
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        Ok(serde_json::from_value(data)?)
    }

    async fn scrape(&self) -> anyhow::Result<String> {
        // One scrape at a time: they share the running totals.
        let mut totals = self.totals.lock().await;
        let snapshot = Snapshot {
            status: self.ask(Request::Status).await?,
            peers: self.ask(Request::Peers).await?,
            sessions: self.ask(Request::Sessions).await?,
            znets: self.ask(Request::ZnetList).await.unwrap_or_default(),
            gateway: self.ask(Request::GatewayStatus).await.ok(),
        };
        let sums = totals.fold(&snapshot);
        Ok(super::render(snapshot, sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_the_metrics_path_are_answered() {
        let p = |s: &str| parse(s.as_bytes());
        let m = |head, openmetrics| Some(Asked::Metrics { head, openmetrics });
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            m(false, false)
        );
        assert_eq!(p("HEAD /metrics HTTP/1.0\r\n\r\n"), m(true, false));
        assert_eq!(p("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), m(false, false));
        let prometheus = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;\
                          version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        assert_eq!(p(prometheus), m(false, true));
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Some(Asked::NotFound));
        assert_eq!(
            p("GET /metrics/../admin HTTP/1.1\r\n\r\n"),
            Some(Asked::NotFound)
        );
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Some(Asked::BadMethod)
        );
        assert_eq!(
            p("DELETE /metrics HTTP/1.1\r\n\r\n"),
            Some(Asked::BadMethod)
        );
        assert_eq!(p("\x16\x03\x01\x02\x00\x01\x00"), Some(Asked::Bad));
        // Not yet complete: more is needed, until the head is too long.
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost"), None);
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(p(&long), Some(Asked::Bad));
    }
}
