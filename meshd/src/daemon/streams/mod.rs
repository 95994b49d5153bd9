//! Link transports over connections, `tcp://` and `quic://`: the tokio part, which only moves
//! bytes. Which connections exist (dial on first send, redial backoff, the crossing
//! tie-break, idle close, frames kept meanwhile, inbound limits) is decided by the sans-IO
//! [`Conns`] core; this file runs what it asks for and tells it what happened.
//!
//! * **TCP**: each link datagram is framed as a 2-byte big-endian length and the datagram (the
//!   Noise messages are the same as over UDP, so a TCP link is exactly as authenticated and
//!   encrypted). For networks that block UDP.
//! * **QUIC**: a quinn connection whose TLS identity is the node key ([`crate::quic_tls`]).
//!   Link datagrams of the data path travel in QUIC datagrams when they fit the path
//!   (`max_datagram_size`); handshakes and anything bigger go on one bidirectional stream,
//!   framed as over TCP. The link core is told the key TLS authenticated
//!   ([`crate::link::Links::bind_endpoint`], through [`crate::conns::Event::Bound`]).
//!
//! Tasks: one accept task per listener, one task per dial or QUIC accept being set up, and per
//! connection a reader (frames to the loop through the one event channel) and a writer fed by
//! a bounded queue that drops when full, as a full UDP socket buffer would: the loop never
//! waits for one slow connection. Everything else happens on the loop, in [`Streams::send`]
//! (the data path) and [`Streams::handle`] (the events); neither holds a lock, and neither
//! awaits. The core's state sits in a `RefCell`: the loop is one thread, and no borrow lives
//! across an `await`.

mod reader;
mod tasks;

