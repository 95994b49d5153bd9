//! Direct messages between linked nodes: when the link peer is the packet's destination, the
//! end-to-end DATA message goes bare (type byte [`wire::TYPE_DIRECT`], then the transport
//! layout: receiver index, counter, ciphertext), with no routing header and no second
//! encryption by the link. On the wire it is a transport message of the same length as the
//! link's own would be less the routing header; only its type byte tells it apart.
//!
//! Every check of the routed way stays: the end-to-end session authenticates the sender and
//! its replay window refuses a copy; the packet's source must be the session's key and its
//! destination this node; the firewall judges every packet. The link only lends its endpoint
//! and counts the message for its liveness ([`crate::link::Links::heard_direct`]).

use super::{Inbound, Node, Outbound};
use crate::e2e::{Encrypt, Received};
use crate::identity::PublicKey;
use crate::uri::Endpoint;
use crate::wire;
use std::time::Instant;

impl Node {
    /// Seals `packet` for `key`, a linked peer, straight into `net_out` as a direct message;
    /// `None` if `key` is not a linked peer now (the caller routes the packet).
    pub(super) fn send_direct(
        &mut self,
        now: Instant,
        key: &PublicKey,
        packet: &[u8],
        net_out: &mut [u8],
    ) -> Option<Outbound> {
        let to = self.links.direct_endpoint(key)?;
        Some(match self.e2e.seal(now, key, packet, net_out) {
            Ok(len) => {
                net_out[0] = wire::TYPE_DIRECT;
                self.links.sent_direct(key, now, len);
                Outbound::Datagram { to, len }
            }
            Err(Encrypt::Queued) => Outbound::Waiting,
            Err(_) => Outbound::Dropped,
        })
    }

    /// A direct message from `from`: opened by the end-to-end session its index names.
    pub(super) fn direct_inbound(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        tun_out: &mut [u8],
    ) -> Inbound {
        let Some((receiver, counter, ct)) = wire::parse_direct(datagram) else {
            return Inbound::Done;
        };
        let links = &self.links;
        match self
            .e2e
            .handle_direct(now, || links.key_at(&from), receiver, counter, ct, tun_out)
        {
            Received::Deliver { len, from: key } => {
                self.links.heard_direct(&key, from, now, datagram.len());
                if !self.firewall.check_in(now, &key, &tun_out[..len]) {
                    return Inbound::Done;
                }
                Inbound::Tun { len }
            }
            Received::Control { len, from: key } => {
                self.links.heard_direct(&key, from, now, datagram.len());
                let msg = tun_out[..len].to_vec();
                self.control(now, key, &msg);
                Inbound::Done
            }
            Received::Consumed | Received::Dropped => Inbound::Done,
        }
    }
}
