//! The gateway's public side: accepting connections within the limits (in all, per client
//! address, per service), reading the name each asks for within `peek_timeout` and
//! [`MAX_PEEK`] bytes, refusing what it cannot carry with the least it can say (a TLS alert,
//! an HTTP status), and carrying the rest on a data connection of the name's publisher.

use super::Shared;
use super::hub::{Data, Stats, with_hub};
use super::splice::{Ended, Meter, splice};
use crate::gateway::peek::{MAX_PEEK, Peek, peek};
use crate::gateway::wire::{Kind, encode_client};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a public connection may wait for a data connection of the publisher.
const DATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Data connections tried per public connection (an idle one may have died unnoticed).
const DATA_TRIES: usize = 3;
/// How long a refusal may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts on one public listener (`raw`: the name a raw TCP port carries).
pub async fn accept(shared: Rc<Shared>, listener: TcpListener, raw: Option<String>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!("gateway: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = with_hub(&shared, |h| {
            if h.open >= h.cfg.max_connections {
                h.counters.over_limit += 1;
                return false;
            }
            let n = h.clients.entry(peer.ip()).or_default();
            if *n >= h.cfg.max_per_client {
                h.counters.over_client_limit += 1;
                return false;
            }
            *n += 1;
            h.open += 1;
            h.counters.accepted += 1;
            true
        });
        if admitted != Some(true) {
            continue;
        }
        let guard = Admitted {
            shared: shared.clone(),
            ip: peer.ip(),
        };
        let raw = raw.clone();
        tokio::task::spawn_local(async move {
            carry(&guard.shared, stream, peer, raw).await;
            drop(guard);
        });
    }
}

/// A public connection counted against the limits until dropped.
struct Admitted {
    shared: Rc<Shared>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        with_hub(&self.shared, |h| {
            h.open = h.open.saturating_sub(1);
            if let Some(n) = h.clients.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    h.clients.remove(&self.ip);
                }
            }
        });
    }
}

/// What a public connection asked for, or why it is refused.
enum Asked {
    Name(Kind, String, Vec<u8>),
    Refuse(Option<&'static [u8]>),
}

async fn read_name(
    stream: &mut TcpStream,
    shared: &Shared,
    deadline: tokio::time::Instant,
) -> Asked {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    loop {
        let room = (MAX_PEEK - buf.len()).min(chunk.len());
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Err(_) => {
                with_hub(shared, |h| h.counters.peek_timeout += 1);
                return Asked::Refuse(None);
            }
            Ok(Err(_)) | Ok(Ok(0)) => {
                with_hub(shared, |h| h.counters.garbage += 1);
                return Asked::Refuse(None);
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match peek(&buf) {
            Peek::NeedMore if buf.len() < MAX_PEEK => continue,
            Peek::NeedMore | Peek::Refused(_) => {
                with_hub(shared, |h| h.counters.garbage += 1);
                return Asked::Refuse(None);
            }
            Peek::Tls(Some(n)) => return Asked::Name(Kind::Tls, n, buf),
            Peek::Http(Some(n)) => return Asked::Name(Kind::Http, n, buf),
            Peek::Tls(None) => {
                with_hub(shared, |h| h.counters.no_name += 1);
                return Asked::Refuse(Some(TLS_UNRECOGNIZED_NAME));
            }
            Peek::Http(None) => {
                with_hub(shared, |h| h.counters.no_name += 1);
                return Asked::Refuse(Some(HTTP_NO_HOST));
            }
        }
    }
}

/// A fatal TLS alert: unrecognized_name (112).
const TLS_UNRECOGNIZED_NAME: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];
const HTTP_NO_HOST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 35\r\n\r\nthis gateway routes by Host header\n";

fn http_refusal(status: &str, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{text}\n",
        text.len() + 1
    )
    .into_bytes()
}

async fn say(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One public connection, from its first byte to its last.
async fn carry(shared: &Rc<Shared>, mut stream: TcpStream, peer: SocketAddr, raw: Option<String>) {
    let Some((peek_timeout, idle, max_per_service)) = with_hub(shared, |h| {
        (
            h.cfg.peek_timeout(),
            h.cfg.idle_timeout(),
            h.cfg.max_per_service as u64,
        )
    }) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (kind, name, first) = match raw {
        Some(name) => (Kind::Tcp, name, Vec::new()),
        None => {
            let deadline = tokio::time::Instant::now() + peek_timeout;
            match read_name(&mut stream, shared, deadline).await {
                Asked::Name(k, n, b) => (k, n, b),
                Asked::Refuse(say_what) => {
                    if let Some(b) = say_what {
                        say(&mut stream, b).await;
                    }
                    return;
                }
            }
        }
    };
    // The publisher's control connection, and the service's stats.
    // Stats exist only for names someone publishes here: a client asking for random names
    // makes the gateway keep nothing.
    let found = with_hub(shared, |h| {
        match h
            .names
            .route(&name, kind)
            .filter(|c| h.conns.contains_key(c))
        {
            Some(c) => {
                let stats = h.stats(&name, kind);
                if stats.open.get() >= max_per_service {
                    h.counters.over_service_limit += 1;
                    Err("503 Service Unavailable")
                } else {
                    Ok((c, stats))
                }
            }
            None if h.names.holder(&name).is_some() => {
                h.counters.publisher_down += 1;
                Err("502 Bad Gateway")
            }
            None => {
                h.counters.unknown_name += 1;
                Err("404 Not Found")
            }
        }
    });
    let (conn, stats) = match found {
        Some(Ok(x)) => x,
        Some(Err(status)) => {
            match kind {
                Kind::Tls => say(&mut stream, TLS_UNRECOGNIZED_NAME).await,
                Kind::Http => {
                    let text = match status {
                        "404 Not Found" => format!("no service {name:?} on this gateway"),
                        "502 Bad Gateway" => format!("the publisher of {name:?} is not connected"),
                        _ => format!("{name:?} has its most connections open"),
                    };
                    say(&mut stream, &http_refusal(status, &text)).await;
                }
                Kind::Tcp => {}
            }
            return;
        }
        None => return,
    };
    // A data connection of the publisher, told who the client is and given the first bytes.
    let mut head = encode_client(peer);
    head.extend_from_slice(&first);
    let mut data = None;
    for _ in 0..DATA_TRIES {
        let Some(d) = with_hub(shared, |h| h.take_data(conn, max_per_service as usize)).flatten()
        else {
            break;
        };
        let s = match d {
            Data::Ready(s) => Some(s),
            Data::Wait(rx) => tokio::time::timeout(DATA_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok),
        };
        let Some(mut s) = s else { break };
        if s.write_all(&head).await.is_ok() {
            data = Some(s);
            break;
        }
    }
    let Some(data) = data else {
        with_hub(shared, |h| h.counters.publisher_down += 1);
        return;
    };
    let _open = Open::new(&stats);
    // The peeked bytes went to the service: count them as the client's.
    stats
        .bytes_in
        .set(stats.bytes_in.get() + first.len() as u64);
    let meter = Rc::new(Meter::new(stats.bytes_in.clone(), stats.bytes_out.clone()));
    if splice(stream, data, idle, meter).await == Ended::Idle {
        with_hub(shared, |h| h.counters.idle_closed += 1);
    }
}

/// A connection counted open on a service until dropped.
pub struct Open(Rc<Stats>);

impl Open {
    pub fn new(stats: &Rc<Stats>) -> Open {
        stats.open.set(stats.open.get() + 1);
        stats.total.set(stats.total.get() + 1);
        Open(stats.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
    }
}
