//! znets on a node: bringing one up or down, packets from its TUN device out to members,
//! and routed znet messages in (the sender must be a member, the packet from its subnet).
//! Membership and the znet's own sessions live in [`crate::znet`]; this file only wires them
//! to the router.

use super::{Inbound, MAX_ROUTING_MESSAGE, Node, Outbound};
use crate::e2e::{self, Encrypt, Received};
use crate::identity::{Identity, PublicKey};
use crate::znet::{self, Manifest, Znet};
use std::time::Instant;

impl Node {
    /// Puts a znet in force (or a new version of its manifest: nodes no longer members are
    /// cut off at once). Fails if this node is not a member. The node is the znet's exit if
    /// the manifest's `egress` names it and [`Node::znet_exits`] holds the znet's name.
    pub fn znet_up(
        &mut self,
        identity: &Identity,
        manifest: Manifest,
        now: Instant,
    ) -> Result<(), String> {
        if manifest.member(&identity.public_key()).is_none() {
            return Err(format!(
                "this node ({}) is not a member of znet {}; add it to the manifest's [[members]]",
                identity.public_key(),
                manifest.name
            ));
        }
        let exit_allowed = self.znet_exits.contains(&manifest.name);
        if let Some(z) = self.znets.get_mut(&manifest.id) {
            z.update(manifest, exit_allowed);
            return Ok(());
        }
        let seed = self.seed ^ manifest.id;
        let id = manifest.id;
        let z = Znet::new(
            identity,
            manifest,
            exit_allowed,
            self.e2e_cfg.clone(),
            seed,
            now,
        )
        .ok_or("not a member")?;
        self.znets.insert(id, z);
        Ok(())
    }

    /// The next packet made here for a znet's TUN (ICMP errors): `(znet id, packet)`.
    pub fn poll_znet_tun(&mut self) -> Option<(u64, Vec<u8>)> {
        self.znets
            .iter_mut()
            .find_map(|(id, z)| z.tun_out.pop_front().map(|p| (*id, p)))
    }

    /// Takes a znet down (its sessions are forgotten).
    pub fn znet_down(&mut self, id: u64) -> bool {
        self.znets.remove(&id).is_some()
    }

    /// Handles one packet from znet `id`'s TUN device.
    pub fn znet_outbound(
        &mut self,
        now: Instant,
        id: u64,
        packet: &[u8],
        net_out: &mut [u8],
    ) -> Outbound {
        self.znet_outbound_with(now, id, packet, net_out, None)
    }

    /// As [`Node::znet_outbound`], with a direct message's encryption left to `job`, as
    /// [`Node::outbound_deferred`] does.
    pub fn znet_outbound_deferred(
        &mut self,
        now: Instant,
        id: u64,
        packet: &[u8],
        net_out: &mut [u8],
        job: &mut Option<crate::session::SealJob>,
    ) -> Outbound {
        self.znet_outbound_with(now, id, packet, net_out, Some(job))
    }

    fn znet_outbound_with(
        &mut self,
        now: Instant,
        id: u64,
        packet: &[u8],
        net_out: &mut [u8],
        defer: Option<&mut Option<crate::session::SealJob>>,
    ) -> Outbound {
        let Some(z) = self.znets.get_mut(&id) else {
            return Outbound::Dropped;
        };
        if !z.from_here(packet) {
            return Outbound::Dropped;
        }
        let Some(key) = z.destination(packet) else {
            return Outbound::Dropped;
        };
        if self.router.knows(&key.0) {
            let header = self.router.traffic_header_len(&key.0).unwrap_or(200);
            let mtu = MAX_ROUTING_MESSAGE
                .saturating_sub(header + e2e::wire::DATA_OVERHEAD + znet::HEADER);
            if packet.len() > mtu {
                z.too_big(packet, mtu);
                return Outbound::TooBig;
            }
        }
        if let Some(r) = self.send_direct_znet(now, id, &key, packet, net_out, defer) {
            return r;
        }
        let Some(z) = self.znets.get_mut(&id) else {
            return Outbound::Dropped;
        };
        let mut ebuf = std::mem::take(&mut self.ebuf);
        let r = match z.e2e.encrypt(now, &key, packet, &mut ebuf) {
            Encrypt::Ready => {
                z.counters.sent += 1;
                let mut msg = Vec::with_capacity(ebuf.len() + znet::HEADER);
                msg.push(znet::ZNET);
                msg.extend_from_slice(&id.to_be_bytes());
                msg.extend_from_slice(&ebuf);
                if self.router.knows(&key.0) {
                    match self.route(now, &key, &msg, net_out) {
                        Some((to, len)) => Outbound::Datagram { to, len },
                        None => Outbound::Dropped,
                    }
                } else {
                    self.route_owned(now, key, msg);
                    Outbound::Waiting
                }
            }
            Encrypt::Queued => {
                self.pump(now);
                Outbound::Waiting
            }
            Encrypt::Dropped => Outbound::Dropped,
        };
        self.ebuf = ebuf;
        r
    }

    /// A routed message for a znet: the sender must be a member, the session the znet's, the
    /// packet from the sender's subnet to ours (or across the exit: see [`Znet::accept`]).
    pub(super) fn znet_inbound(
        &mut self,
        now: Instant,
        src: PublicKey,
        routed: &[u8],
        body_at: usize,
        tun_out: &mut [u8],
    ) -> Inbound {
        let Some(body) = routed.get(body_at..) else {
            return Inbound::Done;
        };
        let Some(id) = body
            .get(1..znet::HEADER)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return Inbound::Done;
        };
        let Some(z) = self.znets.get_mut(&id) else {
            return Inbound::Done;
        };
        if !z.is_member(&src) {
            z.counters.not_member += 1;
            return Inbound::Done;
        }
        match z.e2e.handle(now, &src, &body[znet::HEADER..], tun_out) {
            Received::Deliver { len, from } => {
                if z.accept(&from, &tun_out[..len]) {
                    if from == src && !self.router.knows(&src.0) {
                        self.router.confirm_source(now, routed);
                    }
                    Inbound::Znet { id, len }
                } else {
                    Inbound::Done
                }
            }
            Received::Consumed => {
                if !self.router.knows(&src.0) {
                    self.router.confirm_source(now, routed);
                }
                self.pump(now);
                Inbound::Done
            }
            Received::Control { .. } | Received::Dropped => Inbound::Done,
        }
    }
}
