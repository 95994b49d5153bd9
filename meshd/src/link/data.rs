//! The per-packet paths: decrypting a transport message into a packet for the TUN device, and
//! encrypting a packet from the TUN device for its peer. Both write into buffers the caller
//! owns and allocate nothing.

use super::{DropReason, FRAME_HEADROOM, Links, Recv, Send};
use crate::identity::PublicKey;
use crate::packet::Ipv6Header;
use crate::session::SessionError;
use crate::wire;
use routing::address;
use std::net::SocketAddr;
use std::time::Instant;

impl Links {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        receiver: u32,
        counter: u64,
        ciphertext: &[u8],
        wire_len: usize,
        out: &mut [u8],
    ) -> Recv {
        let Some(key) = self.sessions.get(&receiver).copied() else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let (me, my_subnet) = (self.address, self.subnet);
        let Some(peer) = self.peers.get_mut(&key) else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let Some(session) = peer.session_mut(receiver) else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let n = match session.decrypt(counter, ciphertext, out) {
            Ok(n) => n,
            Err(SessionError::Replay) => return Recv::Dropped(DropReason::Replay),
            Err(_) => return Recv::Dropped(DropReason::Decrypt),
        };
        session.confirmed = true;
        peer.last_rx = now;
        peer.first_unanswered_tx = None;
        peer.counters.rx_bytes += wire_len as u64;
        if peer.endpoint != from {
            tracing::info!(peer = %key.short(), old = %peer.endpoint, new = %from, "peer moved");
            peer.endpoint = from;
        }
        if n == 0 {
            return Recv::Consumed; // keepalive
        }
        if out[0] != wire::frame::IPV6 {
            return Recv::Dropped(DropReason::BadFrame);
        }
        let Ok(h) = Ipv6Header::parse(&out[1..n]) else {
            return Recv::Dropped(DropReason::BadFrame);
        };
        // The peer's addresses are derived once per link, not hashed per packet.
        if !address::owner_id(&h.src).is_some_and(|o| o == peer.address || o == peer.subnet) {
            tracing::debug!(peer = %key.short(), src = %h.src, "spoofed source address");
            return Recv::Dropped(DropReason::Spoofed);
        }
        if !address::owner_id(&h.dst).is_some_and(|o| o == me || o == my_subnet) {
            return Recv::Dropped(DropReason::NotForUs);
        }
        peer.last_data_rx = Some(now);
        peer.counters.rx_packets += 1;
        Recv::Deliver { len: h.total_len }
    }

    /// Encrypts one IPv6 packet from the TUN device. `buf` holds [`FRAME_HEADROOM`] spare bytes
    /// followed by the packet; the datagram is written to `out`, which needs
    /// `buf.len() + wire::TRANSPORT_OVERHEAD` bytes.
    pub fn encapsulate(&mut self, now: Instant, buf: &mut [u8], out: &mut [u8]) -> Send {
        let r = self.encapsulate_inner(now, buf, out);
        if let Send::Dropped(reason) = r {
            self.counters.dropped.add(reason);
        }
        r
    }

    fn encapsulate_inner(&mut self, now: Instant, buf: &mut [u8], out: &mut [u8]) -> Send {
        let Some(packet) = buf.get(FRAME_HEADROOM..) else {
            return Send::Dropped(DropReason::BadLocalPacket);
        };
        let Ok(h) = Ipv6Header::parse(packet) else {
            return Send::Dropped(DropReason::BadLocalPacket);
        };
        if h.dst.is_multicast() {
            return Send::Dropped(DropReason::Multicast);
        }
        let Some(key) = address::owner_id(&h.dst)
            .and_then(|o| self.routes.get(&o))
            .copied()
        else {
            return Send::Dropped(DropReason::NoRoute);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return Send::Dropped(DropReason::NoRoute);
        };
        let to = peer.endpoint;
        let Some(session) = peer.send_session() else {
            return Send::Dropped(DropReason::NoRoute);
        };
        buf[0] = wire::frame::IPV6;
        let frame = &buf[..FRAME_HEADROOM + h.total_len];
        match session.encrypt(frame, out) {
            Ok(n) => {
                peer.last_tx = now;
                peer.first_unanswered_tx.get_or_insert(now);
                peer.counters.tx_bytes += n as u64;
                peer.counters.tx_packets += 1;
                self.counters.tx_datagrams += 1;
                Send::Transmit { to, len: n }
            }
            Err(_) => Send::Dropped(DropReason::NoRoute),
        }
    }

    /// Queues a keepalive (an empty transport message) to `key`.
    pub(crate) fn send_keepalive(&mut self, key: &PublicKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let to = peer.endpoint;
        // Even if this fails (an exhausted session), the keepalive is not due again at once.
        peer.last_tx = now;
        let Some(session) = peer.send_session() else {
            return;
        };
        let mut data = vec![0u8; wire::TRANSPORT_OVERHEAD];
        if let Ok(n) = session.encrypt(&[], &mut data) {
            data.truncate(n);
            peer.counters.tx_bytes += n as u64;
            self.queue(to, data);
        }
    }
}
