//! The DNS responder's sockets: a UDP socket and a TCP listener on `dns.listen`, as tokio
//! tasks. They only move bytes: each query goes through [`Zone::handle`], queries for mesh
//! names go to the event loop as an [`Ask`] and wait for its answer with a deadline.
//!
//! Bounds: [`MAX_LOOKUPS`] queries waiting for the loop at once (beyond: SERVFAIL at once),
//! [`MAX_FORWARDS`] forwards in flight (beyond: SERVFAIL), [`MAX_TCP`] TCP connections (beyond:
//! closed at once), each with a deadline for every read and write and at most
//! [`MAX_TCP_QUERIES`] queries.

use super::NameAnswer;
use super::message::{self, Step, Transport, Zone};
use super::waiting::{Ask, LOOKUP_DEADLINE};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Queries waiting for a lookup at once, at most.
pub const MAX_LOOKUPS: usize = 512;
/// Queries being forwarded to the upstream at once, at most.
pub const MAX_FORWARDS: usize = 128;
/// TCP connections at once, at most.
pub const MAX_TCP: usize = 64;
/// Queries on one TCP connection, at most.
pub const MAX_TCP_QUERIES: usize = 64;
/// A TCP client must send its next query (length and message) within this.
pub const TCP_READ_DEADLINE: Duration = Duration::from_secs(5);
/// An answer must be written within this.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// The upstream must answer a forwarded query within this.
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(3);
/// Asks waiting in the channel to the event loop, at most.
pub const ASK_QUEUE: usize = 256;
/// The largest message read (UDP datagram or TCP message).
const MAX_MESSAGE: usize = 4096;

/// The running responder: its tasks end when it is dropped.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
    /// Where it answers (the port is the real one when 0 was asked for).
    pub local: SocketAddr,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the tasks share.
struct Shared {
    zone: Zone,
    forward: Option<SocketAddr>,
    /// The app's socket protection, for the sockets to `forward`.
    protect: crate::protect::Protect,
    asks: mpsc::Sender<Ask<NameAnswer>>,
    lookups: Arc<Semaphore>,
    forwards: Arc<Semaphore>,
}

/// Binds UDP and TCP on `listen` and starts answering. Queries for mesh names come out of the
/// returned channel for the event loop.
pub async fn start(
    listen: SocketAddr,
    zone: Zone,
    forward: Option<SocketAddr>,
    protect: crate::protect::Protect,
) -> anyhow::Result<(DnsServer, mpsc::Receiver<Ask<NameAnswer>>)> {
    let udp = UdpSocket::bind(listen)
        .await
        .with_context(|| format!("dns.listen: cannot bind UDP {listen} (is another DNS server on it? port 53 needs root or CAP_NET_BIND_SERVICE)"))?;
    let local = udp.local_addr()?;
    let tcp = TcpListener::bind(local)
        .await
        .with_context(|| format!("dns.listen: cannot bind TCP {local}"))?;
    let (asks, rx) = mpsc::channel(ASK_QUEUE);
    let shared = Arc::new(Shared {
        zone,
        forward,
        protect,
        asks,
        lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
    });
    let udp = Arc::new(udp);
    let tasks = vec![
        tokio::spawn(serve_udp(udp, shared.clone())),
        tokio::spawn(serve_tcp(tcp, shared)),
    ];
    tracing::info!(%local, "DNS responder listening (UDP and TCP)");
    Ok((DnsServer { tasks, local }, rx))
}

/// What became of a query once its step ran.
async fn resolve(
    shared: &Shared,
    bytes: &[u8],
    step: Step,
    transport: Transport,
) -> Option<Vec<u8>> {
    match step {
        Step::Reply(b) => Some(b),
        Step::Drop => None,
        Step::Lookup(q) => {
            let Ok(_permit) = shared.lookups.try_acquire() else {
                return Some(message::fail(&q));
            };
            let (reply, rx) = oneshot::channel();
            if shared
                .asks
                .try_send(Ask {
                    name: q.name.clone(),
                    reply,
                })
                .is_err()
            {
                return Some(message::fail(&q));
            }
            Some(match timeout(LOOKUP_DEADLINE, rx).await {
                Ok(Ok(found)) => message::answer(&q, found.as_ref()),
                _ => message::fail(&q),
            })
        }
        Step::Forward => {
            let fail = || message::servfail(bytes, transport);
            let (Some(up), Ok(_permit)) = (shared.forward, shared.forwards.try_acquire()) else {
                return fail();
            };
            match forward(up, bytes, &shared.protect).await {
                Some(answer) => Some(answer),
                None => fail(),
            }
        }
    }
}

