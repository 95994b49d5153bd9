//! UDP sockets: created with socket2, driven in batches with quinn-udp (recvmmsg, GRO on
//! receive, GSO on send), awaited with tokio.

use anyhow::Context;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use tokio::io::Interest;

/// Kernel socket buffer size asked for (forced past `rmem_max` when running as root).
const SOCKET_BUFFER: usize = 8 << 20;

/// One bound UDP socket.
pub struct UdpSock {
    sock: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl UdpSock {
    /// Binds `addr`. An unspecified IPv6 address (`[::]`) also receives IPv4.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<UdpSock> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .context("cannot create a UDP socket")?;
        if addr.is_ipv6() {
            s.set_only_v6(false)
                .context("cannot make the UDP socket dual-stack")?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into()).with_context(|| {
            format!("cannot listen on udp://{addr} (is another program using this port?)")
        })?;
        // Bigger buffers absorb bursts; forcing needs CAP_NET_ADMIN, so fall back quietly.
        for force in [
            nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::RcvBufForce,
                &SOCKET_BUFFER,
            ),
            nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::SndBufForce,
                &SOCKET_BUFFER,
            ),
        ] {
            if force.is_err() {
                let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
                let _ = s.set_send_buffer_size(SOCKET_BUFFER);
            }
        }
        let std_sock: std::net::UdpSocket = s.into();
        let state = UdpSocketState::new(UdpSockRef::from(&std_sock))
            .context("cannot set up UDP socket options")?;
        let local = std_sock.local_addr()?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        Ok(UdpSock { sock, state, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// True if this socket can send to `to`.
    pub fn can_reach(&self, to: &SocketAddr) -> bool {
        match (self.local, to) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => true,
            (SocketAddr::V6(l), _) => to.is_ipv6() || l.ip().is_unspecified(),
            _ => false,
        }
    }

    /// Most datagrams one GSO send may carry.
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Waits until the socket may be readable.
    pub async fn readable(&self) -> io::Result<()> {
        self.sock.readable().await
    }

    /// Polls read readiness (used to wait on several sockets at once).
    pub fn poll_recv_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.sock.poll_recv_ready(cx)
    }

    /// Receives a batch without waiting; `Err(WouldBlock)` when there is nothing.
    pub fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.sock.try_io(Interest::READABLE, || {
            self.state.recv(UdpSockRef::from(&self.sock), bufs, meta)
        })
    }

    /// Sends `contents` to `to`, as `contents.len() / segment` datagrams of `segment` bytes (the
    /// last may be shorter) when `segment` is given. Waits while the socket buffer is full.
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let destination = self.map_destination(to);
        let t = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        self.sock
            .async_io(Interest::WRITABLE, || {
                self.state.try_send(UdpSockRef::from(&self.sock), &t)
            })
            .await
    }

    fn map_destination(&self, to: SocketAddr) -> SocketAddr {
        match (self.local, to) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        }
    }
}

/// The address a datagram came from, with IPv4-mapped IPv6 turned back into IPv4 so that it
/// compares equal to the configured `udp://192.0.2.1:7820`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        // A link-local peer keeps its interface (the scope); replies need it.
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => SocketAddr::V6(
            std::net::SocketAddrV6::new(*a.ip(), a.port(), 0, a.scope_id()),
        ),
        a => SocketAddr::new(a.ip().to_canonical(), a.port()),
    }
}
