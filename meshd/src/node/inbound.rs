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
        if frame[0] != wire::frame::ROUTING {
            if frame[0] == wire::frame::OBSERVED
                && let Some((addr, _)) = nat::get_addr(&frame[1..len])
                && let Some(reporter) = self.links.key_of(link)
            {
                self.nat.observed(reporter, addr, now);
            }
            return Inbound::Done;
        }
        match self.router.handle(now, PeerId(link.0), &mut frame[1..len]) {
            Handled::Forward(peer) => {
                match self
                    .links
                    .encapsulate(now, LinkId(peer.0), &frame[..len], net_out)
                {
                    link::Send::Transmit { to, len } => Inbound::Forward { to, len },
                    link::Send::Dropped(_) => Inbound::Done,
                }
            }
            Handled::Deliver { src, body_at } => {
                let body = &frame[1 + body_at..len];
                let src = PublicKey(src);
                if body.first() == Some(&znet::ZNET) {
                    return self.znet_inbound(now, src, &frame[1..len], body_at, tun_out);
                }
                // Refused before any Diffie-Hellman: the claimed key is checked again against
                // the handshake's proof, so a lie gains nothing.
                if body.first() == Some(&e2e::wire::TYPE_INIT)
                    && !self.firewall.session_allowed(&src)
                {
                    self.firewall.counters_mut().sessions_refused += 1;
                    return Inbound::Done;
                }
                match self.e2e.handle_via(now, Some(link.0), &src, body, tun_out) {
                    Received::Deliver { len: n, from } => {
                        if !self.firewall.check_in(now, &from, &tun_out[..n]) {
                            return Inbound::Done;
                        }
                        if from == src {
                            self.router.confirm_source(now, &frame[1..len]);
                        }
                        Inbound::Tun { len: n }
                    }
                    Received::Control { len: n, from } => {
                        if from == src {
                            let msg = tun_out[..n].to_vec();
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
            Handled::Consumed | Handled::Dropped(_) => Inbound::Done,
        }
    }
}
