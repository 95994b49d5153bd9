//! Link transports over connections: `tcp://` and `quic://`. The link core sees datagrams and
//! [`Endpoint`]s whatever the transport; this file turns them into connections and back.
//!
//! * **TCP**: each link datagram is framed as a 2-byte big-endian length and the datagram (the
//!   Noise messages are the same as over UDP, so a TCP link is exactly as authenticated and
//!   encrypted). For networks that block UDP.
//! * **QUIC**: a quinn connection whose TLS identity is the node key ([`crate::quic_tls`]).
//!   Link datagrams of the data path travel in QUIC datagrams when they fit the path
//!   (`max_datagram_size`); handshakes and anything bigger go on one bidirectional stream,
//!   framed as over TCP. The link core is told the key TLS authenticated
//!   ([`crate::link::Links::bind_endpoint`]), so the Noise handshake over the connection
//!   must present that same key.
//!
//! A connection is named by the remote's socket address: the address dialed, or the one an
//! inbound connection came from. Connecting happens when the link core first sends to an
//! endpoint that has no connection (its handshake waits for it, a few frames are kept);
//! each connection has a reader task that hands frames to the event loop through one channel
//! and a writer task fed by a bounded queue. A full queue drops, as a full UDP socket buffer
//! would: the loop never waits for one slow connection.

use crate::identity::{Identity, PublicKey};
use crate::quic_tls;
use crate::uri::{Endpoint, Scheme};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frames queued per connection for its writer.
const QUEUE: usize = 2048;
/// Frames kept for a connection being set up.
const PENDING: usize = 32;
/// A failed connection attempt to an endpoint is not repeated sooner than this.
const REDIAL: Duration = Duration::from_secs(1);
/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a QUIC client writes first on its stream, so the server sees the stream at once.
const QUIC_PREAMBLE: &[u8; 4] = b"PLQ1";
/// Most inbound connections (TCP and QUIC together) at once; beyond, new ones are closed
/// (and at most [`MAX_PER_IP`] from one address).
const MAX_INBOUND: usize = 256;
/// A connection that carried nothing for this long is closed (a live link sends something
/// every half second; QUIC's own idle timeout is the same).
const IDLE: Duration = Duration::from_secs(10);
/// Server name given to quinn (identity is the key; the name is not checked or sent).
const SERVER_NAME: &str = "planetary-lan";

/// What the connections tell the event loop.
pub enum StreamEvent {
    /// A link datagram arrived.
    Frame(Endpoint, Vec<u8>),
    /// A connection is up (dialed or accepted).
    Up(Endpoint, Conn),
    /// The connection `id` to this endpoint ended.
    Down(Endpoint, u64),
    /// Connecting (attempt `id`) to this endpoint failed, and why.
    Failed(Endpoint, u64, String),
}

/// One connection, as the event loop holds it.
pub struct Conn {
    id: u64,
    created: Instant,
    tx: mpsc::Sender<Vec<u8>>,
    quic: Option<quinn::Connection>,
    /// The key the transport authenticated (QUIC), if any.
    pub key: Option<PublicKey>,
    inbound: bool,
}

struct Inner {
    conns: HashMap<Endpoint, Conn>,
    /// Being set up: the attempt's id, and the frames waiting for it.
    connecting: HashMap<Endpoint, (u64, Vec<Vec<u8>>)>,
    /// The QUIC endpoint, made when first needed if there is no QUIC listener.
    quic: Option<quinn::Endpoint>,
    /// Last failed or started attempt per endpoint.
    attempts: HashMap<Endpoint, Instant>,
    /// Endpoints that were inbound connections: never dialed (their port is ephemeral).
    was_inbound: HashMap<Endpoint, Instant>,
    dropped: u64,
}

/// The TCP and QUIC connections of the node.
pub struct Streams {
    inner: Mutex<Inner>,
    events: mpsc::Sender<StreamEvent>,
    identity: Identity,
    next_id: std::sync::atomic::AtomicU64,
    /// Listening addresses, for `meshctl self`.
    pub listening: Vec<Endpoint>,
}

