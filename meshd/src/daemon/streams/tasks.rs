//! The tasks of the connections: listeners, dials, QUIC accepts, and each connection's reader
//! and writer. They only move bytes and report to the loop through the event channel; they
//! decide nothing (the loop's [`crate::conns`] core does).

use super::reader::read_frames;
use super::{QUIC_PREAMBLE, SERVER_NAME, StreamEvent, Transport, WRITE_BATCH, WRITE_STALL};
use crate::conns::{CONNECT_TIMEOUT, ConnId, IDLE};
use crate::protect::{Protect, SocketKind};
use crate::quic_tls;
use crate::uri::{Endpoint, Scheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// A QUIC endpoint for dialing only.
pub(super) fn quic_client(protect: &Protect) -> anyhow::Result<quinn::Endpoint> {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    quic_endpoint(v6, None, protect).or_else(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return Err(e.into());
        }
        Ok(quic_endpoint(v4, None, protect)?)
    })
}

/// A QUIC endpoint on a socket of ours (protected by the app, where it asks for that),
/// bound to `addr`: dual-stack when `addr` is IPv6.
pub(super) fn quic_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    protect: &Protect,
) -> std::io::Result<quinn::Endpoint> {
    let s = quic_socket(addr, protect)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, s, runtime)
}

/// A UDP socket for a QUIC endpoint, protected, then bound to `addr`.
pub(super) fn quic_socket(
    addr: SocketAddr,
    protect: &Protect,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    protect.socket(&s, SocketKind::Quic, format_args!("quic://{addr}"))?;
    if addr.is_ipv6() {
        // Best effort, as quinn's own client endpoint: without it, IPv6 peers only.
        let _ = s.set_only_v6(false);
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

pub(super) fn tcp_listener(
    addr: SocketAddr,
    protect: &Protect,
) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    protect.socket(&s, SocketKind::TcpListener, format_args!("tcp://{addr}"))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// Hands every accepted TCP connection to the loop, which keeps it or closes it.
pub(super) async fn accept_tcp(
    l: tokio::net::TcpListener,
    events: mpsc::Sender<StreamEvent>,
    protect: Protect,
) {
    loop {
        match l.accept().await {
            Ok((s, from)) => {
                let ep = Endpoint::new(Scheme::Tcp, crate::udp::canonical(from));
                if protect.socket(&s, SocketKind::TcpAccepted, ep).is_err() {
                    // Refused, with protection required: closed unused (logged).
                    continue;
                }
                if events.send(StreamEvent::AcceptedTcp(ep, s)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Hands every incoming QUIC connection to the loop, which accepts it or refuses it.
pub(super) async fn accept_quic(e: quinn::Endpoint, events: mpsc::Sender<StreamEvent>) {
    while let Some(incoming) = e.accept().await {
        let ep = Endpoint::new(
            Scheme::Quic,
            crate::udp::canonical(incoming.remote_address()),
        );
        if events
            .send(StreamEvent::IncomingQuic(ep, Box::new(incoming)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sets up an accepted QUIC connection: TLS, its stream, the preamble, all within
/// [`CONNECT_TIMEOUT`] (the core closes it then too).
pub(super) async fn accept_quic_conn(
    incoming: quinn::Incoming,
    id: ConnId,
    events: mpsc::Sender<StreamEvent>,
) {
    let attempt = async {
        let conn = incoming.await.map_err(|e| format!("QUIC handshake: {e}"))?;
        let Ok((send, mut recv)) = conn.accept_bi().await else {
            conn.close(1u32.into(), b"no stream");
            return Err("QUIC: no stream".to_string());
        };
        let mut pre = [0u8; 4];
        if !matches!(recv.read_exact(&mut pre).await, Ok(())) || &pre != QUIC_PREAMBLE {
            conn.close(1u32.into(), b"bad preamble");
            return Err("QUIC: bad preamble".to_string());
        }
        quic_transport(conn, send, recv)
    };
    let attempt = async {
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err("QUIC: not set up in time".to_string()))
    };
    let ev = match attempt.await {
        Ok(t) => StreamEvent::Up(id, Box::new(t)),
        Err(why) => {
            tracing::debug!(id = id.0, "inbound {why}");
            StreamEvent::Failed(id, why)
        }
    };
    let _ = events.send(ev).await;
}

pub(super) async fn dial_tcp(
    to: Endpoint,
    id: ConnId,
    events: mpsc::Sender<StreamEvent>,
    protect: Protect,
) {
    let connect = async {
        let s = match to.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        protect.socket(&s, SocketKind::TcpDial, to)?;
        s.connect(to.addr).await
    };
    let ev = match connect.await {
        Ok(s) => StreamEvent::Up(id, Box::new(Transport::Tcp(s))),
        Err(e) => {
            tracing::debug!(%to, "TCP connect: {e}");
            StreamEvent::Failed(id, format!("TCP connect: {e}"))
        }
    };
    let _ = events.send(ev).await;
}

pub(super) async fn dial_quic(
    e: quinn::Endpoint,
    cfg: quinn::ClientConfig,
    to: Endpoint,
    id: ConnId,
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
        quic_transport(conn, send, recv)
    };
    let ev = match attempt.await {
        Ok(t) => StreamEvent::Up(id, Box::new(t)),
        Err(e) => {
            tracing::debug!(%to, "QUIC connect: {e}");
            StreamEvent::Failed(id, format!("QUIC connect: {e}"))
        }
    };
    let _ = events.send(ev).await;
}

/// A QUIC connection set up, with the key its TLS authenticated.
fn quic_transport(
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Result<Transport, String> {
    let Some(key) = quic_tls::peer_key(&conn) else {
        conn.close(1u32.into(), b"no key");
        return Err("QUIC: the peer presented no usable key".to_string());
    };
    Ok(Transport::Quic {
        conn,
        send,
        recv,
        key,
    })
}

/// Writes queued frames, length-prefixed, coalescing what is queued into one write; reports
/// the connection down if a write fails or stalls.
pub(super) async fn write_frames(
    mut w: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    id: ConnId,
    events: mpsc::Sender<StreamEvent>,
) {
    // Grows with what is written: a stranger's connection, answered with a handshake message
    // or two, holds a few hundred bytes, not a batch's worth.
    let mut buf = Vec::new();
    while let Some(f) = rx.recv().await {
        buf.clear();
        push_frame(&mut buf, &f);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => push_frame(&mut buf, &f),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(WRITE_STALL, w.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(id = id.0, "connection write: {e}");
                let _ = events.send(StreamEvent::Down(id)).await;
                return;
            }
            Err(_) => {
                tracing::debug!(id = id.0, "connection write stalled");
                let _ = events.send(StreamEvent::Down(id)).await;
                return;
            }
        }
    }
    let _ = tokio::time::timeout(WRITE_STALL, w.shutdown()).await;
}

/// Appends one frame (the core never hands over one longer than a 2-byte length).
fn push_frame(buf: &mut Vec<u8>, f: &[u8]) {
    let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&f[..usize::from(len)]);
}

/// Reads a TCP connection until it ends or a read deadline passes (nothing for [`IDLE`], a
/// frame not complete within [`crate::conns::FRAME_TIMEOUT`]), then reports it down.
pub(super) async fn read_tcp(
    r: impl AsyncRead + Unpin,
    id: ConnId,
    events: mpsc::Sender<StreamEvent>,
    authenticated: Arc<AtomicBool>,
) {
    let end = read_frames(r, id, &events, &authenticated, Some(IDLE)).await;
    tracing::debug!(id = id.0, "TCP connection read: {end}");
    let _ = events.send(StreamEvent::Down(id)).await;
}

/// Reads a QUIC connection's stream and datagrams until either ends, then closes it and
/// reports it down. The stream may be quiet while datagrams flow: the wait for a frame is
/// bounded by the core's idle and authentication deadlines (and quinn's idle timeout), a
/// frame's body by [`crate::conns::FRAME_TIMEOUT`].
pub(super) async fn read_quic(
    conn: quinn::Connection,
    recv: quinn::RecvStream,
    id: ConnId,
    events: mpsc::Sender<StreamEvent>,
    authenticated: Arc<AtomicBool>,
) {
    let datagrams = async {
        while let Ok(d) = conn.read_datagram().await {
            if events
                .send(StreamEvent::Frame(id, d.to_vec()))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = datagrams => {}
        end = read_frames(recv, id, &events, &authenticated, None) => {
            tracing::debug!(id = id.0, "QUIC stream read: {end}");
        }
    }
    conn.close(0u32.into(), b"stream ended");
    let _ = events.send(StreamEvent::Down(id)).await;
}
