//! Direct messages between linked nodes: when the link peer is the packet's destination, the
//! end-to-end DATA message goes bare (type byte [`wire::TYPE_DIRECT`], then the transport
//! layout: receiver index, counter, ciphertext), with no routing header and no second
//! encryption by the link. On the wire it is a transport message, of the length the link's
//! own would have less the routing header; only its type byte tells it apart. The session is
//! the node's own or a znet's: the receiver index says which, and nothing names the znet.
//!
//! Every check of the routed way stays: the end-to-end session authenticates the sender and
//! its replay window refuses a copy; the packet's source must be the session's key and its
//! destination this node (or, in a znet, a member's subnet and ours); the firewall judges
//! every packet. The link only lends its endpoint and counts the message for its liveness
//! ([`crate::link::Links::heard_direct`]). A message for an index this process does not hold
//! (it restarted) is answered with a STALE hint, as a routed one is.

use super::{Inbound, Node, Outbound};
use crate::e2e::{Encrypt, Received};
use crate::identity::PublicKey;
use crate::session::SealJob;
use crate::uri::Endpoint;
use crate::wire;
use std::time::Instant;

impl Node {
    /// Seals `packet` for `key`, a linked peer, straight into `net_out` as a direct message
    /// (or leaves the sealing to a job put in `defer`, if given); `None` if `key` is not a
    /// linked peer now (the caller routes the packet).
    pub(super) fn send_direct(
        &mut self,
        now: Instant,
        key: &PublicKey,
        packet: &[u8],
        net_out: &mut [u8],
        defer: Option<&mut Option<SealJob>>,
    ) -> Option<Outbound> {
        let to = self.links.direct_endpoint(key)?;
        let sealed = match defer {
            None => self.e2e.seal(now, key, packet, net_out),
            Some(job) => self.e2e.seal_deferred(now, key, packet, net_out, job),
        };
        Some(match sealed {
            Ok(len) => {
                net_out[0] = wire::TYPE_DIRECT;
                self.links.sent_direct(key, now, len);
                Outbound::Datagram { to, len }
            }
            Err(Encrypt::Queued) => Outbound::Waiting,
            Err(_) => Outbound::Dropped,
        })
    }

    /// A direct message from `from`: opened by the end-to-end session its index names, the
    /// node's own or a znet's (the index says which; nothing on the wire names the znet).
    /// The packet is copied into `tun_out` and opened there.
    pub(super) fn direct_inbound(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        tun_out: &mut [u8],
    ) -> Inbound {
        let (receiver, counter, at) = match self.direct_head(now, from, datagram, tun_out) {
            Ok(h) => h,
            Err(r) => return r,
        };
        let ct = &datagram[at..];
        let Some(room) = tun_out.get_mut(..ct.len()) else {
            return Inbound::Done;
        };
        room.copy_from_slice(ct);
        match self.direct_open(now, from, receiver, counter, room, datagram.len()) {
            Some(len) => Inbound::Tun { len },
            None => Inbound::Done,
        }
    }

    /// As [`Node::direct_inbound`], opening the packet where it lies in the datagram:
    /// [`Inbound::TunAt`].
    pub(super) fn direct_inbound_in_place(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &mut [u8],
        tun_out: &mut [u8],
    ) -> Inbound {
        let (receiver, counter, at) = match self.direct_head(now, from, datagram, tun_out) {
            Ok(h) => h,
            Err(r) => return r,
        };
        let wire_len = datagram.len();
        match self.direct_open(now, from, receiver, counter, &mut datagram[at..], wire_len) {
            Some(len) => Inbound::TunAt { at, len },
            None => Inbound::Done,
        }
    }

    /// A direct message's receiver index, counter and where its ciphertext starts, if it is
    /// for one of the node's own sessions; else what came of it (dropped, or a znet's).
    fn direct_head(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        tun_out: &mut [u8],
    ) -> Result<(u32, u64, usize), Inbound> {
        let Some((receiver, counter, ct)) = wire::parse_direct(datagram) else {
            self.e2e.count_direct_drop(false);
            return Err(Inbound::Done);
        };
        if !self.e2e.has_index(receiver) {
            let r = self.direct_znet(now, from, (receiver, counter, ct), datagram.len(), tun_out);
            return Err(r);
        }
        Ok((receiver, counter, datagram.len() - ct.len()))
    }

