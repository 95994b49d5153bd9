//! The per-packet paths: decrypting a transport message into a frame for the layer above, and
//! encrypting a frame for a peer. Both write into buffers the caller owns and allocate nothing.
//!
//! A frame is `kind (1) | body`: [`wire::frame::ROUTING`] carries a routing message,
//! [`wire::frame::CLOSE`] says the peer is shutting the link down, and an empty plaintext is a
//! keepalive.

use super::{DropReason, LinkId, Links, Recv, Send, Timer};
use crate::session::SessionError;
use crate::uri::Endpoint;
use crate::wire;
use std::time::Instant;

/// Where a transport message's plaintext goes.
pub(super) enum Text<'a> {
    /// Decrypted from `ciphertext` into `out`.
    Into {
        ciphertext: &'a [u8],
        out: &'a mut [u8],
    },
    /// Decrypted where it is (ciphertext and tag): the plaintext starts where they did.
    InPlace(&'a mut [u8]),
}

impl Links {
    /// Handles a datagram like [`Links::handle_datagram`], but a transport message is
    /// decrypted where it lies: the frame of a [`Recv::Frame`] is at
    /// `datagram[wire::TRANSPORT_HEADER_LEN..]`. A node forwarding packets copies nothing
    /// this way before it seals the frame again for the next link.
    pub fn handle_datagram_in_place(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &mut [u8],
    ) -> Recv {
        let Ok(wire::Message::Transport {
            receiver, counter, ..
        }) = wire::parse(datagram)
        else {
            return self.handle_datagram(now, from, datagram, &mut []);
        };
        self.counters.rx_datagrams += 1;
        let wire_len = datagram.len();
        let text = Text::InPlace(&mut datagram[wire::TRANSPORT_HEADER_LEN..]);
        let r = self.handle_transport(now, from, receiver, counter, text, wire_len);
        self.transport_handled(r, now, from, receiver)
    }

    /// Bookkeeping after a transport message: STALE for an unknown session, drops counted.
    pub(super) fn transport_handled(
        &mut self,
        r: Recv,
        now: Instant,
        from: Endpoint,
        receiver: u32,
    ) -> Recv {
        if r == Recv::Dropped(DropReason::UnknownSession) {
            self.send_stale(now, from, receiver);
        }
        if let Recv::Dropped(reason) = r {
            self.counters.dropped.add(reason);
        }
        r
    }

    pub(super) fn handle_transport(
        &mut self,
        now: Instant,
        from: Endpoint,
        receiver: u32,
        counter: u64,
        text: Text<'_>,
        wire_len: usize,
    ) -> Recv {
        let Some(key) = self.sessions.get(&receiver).copied() else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let Some(session) = peer.session_mut(receiver) else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        let (r, out) = match text {
            Text::Into { ciphertext, out } => (session.decrypt(counter, ciphertext, out), out),
            Text::InPlace(buf) => (session.decrypt_in_place(counter, buf), buf),
        };
        let n = match r {
            Ok(n) => n,
            Err(SessionError::Replay) => return Recv::Dropped(DropReason::Replay),
            Err(_) => return Recv::Dropped(DropReason::Decrypt),
        };
        let first = !session.confirmed;
        session.confirmed = true;
        peer.last_rx = now;
        peer.first_unanswered_tx = None;
        peer.counters.rx_bytes += wire_len as u64;
        if first && (n == 0 || out[0] != wire::frame::REFUSED) {
            // The peer answered on the new session: the link works, the back-off starts over.
            for d in self.dialers.iter_mut().filter(|d| d.linked == Some(key)) {
                d.failures = 0;
                d.last_error = None;
            }
        }
        self.path_heard(&key, from, now);
        if n > 0 && out[0] == wire::frame::ROUTING {
            self.follow_data_path(&key, from, now);
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return Recv::Dropped(DropReason::UnknownSession);
        };
        if n == 0 {
            return Recv::Consumed; // keepalive
        }
        match out[0] {
            wire::frame::ROUTING => {
                peer.owed_answer.get_or_insert(now);
                // A passive keepalive may now be due before what is filed (not with the
                // default intervals: then this is one comparison).
                let passive = now + super::peer::PASSIVE_KEEPALIVE;
                if peer.timer.is_none_or(|t| t > passive) {
                    self.timers
                        .lower(Timer::Peer(key), &mut peer.timer, passive);
                }
                peer.counters.rx_packets += 1;
                Recv::Frame {
                    link: peer.link,
                    len: n,
                }
            }
            wire::frame::CLOSE => {
                self.remove_link(&key, "the peer closed the link");
                self.relink_dialers(&key, now);
                Recv::Consumed
            }
            wire::frame::REFUSED => {
                let why = "the peer refused the link (its circle policy, or a key it pinned for \
                           this address, does not allow this node)";
                self.remove_link(&key, why);
                self.unconfirmed_link_failed(&key, why, now);
                Recv::Consumed
            }
            wire::frame::PROBE | wire::frame::PROBE_REPLY => {
                self.handle_probe(&key, from, &out[..n], now);
                Recv::Consumed
            }
            wire::frame::MOVED => {
                self.peer_moved(&key, from, now);
                Recv::Consumed
            }
            // For the node (NAT traversal), like a routing frame.
            wire::frame::OBSERVED => Recv::Frame {
                link: peer.link,
                len: n,
            },
            _ => Recv::Dropped(DropReason::BadFrame),
        }
    }

