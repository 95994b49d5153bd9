//! UDP sockets: created with socket2, driven in batches with quinn-udp (recvmmsg, GRO on
//! receive, GSO on send), awaited with tokio.
//!
//! **Handshake inits get a socket of their own** where the kernel can steer by content (Linux):
//! two sockets share the listen address (`SO_REUSEPORT`), and a classic BPF program attached
//! to the group sends every datagram whose first byte is a handshake init to the second one
//! ([`UdpSock::bind_steered`]). A flood of spoofed inits then fills only that socket's small
//! queue, where the kernel drops the excess for free, and the daemon reads it with a small
//! budget beside the data socket ([`UdpSock::handshakes`]), so data from linked peers keeps
//! its own queue and its share of the loop.

use anyhow::Context;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use tokio::io::Interest;

/// Kernel socket buffer size asked for (forced past `rmem_max` when running as root).
const SOCKET_BUFFER: usize = 8 << 20;

/// Receive buffer of a handshake socket: a few hundred inits; a flood beyond is dropped by
/// the kernel.
const HANDSHAKE_BUFFER: usize = 64 << 10;

/// One bound UDP socket.
pub struct UdpSock {
    sock: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    handshakes: bool,
}

/// A new UDP socket for `addr`, not yet bound.
fn socket(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<Socket> {
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
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    Ok(s)
}

fn bind(s: &Socket, addr: SocketAddr) -> anyhow::Result<()> {
    s.bind(&addr.into()).with_context(|| {
        format!("cannot listen on udp://{addr} (is another program using this port?)")
    })
}

/// Sets both buffers to `size`; forcing needs CAP_NET_ADMIN, so falls back quietly.
fn buffers(s: &Socket, size: usize) {
    for force in [
        nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::RcvBufForce, &size),
        nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::SndBufForce, &size),
    ] {
        if force.is_err() {
            let _ = s.set_recv_buffer_size(size);
            let _ = s.set_send_buffer_size(size);
        }
    }
}

/// Sends datagrams whose first byte is a handshake init to the second socket of the
/// `SO_REUSEPORT` group `s` belongs to, everything else to the first. (For UDP the kernel runs
/// the program on the payload; a load past its end returns 0: the data socket.)
#[cfg(target_os = "linux")]
fn steer_inits(s: &Socket) -> anyhow::Result<()> {
    use libc::sock_filter;
    let code = [
        // A = payload[0]
        sock_filter {
            code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // A == INIT ? next : skip one
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: u32::from(crate::wire::TYPE_INIT),
        },
        sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 1,
        },
        sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_ptr().cast_mut(),
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::AttachReusePortCbpf, &prog)
        .context("cannot attach the handshake-steering program")
}

impl UdpSock {
    /// Binds `addr`. An unspecified IPv6 address (`[::]`) also receives IPv4.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<UdpSock> {
        let s = socket(addr, false)?;
        bind(&s, addr)?;
        buffers(&s, SOCKET_BUFFER);
        Self::wrap(s, false)
    }

    /// Binds `addr` for data and, where the kernel can steer by content, a second socket on
    /// the same address for handshake inits (see the module's doc). Falls back to one socket.
    pub fn bind_steered(addr: SocketAddr) -> anyhow::Result<Vec<UdpSock>> {
        // The port must be free: with SO_REUSEPORT a second meshd on it would not fail.
        let probe = socket(addr, false)?;
        bind(&probe, addr)?;
        let addr = match probe.local_addr()?.as_socket() {
            Some(a) => a,
            None => addr,
        };
        drop(probe);
        #[cfg(target_os = "linux")]
        {
            let pair = || -> anyhow::Result<Vec<UdpSock>> {
                let data = socket(addr, true)?;
                bind(&data, addr)?;
                let inits = socket(addr, true)?;
                bind(&inits, addr)?;
                steer_inits(&data)?;
                buffers(&data, SOCKET_BUFFER);
                buffers(&inits, HANDSHAKE_BUFFER);
                Ok(vec![Self::wrap(data, false)?, Self::wrap(inits, true)?])
            };
            match pair() {
                Ok(p) => return Ok(p),
                Err(e) => tracing::debug!(%addr, "one socket for inits and data: {e:#}"),
            }
        }
        Ok(vec![Self::bind(addr)?])
    }

    fn wrap(s: Socket, handshakes: bool) -> anyhow::Result<UdpSock> {
        let std_sock: std::net::UdpSocket = s.into();
        let state = UdpSocketState::new(UdpSockRef::from(&std_sock))
            .context("cannot set up UDP socket options")?;
        let local = std_sock.local_addr()?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        Ok(UdpSock {
            sock,
            state,
            local,
            handshakes,
        })
    }

    /// True for the socket that receives only handshake inits (read with a small budget).
    pub fn handshakes(&self) -> bool {
        self.handshakes
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