impl Streams {
    /// Starts listening on `listen` (TCP and QUIC endpoints only). QUIC gets an endpoint even
    /// without a QUIC listen address once it is needed for dialing.
    pub async fn open(
        listen: &[Endpoint],
        identity: &Identity,
        need_quic_client: bool,
    ) -> anyhow::Result<(Streams, mpsc::Receiver<StreamEvent>)> {
        let (events, rx) = mpsc::channel(4096);
        let mut listening = Vec::new();
        let mut quic = None;
        let inbound = Permits::new();
        for ep in listen {
            match ep.scheme {
                Scheme::Udp => {}
                Scheme::Tcp => {
                    let l = tcp_listener(ep.addr).map_err(|e| {
                        anyhow::anyhow!("cannot listen on tcp://{} ({e}); is another meshd or program using it?", ep.addr)
                    })?;
                    let local = l.local_addr()?;
                    tracing::info!(listen = %Endpoint::new(Scheme::Tcp, local), "listening");
                    listening.push(Endpoint::new(Scheme::Tcp, local));
                    tokio::spawn(accept_tcp(l, events.clone(), inbound.clone()));
                }
                Scheme::Quic => {
                    if quic.is_some() {
                        anyhow::bail!("listen: only one quic:// address is supported");
                    }
                    let cfg = quic_tls::server_config(identity)?;
                    let e = quinn::Endpoint::server(cfg, ep.addr).map_err(|e| {
                        anyhow::anyhow!("cannot listen on quic://{} ({e}); is the port used by another socket (UDP links need a port of their own)?", ep.addr)
                    })?;
                    let local = e.local_addr()?;
                    tracing::info!(listen = %Endpoint::new(Scheme::Quic, local), "listening");
                    listening.push(Endpoint::new(Scheme::Quic, local));
                    tokio::spawn(accept_quic(e.clone(), events.clone(), inbound.clone()));
                    quic = Some(e);
                }
            }
        }
        if quic.is_none() && need_quic_client {
            quic = Some(quic_client()?);
        }
        let s = Streams {
            inner: Mutex::new(Inner {
                conns: HashMap::new(),
                connecting: HashMap::new(),
                quic,
                attempts: HashMap::new(),
                was_inbound: HashMap::new(),
                dropped: 0,
            }),
            events,
            identity: Identity::from_seed(&identity.secret_seed()),
            next_id: 1.into(),
            listening,
        };
        Ok((s, rx))
    }