    /// Encrypts one frame (`kind | body`) for the peer on `link`; the datagram is written to
    /// `out`, which needs `frame.len() + wire::TRANSPORT_OVERHEAD` bytes.
    pub fn encapsulate(
        &mut self,
        now: Instant,
        link: LinkId,
        frame: &[u8],
        out: &mut [u8],
    ) -> Send {
        self.seal_for(now, link, |s| s.encrypt(frame, out))
    }

    /// Seals again, where it lies, a frame this node decrypted in place
    /// ([`Links::handle_datagram_in_place`]) for the peer on `link`: the frame of `len` bytes
    /// is at `datagram[wire::TRANSPORT_HEADER_LEN..]`, and `datagram` holds the header before
    /// it and the tag after it. A transit node forwards this way with no copy of the payload.
    pub fn encapsulate_in_place(
        &mut self,
        now: Instant,
        link: LinkId,
        datagram: &mut [u8],
        len: usize,
    ) -> Send {
        self.seal_for(now, link, |s| s.encrypt_in_place(datagram, len))
    }

    /// Seals with `seal` on the sending session of the peer on `link`, and counts it.
    fn seal_for(
        &mut self,
        now: Instant,
        link: LinkId,
        seal: impl FnOnce(&mut crate::session::Session) -> Result<usize, SessionError>,
    ) -> Send {
        let Some(key) = self.links.get(&link).copied() else {
            return Send::Dropped(DropReason::NoLink);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return Send::Dropped(DropReason::NoLink);
        };
        let to = peer.endpoint;
        let Some(session) = peer.send_session() else {
            return Send::Dropped(DropReason::NoLink);
        };
        match seal(session) {
            Ok(n) => {
                self.counters.tx_datagrams += 1;
                peer.sent(&key, now, n, &self.cfg, &mut self.timers);
                Send::Transmit { to, len: n }
            }
            Err(_) => {
                self.counters.dropped.add(DropReason::NoLink);
                Send::Dropped(DropReason::NoLink)
            }
        }
    }

    /// Queues a keepalive (an empty transport message) to the peer with this key.
    pub(crate) fn send_keepalive(&mut self, key: &crate::identity::PublicKey, now: Instant) {
        self.send_control_frame(key, &[], now);
    }

    /// Queues a frame as a control datagram (keepalives, close) on the path in use.
    pub(crate) fn send_control_frame(
        &mut self,
        key: &crate::identity::PublicKey,
        frame: &[u8],
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        // Even if this fails (an exhausted session), the keepalive is not due again at once.
        peer.last_tx = now;
        peer.owed_answer = None;
        let to = peer.endpoint;
        self.send_control_frame_to(key, to, frame);
    }

    /// Queues a frame to the peer with this key over a given path (probes).
    pub(crate) fn send_control_frame_to(
        &mut self,
        key: &crate::identity::PublicKey,
        to: crate::uri::Endpoint,
        frame: &[u8],
    ) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some(session) = peer.send_session() else {
            return;
        };
        let mut data = vec![0u8; wire::TRANSPORT_OVERHEAD + frame.len()];
        if let Ok(n) = session.encrypt(frame, &mut data) {
            data.truncate(n);
            peer.counters.tx_bytes += n as u64;
            self.queue(to, data);
        }
    }

    /// Tells every peer that this node is going away (so they need not wait for a timeout) and
    /// drops every link.
    pub fn close_all(&mut self, now: Instant) {
        let keys: Vec<_> = self.peers.keys().copied().collect();
        for k in keys {
            self.send_control_frame(&k, &[wire::frame::CLOSE], now);
            self.remove_link(&k, "this node is shutting down");
        }
    }
}