use crate::conns::{Action, ConnId, Conns, Event, Send};
use crate::identity::{Identity, PublicKey};
use crate::link::Links;
use crate::protect::Protect;
use crate::quic_tls;
use crate::uri::{Endpoint, Scheme};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tasks::{
    accept_quic, accept_quic_conn, accept_tcp, dial_quic, dial_tcp, quic_client, quic_endpoint,
    quic_socket, read_quic, read_tcp, tcp_listener, write_frames,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Frames queued per connection for its writer.
const QUEUE: usize = 2048;
/// Events (frames above all) queued from the connection tasks for the loop.
const EVENTS: usize = 4096;
/// A write that makes no progress for this long ends its connection (the peer stopped
/// reading, or is gone without a word).
const WRITE_STALL: Duration = Duration::from_secs(10);
/// Bytes a writer gathers from its queue into one write.
const WRITE_BATCH: usize = 60 * 1024;
/// What a QUIC client writes first on its stream, so the server sees the stream at once.
const QUIC_PREAMBLE: &[u8; 4] = b"PLQ1";
/// Server name given to quinn (identity is the key; the name is not checked or sent).
const SERVER_NAME: &str = "planetary-lan";
/// QUIC connection attempts quinn holds before the loop accepts or refuses them (it does so
/// at once; the core's slots bound the connections).
const QUIC_MAX_INCOMING: usize = crate::conns::MAX_INBOUND;
/// Bytes quinn buffers for one QUIC connection attempt before the loop takes it.
const QUIC_INCOMING_BUFFER: u64 = 16 * 1024;
/// Bytes quinn buffers for all QUIC connection attempts together.
const QUIC_INCOMING_BUFFER_TOTAL: u64 = 1024 * 1024;

/// What the connection tasks tell the event loop (see [`next_event`]).
pub enum StreamEvent {
    /// A link datagram arrived on a connection.
    Frame(ConnId, Vec<u8>),
    /// A TCP listener accepted a connection.
    AcceptedTcp(Endpoint, tokio::net::TcpStream),
    /// The QUIC endpoint is asked for a connection.
    IncomingQuic(Endpoint, Box<quinn::Incoming>),
    /// A dial or a QUIC accept is set up.
    Up(ConnId, Box<Transport>),
    /// A connection ended.
    Down(ConnId),
    /// A dial or a QUIC accept failed, and why.
    Failed(ConnId, String),
    /// The connection manager's timer is due.
    Timeout,
}

/// A connection set up, ready for its reader and writer.
pub enum Transport {
    /// A TCP stream.
    Tcp(tokio::net::TcpStream),
    /// A QUIC connection, its stream, and the key its TLS authenticated.
    Quic {
        /// The connection.
        conn: quinn::Connection,
        /// The stream's sending half.
        send: quinn::SendStream,
        /// The stream's receiving half.
        recv: quinn::RecvStream,
        /// The remote's key.
        key: PublicKey,
    },
}

/// The I/O side of one connection.
enum Io {
    /// Being dialed or accepted by this task.
    Opening(AbortHandle),
    /// Up: its writer's queue, its reader, the QUIC connection, and whether it carries an
    /// authenticated link (shared with the reader, whose buffer stays small until then).
    Open {
        tx: mpsc::Sender<Vec<u8>>,
        reader: AbortHandle,
        quic: Option<quinn::Connection>,
        authenticated: Arc<AtomicBool>,
    },
}

struct Inner {
    core: Conns,
    io: HashMap<ConnId, Io>,
    /// The QUIC endpoint, made when first needed if there is no QUIC listener.
    quic: Option<quinn::Endpoint>,
    /// Frames dropped by a full writer queue or a refused QUIC datagram.
    queue_dropped: u64,
}

/// The TCP and QUIC connections of the node.
pub struct Streams {
    inner: RefCell<Inner>,
    events: mpsc::Sender<StreamEvent>,
    identity: Identity,
    /// The app's socket protection (none for a daemon).
    protect: Protect,
    /// Listening addresses, for `meshctl self`.
    pub listening: Vec<Endpoint>,
}

/// The next event of the connections, or [`StreamEvent::Timeout`] at `deadline`
/// ([`Streams::poll_timeout`]).
pub async fn next_event(
    rx: &mut mpsc::Receiver<StreamEvent>,
    deadline: Option<Instant>,
) -> Option<StreamEvent> {
    let Some(at) = deadline else {
        return rx.recv().await;
    };
    tokio::select! {
        ev = rx.recv() => ev,
        _ = tokio::time::sleep_until(at.into()) => Some(StreamEvent::Timeout),
    }
}

impl Streams {
    /// Starts listening on `listen` (TCP and QUIC endpoints only). QUIC gets an endpoint even
    /// without a QUIC listen address once it is needed for dialing.
    pub async fn open(
        listen: &[Endpoint],
        identity: &Identity,
        need_quic_client: bool,
        protect: &Protect,
    ) -> anyhow::Result<(Streams, mpsc::Receiver<StreamEvent>)> {
        let (events, rx) = mpsc::channel(EVENTS);
        let mut listening = Vec::new();
        let mut quic = None;
        for ep in listen {
            match ep.scheme {
                Scheme::Udp => {}
                Scheme::Tcp => {
                    let l = tcp_listener(ep.addr, protect).map_err(|e| {
                        anyhow::anyhow!("cannot listen on tcp://{} ({e}); is another meshd or program using it?", ep.addr)
                    })?;
                    let local = l.local_addr()?;
                    tracing::info!(listen = %Endpoint::new(Scheme::Tcp, local), "listening");
                    listening.push(Endpoint::new(Scheme::Tcp, local));
                    tokio::spawn(accept_tcp(l, events.clone(), protect.clone()));
                }
                Scheme::Quic => {
                    if quic.is_some() {
                        anyhow::bail!("listen: only one quic:// address is supported");
                    }
                    let mut cfg = quic_tls::server_config(identity)?;
                    // quinn's own handshake and idle bound is the transport config's idle
                    // timeout; these bound what it holds for attempts not yet taken.
                    cfg.max_incoming(QUIC_MAX_INCOMING)
                        .incoming_buffer_size(QUIC_INCOMING_BUFFER)
                        .incoming_buffer_size_total(QUIC_INCOMING_BUFFER_TOTAL);
                    let e = quic_endpoint(ep.addr, Some(cfg), protect).map_err(|e| {
                        anyhow::anyhow!("cannot listen on quic://{} ({e}); is the port used by another socket (UDP links need a port of their own)?", ep.addr)
                    })?;
                    let local = e.local_addr()?;
                    tracing::info!(listen = %Endpoint::new(Scheme::Quic, local), "listening");
                    listening.push(Endpoint::new(Scheme::Quic, local));
                    tokio::spawn(accept_quic(e.clone(), events.clone()));
                    quic = Some(e);
                }
            }
        }
        if quic.is_none() && need_quic_client {
            quic = Some(quic_client(protect)?);
        }
        let s = Streams {
            inner: RefCell::new(Inner {
                core: Conns::new(identity.public_key()),
                io: HashMap::new(),
                quic,
                queue_dropped: 0,
            }),
            events,
            identity: Identity::from_seed(&identity.secret_seed()),
            protect: protect.clone(),
            listening,
        };
        Ok((s, rx))
    }

    /// Frames dropped: by the connection manager (see its counters), by a full writer queue,
    /// or refused as QUIC datagrams.
    pub fn dropped(&self) -> u64 {
        let g = self.inner.borrow();
        g.core.counters().dropped() + g.queue_dropped
    }

    /// The connection manager's counters.
    pub fn counters(&self) -> crate::conns::Counters {
        self.inner.borrow().core.counters().clone()
    }

    /// When [`StreamEvent::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.inner.borrow().core.poll_timeout()
    }

    /// Sends one link datagram to `to` (TCP or QUIC), connecting first if needed.
    pub fn send(&self, to: Endpoint, data: &[u8]) {
        let now = Instant::now();
        let g = &mut *self.inner.borrow_mut();
        if let Send::Write(id) = g.core.handle_send(now, to, data) {
            g.write(id, data);
        }
        self.run_actions(g, now);
    }

    /// Handles one event of the connections: frames for the link core go to `frames` (with
    /// the endpoint the link core hears them from); bindings and failures go to `links`.
    pub fn handle(
        &self,
        now: Instant,
        ev: StreamEvent,
        links: &mut Links,
        frames: &mut Vec<(Endpoint, Vec<u8>)>,
    ) {
        let g = &mut *self.inner.borrow_mut();
        match ev {
            StreamEvent::Frame(id, data) => {
                if let Some(from) = g.core.handle_frame(now, id) {
                    frames.push((from, data));
                }
            }
            StreamEvent::AcceptedTcp(from, s) => match g.core.handle_inbound(now, from) {
                Some(id) => {
                    g.start(id, Transport::Tcp(s), &self.events);
                    g.core.handle_up(now, id, None);
                }
                None => tracing::debug!(%from, "too many inbound connections; closed"),
            },
            StreamEvent::IncomingQuic(from, incoming)
                if !incoming.remote_address_validated() && g.core.must_validate() =>
            {
                // Many slots taken: the source proves its address (a Retry) before it gets one.
                tracing::debug!(%from, "QUIC: address not proven; Retry asked");
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
            }
            StreamEvent::IncomingQuic(from, incoming) => match g.core.handle_inbound(now, from) {
                Some(id) => {
                    let task = tokio::spawn(accept_quic_conn(*incoming, id, self.events.clone()));
                    g.io.insert(id, Io::Opening(task.abort_handle()));
                }
                None => {
                    tracing::debug!(%from, "too many inbound connections; refused");
                    incoming.refuse();
                }
            },
            StreamEvent::Up(id, t) => {
                let key = match &*t {
                    Transport::Quic { key, .. } => Some(*key),
                    Transport::Tcp(_) => None,
                };
                g.start(id, *t, &self.events);
                g.core.handle_up(now, id, key);
            }
            StreamEvent::Down(id) => {
                if let Some(io) = g.io.remove(&id) {
                    io.close();
                }
                g.core.handle_down(now, id);
            }
            StreamEvent::Failed(id, why) => {
                if let Some(io) = g.io.remove(&id) {
                    io.close();
                }
                g.core.handle_dial_failed(now, id, why);
            }
            StreamEvent::Timeout => g.core.handle_timeout(now),
        }
        self.run_actions(g, now);
        while let Some(e) = g.core.poll_event() {
            match e {
                Event::Bound { endpoint, key } => links.bind_endpoint(endpoint, key),
                Event::Unbound { endpoint } => links.unbind_endpoint(&endpoint),
                Event::DialFailed { endpoint, why } => links.transport_failed(&endpoint, why),
            }
        }
    }

    /// Carries out what the core asked for.
    fn run_actions(&self, g: &mut Inner, now: Instant) {
        while let Some(a) = g.core.poll_action() {
            match a {
                Action::Dial { id, to } => self.dial(g, now, id, to),
                Action::Write { id, frame } => g.write(id, &frame),
                Action::Close { id, why } => {
                    tracing::debug!(id = id.0, ?why, "connection closed");
                    if let Some(io) = g.io.remove(&id) {
                        io.close();
                    }
                }
            }
        }
    }

    fn dial(&self, g: &mut Inner, now: Instant, id: ConnId, to: Endpoint) {
        let events = self.events.clone();
        let task = match to.scheme {
            Scheme::Tcp => tokio::spawn(dial_tcp(to, id, events, self.protect.clone())),
            Scheme::Quic => {
                if g.quic.is_none() {
                    // A quic:// peer added at runtime, with no QUIC listener: a client
                    // endpoint of its own.
                    match quic_client(&self.protect) {
                        Ok(e) => g.quic = Some(e),
                        Err(e) => {
                            let why = format!("QUIC: cannot make a client endpoint ({e})");
                            g.core.handle_dial_failed(now, id, why);
                            return;
                        }
                    }
                }
                let cfg = match quic_tls::client_config(&self.identity, None) {
                    Ok(cfg) => cfg,
                    Err(e) => {
                        let why = format!("QUIC: cannot make the TLS configuration ({e})");
                        g.core.handle_dial_failed(now, id, why);
                        return;
                    }
                };
                let Some(e) = g.quic.clone() else {
                    return;
                };
                tokio::spawn(dial_quic(e, cfg, to, id, events))
            }
            Scheme::Udp => {
                g.core
                    .handle_dial_failed(now, id, "not a connection".into());
                return;
            }
        };
        g.io.insert(id, Io::Opening(task.abort_handle()));
    }

    /// The network changed: a dialing-only QUIC endpoint moves to a new socket (protected
    /// again), and quinn migrates its connections there. A QUIC listener keeps its socket
    /// (bound to every address, it receives on new ones, and its port must not change).
    /// TCP connections cannot move: the link's liveness notices the dead ones within a second
    /// and dials again.
    pub fn rebind(&self) -> anyhow::Result<()> {
        let g = self.inner.borrow();
        let Some(e) = &g.quic else {
            return Ok(());
        };
        if self.listening.iter().any(|l| l.scheme == Scheme::Quic) {
            return Ok(());
        }
        let local = e.local_addr()?;
        let s = quic_socket(std::net::SocketAddr::new(local.ip(), 0), &self.protect)?;
        e.rebind(s)?;
        tracing::info!("QUIC endpoint moved to a new socket");
        Ok(())
    }

    /// Closes every connection (shutdown), after what was queued is written.
    pub async fn close(&self) {
        let (ios, quic) = {
            let mut g = self.inner.borrow_mut();
            g.core.close_all();
            let ios: Vec<Io> = g.io.drain().map(|(_, io)| io).collect();
            (ios, g.quic.clone())
        };
        for io in &ios {
            match io {
                Io::Opening(task) => task.abort(),
                Io::Open { reader, .. } => reader.abort(),
            }
        }
        // Writers end when their queue closes; give them a moment to flush.
        drop(ios);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(q) = quic {
            q.close(0u32.into(), b"shutdown");
        }
    }
}