    /// Frames dropped because a connection's queue was full or it could not be set up.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().map_or(0, |g| g.dropped)
    }

    /// The transport-authenticated key of the connection to `ep`, if any.
    pub fn conn_key(&self, ep: &Endpoint) -> Option<PublicKey> {
        self.inner.lock().ok()?.conns.get(ep)?.key
    }

    /// Sends one link datagram to `to` (TCP or QUIC), connecting first if needed.
    pub fn send(&self, to: Endpoint, data: &[u8]) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        if let Some(c) = g.conns.get(&to) {
            if let Some(q) = &c.quic
                && data.first() == Some(&crate::wire::TYPE_TRANSPORT)
                && q.max_datagram_size().is_some_and(|m| data.len() <= m)
            {
                if let Err(e) = q.send_datagram(Bytes::copy_from_slice(data)) {
                    tracing::debug!(%to, "QUIC datagram: {e}");
                    g.dropped += 1;
                }
                return;
            }
            if c.tx.try_send(data.to_vec()).is_err() {
                g.dropped += 1;
            }
            return;
        }
        if let Some((_, pending)) = g.connecting.get_mut(&to) {
            if pending.len() < PENDING {
                pending.push(data.to_vec());
            } else {
                g.dropped += 1;
            }
            return;
        }
        let now = Instant::now();
        if g.was_inbound.contains_key(&to) || g.attempts.get(&to).is_some_and(|t| now < *t + REDIAL)
        {
            g.dropped += 1;
            return;
        }
        g.attempts.insert(to, now);
        let id = self.fresh_id();
        g.connecting.insert(to, (id, vec![data.to_vec()]));
        let events = self.events.clone();
        match to.scheme {
            Scheme::Tcp => {
                tokio::spawn(dial_tcp(to, id, events));
            }
            Scheme::Quic => {
                if g.quic.is_none() {
                    // A quic:// peer added at runtime, with no QUIC listener: a client
                    // endpoint of its own.
                    match quic_client() {
                        Ok(e) => g.quic = Some(e),
                        Err(e) => tracing::warn!(%to, "cannot make a QUIC endpoint: {e}"),
                    }
                }
                match (&g.quic, quic_tls::client_config(&self.identity, None)) {
                    (Some(e), Ok(cfg)) => {
                        tokio::spawn(dial_quic(e.clone(), cfg, to, id, events));
                    }
                    _ => {
                        g.connecting.remove(&to);
                    }
                }
            }
            Scheme::Udp => {
                g.connecting.remove(&to);
            }
        }
    }

    fn fresh_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A connection came up: keep it, send what waited for it. Returns the key its transport
    /// authenticated, for the link core.
    pub fn up(&self, ep: Endpoint, conn: Conn) -> Option<PublicKey> {
        let Ok(mut g) = self.inner.lock() else {
            return None;
        };
        let now = Instant::now();
        if conn.inbound && ep.scheme == Scheme::Tcp {
            // A TCP connection comes from an ephemeral port; a QUIC one from the remote's
            // listening socket, which may well be dialed later.
            if g.was_inbound.len() >= 4 * MAX_INBOUND {
                g.was_inbound
                    .retain(|_, t| now < *t + Duration::from_secs(600));
                if g.was_inbound.len() >= 4 * MAX_INBOUND {
                    g.was_inbound.clear();
                }
            }
            g.was_inbound.insert(ep, now);
        }
        let key = conn.key;
        tracing::debug!(endpoint = %ep, inbound = conn.inbound, "connection up");
        let pending = g.connecting.remove(&ep).map(|(_, p)| p).unwrap_or_default();
        g.attempts.remove(&ep);
        // Two QUIC connections between the same two sockets (both sides dialed at once):
        // both sides keep the one dialed by the lower key, and close the other.
        // (Only while the old one is young and open: one from before a restart of the peer
        // is simply replaced.)
        if let (Some(old), Some(new_q)) = (g.conns.get(&ep), conn.quic.as_ref())
            && let Some(old_q) = old.quic.as_ref()
            && old_q.close_reason().is_none()
            && now < old.created + CONNECT_TIMEOUT
        {
            let own = Some(self.identity.public_key());
            let dialer = |c: &Conn| if c.inbound { c.key } else { own };
            if dialer(old) <= dialer(&conn) {
                new_q.close(2u32.into(), b"duplicate");
                drop(g);
                for p in pending {
                    self.send(ep, &p);
                }
                return key;
            }
            old_q.close(2u32.into(), b"duplicate");
        }
        // A newer connection to the same endpoint replaces the old one.
        g.conns.insert(ep, conn);
        drop(g);
        for p in pending {
            self.send(ep, &p);
        }
        key
    }

    /// The connection `id` to `ep` ended (or never came up). Returns true if it was the
    /// current one.
    pub fn down(&self, ep: Endpoint, id: u64) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        if g.conns.get(&ep).is_some_and(|c| c.id == id) {
            g.conns.remove(&ep);
            tracing::debug!(endpoint = %ep, "connection down");
            return true;
        }
        if g.connecting.get(&ep).is_some_and(|(i, _)| *i == id) {
            g.connecting.remove(&ep);
            tracing::debug!(endpoint = %ep, "connection failed");
        }
        false
    }

    /// Closes every connection (shutdown), after what was queued is written.
    pub async fn close(&self) {
        let conns: Vec<Conn> = match self.inner.lock() {
            Ok(mut g) => g.conns.drain().map(|(_, c)| c).collect(),
            Err(_) => return,
        };
        drop(conns);
        // Writers end when their queue closes; give them a moment to flush.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(q) = self.inner.lock().ok().and_then(|g| g.quic.clone()) {
            q.close(0u32.into(), b"shutdown");
        }
    }
}