    /// Opens a direct message's ciphertext `buf` where it lies: the length of the packet for
    /// the TUN device now at its start, if there is one that the firewall lets in.
    fn direct_open(
        &mut self,
        now: Instant,
        from: Endpoint,
        receiver: u32,
        counter: u64,
        buf: &mut [u8],
        wire_len: usize,
    ) -> Option<usize> {
        match self.e2e.on_data_in_place(now, receiver, counter, buf) {
            Received::Deliver { len, from: key } => {
                self.links.heard_direct(&key, from, now, wire_len);
                self.firewall
                    .check_in(now, &key, &buf[..len])
                    .then_some(len)
            }
            Received::Control { len, from: key } => {
                self.links.heard_direct(&key, from, now, wire_len);
                let msg = buf[..len].to_vec();
                self.control(now, key, &msg);
                None
            }
            Received::Consumed | Received::Dropped => None,
        }
    }

    /// A direct message whose index is not one of the node's own sessions: a znet's, checked
    /// as a routed znet message is (a member, the znet's session, the addresses), or else a
    /// session this process does not hold: the link peer is told (STALE) by every layer it
    /// may have meant.
    fn direct_znet(
        &mut self,
        now: Instant,
        from: Endpoint,
        (receiver, counter, ct): (u32, u64, &[u8]),
        wire_len: usize,
        tun_out: &mut [u8],
    ) -> Inbound {
        let Some((&id, z)) = self
            .znets
            .iter_mut()
            .find(|(_, z)| z.e2e.has_index(receiver))
        else {
            self.e2e.count_direct_drop(true);
            if let Some(src) = self.links.key_at(&from) {
                let _ = self.e2e.stale_hint(now, src, receiver);
                for z in self.znets.values_mut().filter(|z| z.is_member(&src)) {
                    let _ = z.e2e.stale_hint(now, src, receiver);
                }
                self.pump(now);
            }
            return Inbound::Done;
        };
        match z.e2e.on_data(now, receiver, counter, ct, tun_out) {
            Received::Deliver { len, from: key } => {
                if !z.is_member(&key) {
                    z.counters.not_member += 1;
                    return Inbound::Done;
                }
                let accepted = z.accept(&key, &tun_out[..len]);
                self.links.heard_direct(&key, from, now, wire_len);
                if accepted {
                    Inbound::Znet { id, len }
                } else {
                    Inbound::Done
                }
            }
            Received::Consumed => {
                self.pump(now);
                Inbound::Done
            }
            Received::Control { .. } | Received::Dropped => Inbound::Done,
        }
    }

    /// Seals a znet packet for `key`, a linked member, straight into `net_out` as a direct
    /// message; `None` if `key` is not a linked peer now (the caller routes the packet).
    pub(super) fn send_direct_znet(
        &mut self,
        now: Instant,
        id: u64,
        key: &PublicKey,
        packet: &[u8],
        net_out: &mut [u8],
        defer: Option<&mut Option<SealJob>>,
    ) -> Option<Outbound> {
        let to = self.links.direct_endpoint(key)?;
        let z = self.znets.get_mut(&id)?;
        let sealed = match defer {
            None => z.e2e.seal(now, key, packet, net_out),
            Some(job) => z.e2e.seal_deferred(now, key, packet, net_out, job),
        };
        Some(match sealed {
            Ok(len) => {
                z.counters.sent += 1;
                net_out[0] = wire::TYPE_DIRECT;
                self.links.sent_direct(key, now, len);
                Outbound::Datagram { to, len }
            }
            Err(Encrypt::Queued) => {
                self.pump(now);
                Outbound::Waiting
            }
            Err(_) => Outbound::Dropped,
        })
    }
}