impl Inner {
    /// Queues `data` for connection `id`'s writer (or sends it as a QUIC datagram). The first
    /// datagram of an established session (a sealed one) marks the connection authenticated.
    fn write(&mut self, id: ConnId, data: &[u8]) {
        let Some(Io::Open {
            tx,
            quic,
            authenticated,
            ..
        }) = self.io.get(&id)
        else {
            self.queue_dropped += 1;
            return;
        };
        if data.first() == Some(&crate::wire::TYPE_TRANSPORT)
            && !authenticated.load(Ordering::Relaxed)
            && self.core.handle_authenticated(id)
        {
            authenticated.store(true, Ordering::Relaxed);
        }
        if let Some(q) = quic
            && matches!(
                data.first(),
                Some(&crate::wire::TYPE_TRANSPORT | &crate::wire::TYPE_DIRECT)
            )
            && q.max_datagram_size().is_some_and(|m| data.len() <= m)
        {
            if let Err(e) = q.send_datagram(Bytes::copy_from_slice(data)) {
                tracing::debug!(id = id.0, "QUIC datagram: {e}");
                self.queue_dropped += 1;
            }
            return;
        }
        if tx.try_send(data.to_vec()).is_err() {
            self.queue_dropped += 1;
        }
    }

    /// Starts the reader and the writer of connection `id`.
    fn start(&mut self, id: ConnId, t: Transport, events: &mpsc::Sender<StreamEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let authenticated = Arc::new(AtomicBool::new(false));
        let io = match t {
            Transport::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                tokio::spawn(write_frames(w, rx, id, events.clone()));
                let reader = tokio::spawn(read_tcp(r, id, events.clone(), authenticated.clone()));
                Io::Open {
                    tx,
                    reader: reader.abort_handle(),
                    quic: None,
                    authenticated,
                }
            }
            Transport::Quic {
                conn, send, recv, ..
            } => {
                tokio::spawn(write_frames(send, rx, id, events.clone()));
                let reader = tokio::spawn(read_quic(
                    conn.clone(),
                    recv,
                    id,
                    events.clone(),
                    authenticated.clone(),
                ));
                Io::Open {
                    tx,
                    reader: reader.abort_handle(),
                    quic: Some(conn),
                    authenticated,
                }
            }
        };
        self.io.insert(id, io);
    }
}

impl Io {
    /// Stops it: a dial or accept is abandoned; a connection's writer writes what is queued
    /// and ends, its reader stops, a QUIC connection is closed.
    fn close(self) {
        match self {
            Io::Opening(task) => task.abort(),
            Io::Open {
                tx, reader, quic, ..
            } => {
                drop(tx);
                reader.abort();
                if let Some(q) = quic {
                    q.close(2u32.into(), b"closed");
                }
            }
        }
    }
}
