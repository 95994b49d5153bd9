//! Datagrams from the network (direct messages go to [`super::direct`]): link decryption, then the router forwards (re-encrypted for
//! the next link) or delivers; a delivered message is decrypted end to end, its source
//! checked and the firewall consulted before it goes to the TUN device. znet messages go
//! on to [`super::znet`].

use super::{Inbound, Node};
use crate::e2e::{self, Received};
use crate::identity::PublicKey;
use crate::link::{self, LinkId, Recv};
use crate::nat;
use crate::uri::Endpoint;
use crate::wire;
use crate::znet;
use routing::{Handled, PeerId};
use std::time::Instant;

impl Node {
    /// Handles one datagram. `frame` is scratch space at least as long as the datagram (a test
    /// may read it afterwards to see what this node saw after link decryption).
    pub fn inbound(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        frame: &mut [u8],
        tun_out: &mut [u8],
        net_out: &mut [u8],
    ) -> Inbound {
        if datagram.first() == Some(&wire::TYPE_DIRECT) {
            return self.direct_inbound(now, from, datagram, tun_out);
        }
        let Recv::Frame { link, len } = self.links.handle_datagram(now, from, datagram, frame)
        else {
            return Inbound::Done;
        };
        match self.frame_in(now, link, &mut frame[..len], tun_out, false) {
            FrameOut::Done(r) => r,
            FrameOut::Forward(next) => {
                match self.links.encapsulate(now, next, &frame[..len], net_out) {
                    link::Send::Transmit { to, len } => Inbound::Forward { to, len },
                    link::Send::Dropped(_) => Inbound::Done,
                }
            }
        }
    }

    /// Handles one datagram like [`Node::inbound`], decrypting the link layer where the
    /// datagram lies and, for a packet forwarded, sealing it again for the next link where it
    /// lies too ([`Inbound::ForwardInPlace`]): a transit node copies no payload. What the
    /// daemon does.
    pub fn inbound_in_place(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &mut [u8],
        tun_out: &mut [u8],
    ) -> Inbound {
        if datagram.first() == Some(&wire::TYPE_DIRECT) {
            return self.direct_inbound_in_place(now, from, datagram, tun_out);
        }
        let Recv::Frame { link, len } = self.links.handle_datagram_in_place(now, from, datagram)
        else {
            return Inbound::Done;
        };
        let frame = &mut datagram[wire::TRANSPORT_HEADER_LEN..wire::TRANSPORT_HEADER_LEN + len];
        match self.frame_in(now, link, frame, tun_out, true) {
            FrameOut::Done(Inbound::TunAt { at, len }) => Inbound::TunAt {
                at: wire::TRANSPORT_HEADER_LEN + at,
                len,
            },
            FrameOut::Done(r) => r,
            // The header goes where the old one was, the tag where the old one was.
            FrameOut::Forward(next) => {
                match self.links.encapsulate_in_place(now, next, datagram, len) {
                    link::Send::Transmit { to, len } => Inbound::ForwardInPlace { to, len },
                    link::Send::Dropped(_) => Inbound::Done,
                }
            }
        }
    }

    /// A link's decrypted frame: routed on (the caller seals it for the next link), delivered,
    /// or read (NAT reports). `in_place`: a packet for the TUN device is decrypted where it
    /// lies in `frame` ([`Inbound::TunAt`], relative to `frame`), else into `tun_out`.
    fn frame_in(
        &mut self,
        now: Instant,
        link: LinkId,
        frame: &mut [u8],
        tun_out: &mut [u8],
        in_place: bool,
    ) -> FrameOut {
        let len = frame.len();
        if frame.first() != Some(&wire::frame::ROUTING) {
            if frame.first() == Some(&wire::frame::OBSERVED)
                && let Some((addr, _)) = nat::get_addr(&frame[1..len])
                && let Some(reporter) = self.links.key_of(link)
            {
                self.nat.observed(reporter, addr, now);
            }
            return FrameOut::Done(Inbound::Done);
        }
        match self.router.handle(now, PeerId(link.0), &mut frame[1..len]) {
            Handled::Forward(peer) => FrameOut::Forward(LinkId(peer.0)),
            Handled::Deliver { src, body_at } => {
                let src = PublicKey(src);
                FrameOut::Done(self.deliver(now, link, src, body_at, frame, tun_out, in_place))
            }
            Handled::Consumed | Handled::Dropped(_) => FrameOut::Done(Inbound::Done),
        }
    }

    /// A routed message for this node from `src` (its body at `frame[1 + body_at..]`),
    /// come over `link`: a znet's, or the end-to-end layer's (a packet for the TUN device:
    /// decrypted where it lies if `in_place`, else into `tun_out`, which a znet's packet
    /// always goes to).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        now: Instant,
        link: LinkId,
        src: PublicKey,
        body_at: usize,
        frame: &mut [u8],
        tun_out: &mut [u8],
        in_place: bool,
    ) -> Inbound {
        let len = frame.len();
        let body = &frame[1 + body_at..len];
        if body.first() == Some(&znet::ZNET) {
            return self.znet_inbound(now, src, &frame[1..len], body_at, tun_out);
        }
        // Refused before any Diffie-Hellman: the claimed key is checked again against
        // the handshake's proof, so a lie gains nothing.
        if body.first() == Some(&e2e::wire::TYPE_INIT) && !self.firewall.session_allowed(&src) {
            self.firewall.counters_mut().sessions_refused += 1;
            return Inbound::Done;
        }
        // In place, the routing header before the body stays as it was (the source's way
        // back is confirmed from it below).
        let (r, plain) = if in_place {
            let (r, pt) =
                self.e2e
                    .handle_via_in_place(now, Some(link.0), &src, &mut frame[1 + body_at..len]);
            (r, 1 + body_at + pt)
        } else {
            (
                self.e2e.handle_via(now, Some(link.0), &src, body, tun_out),
                0,
            )
        };
        match r {
            Received::Deliver { len: n, from } => {
                let packet = if in_place {
                    &frame[plain..plain + n]
                } else {
                    &tun_out[..n]
                };
                if !self.firewall.check_in(now, &from, packet) {
                    return Inbound::Done;
                }
                if from == src {
                    self.router.confirm_source(now, &frame[1..len]);
                }
                match in_place {
                    true => Inbound::TunAt { at: plain, len: n },
                    false => Inbound::Tun { len: n },
                }
            }
            Received::Control { len: n, from } => {
                if from == src {
                    let msg = match in_place {
                        true => frame[plain..plain + n].to_vec(),
                        false => tun_out[..n].to_vec(),
                    };
                    self.control(now, from, &msg);
                }
                Inbound::Done
            }
            Received::Consumed => {
                // A handshake init proves the key but not that it is fresh (anyone
                // on a path could send it again): its way back is taken only when we
                // know none, never over one we have.
                if !self.router.knows(&src.0) {
                    self.router.confirm_source(now, &frame[1..len]);
                }
                Inbound::Done
            }
            Received::Dropped => Inbound::Done,
        }
    }
}

/// What a link's frame came to: an answer, or a frame to forward on a link (the caller seals
/// it: into its own buffer, or where it lies).
enum FrameOut {
    Done(Inbound),
    Forward(LinkId),
}