/// A QUIC endpoint for dialing only.
fn quic_client() -> anyhow::Result<quinn::Endpoint> {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    Ok(quinn::Endpoint::client(v6).or_else(|_| quinn::Endpoint::client(v4))?)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// Inbound connection slots: [`MAX_INBOUND`] in all, [`MAX_PER_IP`] per remote address.
#[derive(Clone)]
struct Permits {
    all: std::sync::Arc<tokio::sync::Semaphore>,
    per_ip: std::sync::Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// Most inbound connections from one address.
const MAX_PER_IP: usize = 8;

impl Permits {
    fn new() -> Permits {
        Permits {
            all: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND)),
            per_ip: Default::default(),
        }
    }

    /// A slot for a connection from `ip`, if one is free.
    fn take(&self, ip: std::net::IpAddr) -> Option<Slot> {
        let all = self.all.clone().try_acquire_owned().ok()?;
        let mut m = self.per_ip.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_PER_IP {
            return None;
        }
        *n += 1;
        Some(Slot {
            _all: all,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }
}

/// An inbound connection's slot, given back when the connection ends.
pub struct Slot {
    _all: tokio::sync::OwnedSemaphorePermit,
    ip: std::net::IpAddr,
    per_ip: std::sync::Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

async fn accept_tcp(
    l: tokio::net::TcpListener,
    events: mpsc::Sender<StreamEvent>,
    permits: Permits,
) {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 62);
    loop {
        match l.accept().await {
            Ok((s, from)) => {
                let Some(permit) = permits.take(from.ip().to_canonical()) else {
                    tracing::debug!(%from, "too many inbound connections; closed");
                    continue;
                };
                let ep = Endpoint::new(Scheme::Tcp, crate::udp::canonical(from));
                let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                start_tcp(s, ep, id, Some(permit), events.clone()).await;
            }
            Err(e) => {
                tracing::debug!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if events.is_closed() {
            return;
        }
    }
}

async fn dial_tcp(to: Endpoint, id: u64, events: mpsc::Sender<StreamEvent>) {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(to.addr)).await {
        Ok(Ok(s)) => start_tcp(s, to, id, None, events).await,
        Ok(Err(e)) => {
            tracing::debug!(%to, "TCP connect: {e}");
            let why = format!("TCP connect: {e}");
            let _ = events.send(StreamEvent::Failed(to, id, why)).await;
        }
        Err(_) => {
            tracing::debug!(%to, "TCP connect timed out");
            let why = "TCP connect: timed out".to_string();
            let _ = events.send(StreamEvent::Failed(to, id, why)).await;
        }
    }
}

/// An inbound connection holds a permit (see [`MAX_INBOUND`]) until it ends.
type Permit = Option<Slot>;

async fn start_tcp(
    s: tokio::net::TcpStream,
    ep: Endpoint,
    id: u64,
    permit: Permit,
    events: mpsc::Sender<StreamEvent>,
) {
    let inbound = permit.is_some();
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let conn = Conn {
        id,
        created: Instant::now(),
        tx,
        quic: None,
        key: None,
        inbound,
    };
    if events.send(StreamEvent::Up(ep, conn)).await.is_err() {
        return;
    }
    tokio::spawn(write_frames(w, rx, ep));
    tokio::spawn(read_frames(r, ep, id, events, permit));
}

/// Writes queued frames, length-prefixed, coalescing what is queued into one write.
async fn write_frames(
    mut w: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    ep: Endpoint,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(f) = rx.recv().await {
        buf.clear();
        push_frame(&mut buf, &f);
        while buf.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(f) => push_frame(&mut buf, &f),
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&buf).await {
            tracing::debug!(%ep, "connection write: {e}");
            return;
        }
    }
    let _ = w.shutdown().await;
}

fn push_frame(buf: &mut Vec<u8>, f: &[u8]) {
    let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&f[..usize::from(len)]);
}

/// Reads length-prefixed frames until the connection ends (or is idle for [`IDLE`]), then
/// reports it down.
async fn read_frames(
    r: impl AsyncRead + Unpin,
    ep: Endpoint,
    id: u64,
    events: mpsc::Sender<StreamEvent>,
    _permit: Permit,
) {
    let mut r = tokio::io::BufReader::with_capacity(64 * 1024, r);
    loop {
        let len = match tokio::time::timeout(IDLE, r.read_u16()).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(%ep, "connection idle; closed");
                break;
            }
            Ok(Ok(n)) => usize::from(n),
        };
        let mut f = vec![0u8; len];
        if r.read_exact(&mut f).await.is_err() {
            break;
        }
        if events.send(StreamEvent::Frame(ep, f)).await.is_err() {
            return;
        }
    }
    let _ = events.send(StreamEvent::Down(ep, id)).await;
}

