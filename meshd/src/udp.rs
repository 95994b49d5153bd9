//! UDP sockets: created with socket2, driven in batches with quinn-udp (recvmmsg, GRO on
//! receive, GSO on send), awaited with tokio.
//!
//! **Handshake inits get sockets of their own** where the kernel can steer by content (Linux):
//! three sockets share the listen address (`SO_REUSEPORT`), and a classic BPF program attached
//! to the group sends every handshake init to the second one, or to the third if it carries a
//! cookie MAC ([`UdpSock::bind_steered`]). A flood of spoofed inits then fills only a small
//! queue of its own, where the kernel drops the excess for free, and the daemon reads them in
//! batches beside the data socket ([`UdpSock::handshakes`], [`UdpSock::try_recv_inits`]), so
//! data from linked peers keeps its own queue and its share of the loop. An init that comes
//! back with a cookie (its sender proved its address) does not queue behind the flood that
//! made the cookie necessary: spoofers cannot make valid MACs, and the ones they make up cost
//! only a MAC check (`link/handshake.rs`).

use crate::protect::{Protect, SocketKind};
use anyhow::Context;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use tokio::io::Interest;

/// Kernel socket buffer size asked for (forced past `rmem_max` when running as root).
const SOCKET_BUFFER: usize = 8 << 20;

/// Receive buffer of a handshake socket: a few hundred inits (a millisecond of a flood, to
/// ride out the reader's pauses); a flood beyond is dropped by the kernel.
const HANDSHAKE_BUFFER: usize = 2 << 20;

/// Most handshake inits read with one `recvmmsg`.
pub const INIT_BATCH: usize = 32;
/// Room for one datagram on the handshake socket: an init has a fixed length
/// ([`crate::wire::INIT_LEN`]); a longer datagram is cut, and then malformed.
const INIT_SLOT: usize = 256;
const _: () = assert!(INIT_SLOT > crate::wire::INIT_LEN);

/// Buffers for reading handshake inits in batches ([`UdpSock::try_recv_inits`]): no control
/// messages and no coalescing, since an init needs only its source address.
pub struct InitBatch {
    bufs: Vec<[u8; INIT_SLOT]>,
    got: Vec<(SocketAddr, usize)>,
}

impl Default for InitBatch {
    fn default() -> Self {
        InitBatch {
            bufs: vec![[0; INIT_SLOT]; INIT_BATCH],
            got: Vec::with_capacity(INIT_BATCH),
        }
    }
}

impl InitBatch {
    /// The datagrams of the last read and where each came from.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(&self.bufs)
            .map(|(&(from, len), b)| (from, &b[..len]))
    }
}

/// One bound UDP socket.
pub struct UdpSock {
    sock: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    handshakes: bool,
}

/// A new UDP socket for `addr`, not yet bound.
fn socket(addr: SocketAddr, reuse_port: bool, protect: &Protect) -> anyhow::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .context("cannot create a UDP socket")?;
    protect.socket(&s, SocketKind::Udp, format_args!("udp://{addr}"))?;
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

/// Attempts at a port of the kernel's choice ([`UdpSock::bind_steered`]).
const PORT_TRIES: usize = 8;

/// Whether `e` is a bind that failed because the address is in use.
fn in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse)
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

/// Steers by content within the `SO_REUSEPORT` group `s` belongs to: a handshake init that
/// carries a cookie MAC (any non-zero byte in it) goes to the third socket, any other init to
/// the second, everything else to the first. (For UDP the kernel runs the program on the
/// payload; a load past its end returns 0: the data socket.)
#[cfg(target_os = "linux")]
fn steer_inits(s: &Socket) -> anyhow::Result<()> {
    use crate::wire::{COOKIE_LEN, INIT_MAC_AT, TYPE_INIT};
    use libc::{BPF_ABS, BPF_B, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter};
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let words = (COOKIE_LEN / 4) as u8;
    let mut code = vec![
        // A = payload[0]; not an init: the data socket.
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        op(
            BPF_JMP | BPF_JEQ | BPF_K,
            0,
            2 * words + 1,
            u32::from(TYPE_INIT),
        ),
    ];
    // Each word of the cookie MAC: non-zero jumps to "proven", past the words left and the
    // two returns after them.
    for w in 0..words {
        let left = words - 1 - w;
        code.push(op(
            BPF_LD | BPF_W | BPF_ABS,
            0,
            0,
            (INIT_MAC_AT + 4 * w as usize) as u32,
        ));
        code.push(op(BPF_JMP | BPF_JEQ | BPF_K, 0, 2 * left + 2, 0));
    }
    code.extend([
        op(BPF_RET | BPF_K, 0, 0, 1),
        op(BPF_RET | BPF_K, 0, 0, 0),
        op(BPF_RET | BPF_K, 0, 0, 2),
    ]);
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::AttachReusePortCbpf, &prog)
        .context("cannot attach the handshake-steering program")
}