/// Sends `query` to `upstream` and waits for its answer (same id, from that address).
async fn forward(
    upstream: SocketAddr,
    query: &[u8],
    protect: &crate::protect::Protect,
) -> Option<Vec<u8>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let s = Socket::new(Domain::for_address(any), Type::DGRAM, Some(Protocol::UDP)).ok()?;
    protect
        .socket(&s, crate::protect::SocketKind::Dns, upstream)
        .ok()?;
    s.set_nonblocking(true).ok()?;
    s.bind(&any.into()).ok()?;
    let sock = UdpSocket::from_std(s.into()).ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let deadline = tokio::time::Instant::now() + FORWARD_DEADLINE;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        // The same id, and an answer: anything else is not the answer (try the next datagram).
        if n >= 12 && buf[..2] == query[..2.min(query.len())] && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier answers and the like: not fatal.
                tracing::debug!("DNS UDP receive: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let bytes = &buf[..n];
        match shared.zone.handle(bytes, Transport::Udp) {
            Step::Reply(b) => {
                let _ = sock.try_send_to(&b, from);
            }
            Step::Drop => {}
            step => {
                // A lookup or a forward waits: in a task of its own (bounded by the
                // semaphores inside `resolve`).
                let (sock, shared, bytes) = (sock.clone(), shared.clone(), bytes.to_vec());
                tokio::spawn(async move {
                    if let Some(b) = resolve(&shared, &bytes, step, Transport::Udp).await {
                        let _ = sock.try_send_to(&b, from);
                    }
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("DNS TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%from, "DNS over TCP: {MAX_TCP} connections already; closed");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_conn(stream, &shared).await;
            drop(permit);
        });
    }
}

/// Queries on one connection, one after the other, each read and write with a deadline.
async fn serve_conn(mut stream: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    for _ in 0..MAX_TCP_QUERIES {
        let read = async {
            let len = usize::from(stream.read_u16().await.ok()?);
            let msg = buf.get_mut(..len)?;
            stream.read_exact(msg).await.ok()?;
            Some(len)
        };
        let Ok(Some(len)) = timeout(TCP_READ_DEADLINE, read).await else {
            return;
        };
        let bytes = buf[..len].to_vec();
        let step = shared.zone.handle(&bytes, Transport::Tcp);
        let Some(answer) = resolve(shared, &bytes, step, Transport::Tcp).await else {
            return;
        };
        let Ok(n) = u16::try_from(answer.len()) else {
            return;
        };
        let write = async {
            stream.write_all(&n.to_be_bytes()).await?;
            stream.write_all(&answer).await
        };
        if !matches!(timeout(WRITE_DEADLINE, write).await, Ok(Ok(()))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii(name).expect("n"),
            RecordType::AAAA,
        ));
        m.to_vec().expect("enc")
    }

    #[test]
    fn udp_and_tcp_with_a_lookup() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let zone = Zone::new("mesh", false).expect("zone");
            let (srv, mut asks) = start(
                "127.0.0.1:0".parse().expect("a"),
                zone,
                None,
                Default::default(),
            )
            .await
            .expect("start");
            // The "event loop": shop resolves, everything else does not exist.
            tokio::spawn(async move {
                while let Some(a) = asks.recv().await {
                    let found = (a.name == "shop").then(|| NameAnswer {
                        key: [9; 32],
                        addr: "fd00::9".parse().expect("addr"),
                    });
                    let _ = a.reply.send(found);
                }
            });
            let c = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            c.send_to(&query("shop.mesh."), srv.local)
                .await
                .expect("send");
            let mut buf = [0u8; 1500];
            let n = timeout(Duration::from_secs(2), c.recv(&mut buf))
                .await
                .expect("answered")
                .expect("recv");
            let m = Message::from_vec(&buf[..n]).expect("answer");
            assert_eq!(
                (m.response_code, m.answers.len()),
                (ResponseCode::NoError, 1)
            );
            // TCP: two queries on one connection.
            let mut s = TcpStream::connect(srv.local).await.expect("connect");
            for (name, code) in [
                ("nope.mesh.", ResponseCode::NXDomain),
                ("shop.mesh.", ResponseCode::NoError),
            ] {
                let q = query(name);
                s.write_u16(q.len() as u16).await.expect("w");
                s.write_all(&q).await.expect("w");
                let len = s.read_u16().await.expect("len");
                let mut a = vec![0u8; usize::from(len)];
                s.read_exact(&mut a).await.expect("read");
                assert_eq!(Message::from_vec(&a).expect("answer").response_code, code);
            }
        });
    }
}