async fn accept_quic(e: quinn::Endpoint, events: mpsc::Sender<StreamEvent>, permits: Permits) {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 61);
    while let Some(incoming) = e.accept().await {
        let Some(permit) = permits.take(incoming.remote_address().ip().to_canonical()) else {
            incoming.refuse();
            continue;
        };
        let events = events.clone();
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let from = incoming.remote_address();
            let conn = match tokio::time::timeout(CONNECT_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(%from, "QUIC handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, conn.accept_bi()).await;
            let Ok(Ok((send, mut recv))) = stream else {
                conn.close(1u32.into(), b"no stream");
                return;
            };
            let mut pre = [0u8; 4];
            let read = tokio::time::timeout(CONNECT_TIMEOUT, recv.read_exact(&mut pre)).await;
            if !matches!(read, Ok(Ok(()))) || &pre != QUIC_PREAMBLE {
                conn.close(1u32.into(), b"bad preamble");
                return;
            }
            let ep = Endpoint::new(Scheme::Quic, crate::udp::canonical(conn.remote_address()));
            start_quic(conn, send, recv, ep, id, Some(permit), events).await;
        });
    }
}

async fn dial_quic(
    e: quinn::Endpoint,
    cfg: quinn::ClientConfig,
    to: Endpoint,
    id: u64,
    events: mpsc::Sender<StreamEvent>,
) {
    let attempt = async {
        let conn = e
            .connect_with(cfg, to.addr, SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(QUIC_PREAMBLE)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, send, recv))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok((conn, send, recv))) => start_quic(conn, send, recv, to, id, None, events).await,
        Ok(Err(e)) => {
            tracing::debug!(%to, "QUIC connect: {e}");
            let why = format!("QUIC connect: {e}");
            let _ = events.send(StreamEvent::Failed(to, id, why)).await;
        }
        Err(_) => {
            tracing::debug!(%to, "QUIC connect timed out");
            let why = "QUIC connect: timed out".to_string();
            let _ = events.send(StreamEvent::Failed(to, id, why)).await;
        }
    }
}

async fn start_quic(
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    ep: Endpoint,
    id: u64,
    permit: Permit,
    events: mpsc::Sender<StreamEvent>,
) {
    let inbound = permit.is_some();
    let Some(key) = quic_tls::peer_key(&conn) else {
        conn.close(1u32.into(), b"no key");
        return;
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let c = Conn {
        id,
        created: Instant::now(),
        tx,
        quic: Some(conn.clone()),
        key: Some(key),
        inbound,
    };
    if events.send(StreamEvent::Up(ep, c)).await.is_err() {
        return;
    }
    tokio::spawn(write_frames(send, rx, ep));
    // The stream's frames and the connection's datagrams both end up as frames; the
    // connection ending ends both (the stream reader reports it).
    let dgrams = events.clone();
    let c2 = conn.clone();
    tokio::spawn(async move {
        while let Ok(d) = c2.read_datagram().await {
            if dgrams
                .send(StreamEvent::Frame(ep, d.to_vec()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    // The stream may be quiet while datagrams flow: its reader must not time out on its own.
    tokio::spawn(read_quic_stream(recv, conn, ep, id, events, permit));
}

/// Reads the QUIC control stream until the connection ends (QUIC's idle timeout closes a
/// connection that carries nothing), then reports it down.
async fn read_quic_stream(
    recv: quinn::RecvStream,
    conn: quinn::Connection,
    ep: Endpoint,
    id: u64,
    events: mpsc::Sender<StreamEvent>,
    _permit: Permit,
) {
    let mut r = tokio::io::BufReader::with_capacity(16 * 1024, recv);
    loop {
        let len = match r.read_u16().await {
            Ok(0) | Err(_) => break,
            Ok(n) => usize::from(n),
        };
        let mut f = vec![0u8; len];
        if r.read_exact(&mut f).await.is_err() {
            break;
        }
        if events.send(StreamEvent::Frame(ep, f)).await.is_err() {
            return;
        }
    }
    conn.close(0u32.into(), b"stream ended");
    let _ = events.send(StreamEvent::Down(ep, id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_slots_are_bounded_per_address_and_in_all() {
        let p = Permits::new();
        let a: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
        let mut held: Vec<Slot> = (0..MAX_PER_IP).filter_map(|_| p.take(a)).collect();
        assert_eq!(held.len(), MAX_PER_IP);
        assert!(p.take(a).is_none(), "one address gets at most MAX_PER_IP");
        held.pop();
        assert!(p.take(a).is_some(), "a slot given back is free again");
        let mut others = Vec::new();
        for i in 0..MAX_INBOUND {
            let ip = std::net::IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            if let Some(s) = p.take(ip) {
                others.push(s);
            }
        }
        assert_eq!(
            others.len() + held.len(),
            MAX_INBOUND,
            "and MAX_INBOUND in all"
        );
    }
}