impl UdpSock {
    /// Binds `addr`. An unspecified IPv6 address (`[::]`) also receives IPv4.
    pub fn bind(addr: SocketAddr, protect: &Protect) -> anyhow::Result<UdpSock> {
        let s = socket(addr, false, protect)?;
        bind(&s, addr)?;
        buffers(&s, SOCKET_BUFFER);
        Self::wrap(s, false)
    }

    /// Binds `addr` for data and, where the kernel can steer by content, a second socket on
    /// the same address for handshake inits (see the module's doc). Falls back to one socket.
    pub fn bind_steered(addr: SocketAddr, protect: &Protect) -> anyhow::Result<Vec<UdpSock>> {
        // Port 0: the port the probe found free is bound again a moment later, and another
        // program may take it in between (a test suite's parallel nodes did); a fresh port is
        // then as good, so try again. A port asked for by number is not retried.
        let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            match Self::bind_steered_once(addr, protect) {
                Ok(socks) => return Ok(socks),
                Err(e) if addr.port() == 0 && in_use(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot listen on udp://{addr}")))
    }

    fn bind_steered_once(addr: SocketAddr, protect: &Protect) -> anyhow::Result<Vec<UdpSock>> {
        // The port must be free: with SO_REUSEPORT a second meshd on it would not fail.
        let probe = socket(addr, false, protect)?;
        bind(&probe, addr)?;
        let addr = match probe.local_addr()?.as_socket() {
            Some(a) => a,
            None => addr,
        };
        drop(probe);
        #[cfg(target_os = "linux")]
        {
            let group = || -> anyhow::Result<Vec<UdpSock>> {
                // The order of binding is the order in the group, which the program's
                // answers index.
                let data = socket(addr, true, protect)?;
                bind(&data, addr)?;
                let inits = socket(addr, true, protect)?;
                bind(&inits, addr)?;
                let proven = socket(addr, true, protect)?;
                bind(&proven, addr)?;
                steer_inits(&data)?;
                buffers(&data, SOCKET_BUFFER);
                buffers(&inits, HANDSHAKE_BUFFER);
                buffers(&proven, HANDSHAKE_BUFFER);
                Ok(vec![
                    Self::wrap(data, false)?,
                    Self::wrap(inits, true)?,
                    Self::wrap(proven, true)?,
                ])
            };
            match group() {
                Ok(p) => return Ok(p),
                Err(e) => tracing::debug!(%addr, "one socket for inits and data: {e:#}"),
            }
        }
        Ok(vec![Self::bind(addr, protect)?])
    }

    fn wrap(s: Socket, handshakes: bool) -> anyhow::Result<UdpSock> {
        let std_sock: std::net::UdpSocket = s.into();
        let state = UdpSocketState::new(UdpSockRef::from(&std_sock))
            .context("cannot set up UDP socket options")?;
        #[cfg(target_os = "linux")]
        if handshakes {
            // Inits are read without control messages: nothing may be coalesced.
            nix::sys::socket::setsockopt(
                &std_sock,
                nix::sys::socket::sockopt::UdpGroSegment,
                &false,
            )
            .context("cannot turn off coalescing on the handshake socket")?;
        }
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

    /// Reads up to `max` (at most [`INIT_BATCH`]) datagrams into `batch` with one
    /// `recvmmsg`, without waiting; `Err(WouldBlock)` when there is nothing. For the handshake
    /// socket, whose datagrams are small and many under a flood: no control messages to fill,
    /// and the kernel's per-datagram cost is a third of a [`UdpSock::try_recv`].
    #[cfg(target_os = "linux")]
    pub fn try_recv_inits(&self, batch: &mut InitBatch, max: usize) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
        use std::os::fd::AsRawFd;
        let n = max.clamp(1, INIT_BATCH);
        batch.got.clear();
        let got = &mut batch.got;
        let bufs = &mut batch.bufs;
        self.sock.try_io(Interest::READABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs[..n]
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let results = recvmmsg(
                self.sock.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for r in results {
                let from = r.address.as_ref().and_then(socket_addr);
                // A cut datagram was longer than the slot, so longer than any init: handed
                // on as the slot's bytes, it is counted as malformed like any bad init.
                let len = if r.flags.contains(MsgFlags::MSG_TRUNC) {
                    INIT_SLOT
                } else {
                    r.bytes.min(INIT_SLOT)
                };
                got.push((from.unwrap_or(self.local), len));
            }
            Ok(got.len())
        })
    }

    /// Sends each datagram to its address, as many per `sendmmsg` as the kernel takes, waiting
    /// while the socket buffer is full. A datagram the kernel refuses (no route, say) is
    /// skipped and logged; the others still go.
    #[cfg(target_os = "linux")]
    pub async fn send_many(&self, datagrams: &[(SocketAddr, &[u8])]) {
        let mut at = 0;
        while at < datagrams.len() {
            let rest = &datagrams[at..];
            match self
                .sock
                .async_io(Interest::WRITABLE, || self.try_send_many(rest))
                .await
            {
                Ok(k) => at += k.max(1),
                Err(e) => {
                    tracing::debug!(to = %rest[0].0, "UDP send: {e}");
                    at += 1;
                }
            }
        }
    }

    /// Sends each datagram to its address (one `sendmsg` each where there is no `sendmmsg`).
    #[cfg(not(target_os = "linux"))]
    pub async fn send_many(&self, datagrams: &[(SocketAddr, &[u8])]) {
        for (to, d) in datagrams {
            if let Err(e) = self.send(*to, d, None).await {
                tracing::debug!(%to, "UDP send: {e}");
            }
        }
    }

    /// Reads up to `max` datagrams into `batch`, one `recvfrom` each.
    #[cfg(not(target_os = "linux"))]
    pub fn try_recv_inits(&self, batch: &mut InitBatch, max: usize) -> io::Result<usize> {
        batch.got.clear();
        for b in batch.bufs.iter_mut().take(max.clamp(1, INIT_BATCH)) {
            match self.sock.try_recv_from(&mut b[..]) {
                Ok((len, from)) => batch.got.push((from, len)),
                Err(e) if batch.got.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(batch.got.len())
    }

    #[cfg(target_os = "linux")]
    fn try_send_many(&self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
        use std::os::fd::AsRawFd;
        let n = datagrams.len().min(INIT_BATCH * 2);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
        let iovs: Vec<[io::IoSlice<'_>; 1]> = datagrams[..n]
            .iter()
            .map(|(_, d)| [io::IoSlice::new(d)])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = datagrams[..n]
            .iter()
            .map(|(to, _)| Some(SockaddrStorage::from(self.map_destination(*to))))
            .collect();
        let none: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(
            self.sock.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs,
            none,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        Ok(sent.count())
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

/// A socket address nix decoded, as the standard library's.
#[cfg(target_os = "linux")]
fn socket_addr(s: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::wire;
    use std::time::Duration;

    /// Reads what `sock` (a handshake socket) has within a second: the sender index's first
    /// byte (or the length, for `lens`) of each.
    async fn inits_on(sock: &UdpSock, want: usize, lens: bool) -> Vec<usize> {
        let mut batch = InitBatch::default();
        let mut got = Vec::new();
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while got.len() < want {
            if tokio::time::timeout_at(end, sock.readable()).await.is_err() {
                break;
            }
            if sock.try_recv_inits(&mut batch, INIT_BATCH).is_ok() {
                got.extend(batch.datagrams().map(
                    |(_, d)| {
                        if lens { d.len() } else { usize::from(d[4]) }
                    },
                ));
            }
        }
        got
    }

    #[tokio::test]
    async fn the_kernel_steers_inits_and_inits_with_a_cookie_to_sockets_of_their_own() {
        let socks = UdpSock::bind_steered("127.0.0.1:0".parse().expect("addr"), &Protect::none())
            .expect("bind");
        assert_eq!(socks.len(), 3, "data, inits, inits with a cookie");
        assert!(!socks[0].handshakes() && socks[1].handshakes() && socks[2].handshakes());
        let to = socks[0].local_addr();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        // Inits (told apart by their sender index's first byte) and one transport message.
        for (tag, mac) in [(1u8, false), (2, true), (3, false), (4, true)] {
            let mut init = vec![0u8; wire::INIT_LEN];
            wire::emit_init_header(&mut init, wire::Suite::ChaChaPoly, u32::from(tag));
            init[4] = tag;
            if mac {
                init[wire::INIT_MAC_AT + wire::COOKIE_LEN - 1] = 1;
            }
            tx.send_to(&init, to).expect("send");
        }
        tx.send_to(&[wire::TYPE_TRANSPORT, 0, 0, 0, 9, 9, 9, 9], to)
            .expect("send");
        assert_eq!(inits_on(&socks[1], 2, false).await, [1, 3]);
        assert_eq!(inits_on(&socks[2], 2, false).await, [2, 4]);
        // The data socket got the transport message only.
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_secs(1), socks[0].sock.recv(&mut buf))
            .await
            .expect("in time")
            .expect("data");
        assert_eq!((got, buf[0]), (8, wire::TYPE_TRANSPORT));
        // A datagram longer than an init on the handshake socket is cut, and then longer
        // than an init still (the link layer counts it as malformed).
        let mut long = vec![0u8; 1000];
        long[0] = wire::TYPE_INIT;
        tx.send_to(&long, to).expect("send");
        let lens = inits_on(&socks[1], 1, true).await;
        assert_eq!(lens, [INIT_SLOT]);
    }
}
