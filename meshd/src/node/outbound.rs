//! Packets from the local stack: address to key (a lookup, packets wait for it), the
//! firewall, the path MTU, end-to-end encryption, then a direct message to a linked
//! destination ([`super::direct`]) or a routed frame on a link. Also the
//! two ways to send a routed message (into the caller's buffer, or queued for
//! `poll_transmit`).

use super::{MAX_PARKED_KEYS, MAX_ROUTING_MESSAGE, Node, Outbound, WAIT_PER_ADDRESS};
use crate::e2e::{self, Encrypt};
use crate::identity::PublicKey;
use crate::link::{self, LinkId, Transmit};
use crate::packet::{Icmp6Error, Ipv6Header, icmp6_error};
use crate::session::SealJob;
use crate::uri::Endpoint;
use crate::wire;
use routing::address;
use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::Instant;

impl Node {
    /// Handles one IPv6 packet from the TUN device (`packet` holds it exactly).
    pub fn outbound(&mut self, now: Instant, packet: &[u8], net_out: &mut [u8]) -> Outbound {
        self.outbound_with(now, packet, net_out, None)
    }

    /// As [`Node::outbound`], but a direct message's encryption is left to the job put in
    /// `job` (the caller runs it, on any thread, before it sends `net_out`; [`SealJob`]
    /// offsets are from the start of `net_out`). Routed messages are sealed at once (`job`
    /// stays empty). Every decision (policy, path, session, counter) is made here, in order.
    pub fn outbound_deferred(
        &mut self,
        now: Instant,
        packet: &[u8],
        net_out: &mut [u8],
        job: &mut Option<SealJob>,
    ) -> Outbound {
        self.outbound_with(now, packet, net_out, Some(job))
    }

    fn outbound_with(
        &mut self,
        now: Instant,
        packet: &[u8],
        net_out: &mut [u8],
        defer: Option<&mut Option<SealJob>>,
    ) -> Outbound {
        let Ok(h) = Ipv6Header::parse(packet) else {
            self.counters.bad_local_packet += 1;
            return Outbound::Dropped;
        };
        let packet = &packet[..h.total_len];
        if h.dst.is_multicast() {
            self.counters.multicast += 1;
            return Outbound::Dropped;
        }
        let Some(owner) = address::owner_id(&h.dst) else {
            self.counters.outside_overlay += 1;
            return Outbound::Dropped;
        };
        if owner == self.address || owner == self.subnet {
            self.counters.bad_local_packet += 1;
            return Outbound::Dropped;
        }
        let Some(key) = self.router.resolve(now, &owner) else {
            self.wait(now, owner, packet);
            return Outbound::Waiting;
        };
        let key = PublicKey(key);
        if !self.firewall.check_out(now, &key, packet) {
            if let Some(e) = icmp6_error(Icmp6Error::AdminProhibited, packet) {
                self.tun_out.push_back(e);
            }
            return Outbound::Dropped;
        }
        if !self.links.peers.contains_key(&key) {
            self.offer_endpoints(now, key);
        }
        // One look-up: the header's length is known exactly when the place is.
        if let Some(header) = self.router.traffic_header_len(&key.0) {
            let mtu = MAX_ROUTING_MESSAGE.saturating_sub(header + e2e::wire::DATA_OVERHEAD);
            if packet.len() > mtu {
                self.counters.too_big += 1;
                if let Some(e) = icmp6_error(Icmp6Error::PacketTooBig(mtu.max(1280) as u32), packet)
                {
                    self.tun_out.push_back(e);
                }
                return Outbound::TooBig;
            }
        }
        if let Some(r) = self.send_direct(now, &key, packet, net_out, defer) {
            return r;
        }
        let mut ebuf = std::mem::take(&mut self.ebuf);
        let r = match self.e2e.encrypt(now, &key, packet, &mut ebuf) {
            Encrypt::Ready => match self.route(now, &key, &ebuf, net_out) {
                Some((to, len)) => Outbound::Datagram { to, len },
                None => Outbound::Dropped,
            },
            Encrypt::Queued => Outbound::Waiting,
            Encrypt::Dropped => Outbound::Dropped,
        };
        self.ebuf = ebuf;
        r
    }

    pub(super) fn wait(&mut self, now: Instant, owner: Ipv6Addr, packet: &[u8]) {
        let e = self
            .waiting
            .entry(owner)
            .or_insert_with(|| (now, VecDeque::new()));
        if e.1.len() >= WAIT_PER_ADDRESS {
            e.1.pop_front();
        }
        e.1.push_back(packet.to_vec());
    }

    /// Routes an end-to-end message to `key` into `net_out`.
    pub(super) fn route(
        &mut self,
        now: Instant,
        key: &PublicKey,
        msg: &[u8],
        net_out: &mut [u8],
    ) -> Option<(Endpoint, usize)> {
        self.rbuf.clear();
        self.rbuf.push(wire::frame::ROUTING);
        let Some(peer) = self.router.send_traffic(now, &key.0, msg, &mut self.rbuf) else {
            self.counters.no_path += 1;
            let _ = self.router.resolve(now, &key.address());
            return None;
        };
        match self
            .links
            .encapsulate(now, LinkId(peer.0), &self.rbuf, net_out)
        {
            link::Send::Transmit { to, len } => Some((to, len)),
            link::Send::Dropped(_) => None,
        }
    }

    /// Routes `msg` to `key` as an owned datagram (control paths), or parks it until the
    /// destination's coordinates are known.
    pub(super) fn route_owned(&mut self, now: Instant, key: PublicKey, msg: Vec<u8>) {
        // A direct peer (or a route still fresh) resolves at once, with no lookup and so no
        // `Resolved` event: a message parked then would wait for its sender's retry (a znet's
        // first packet waited a second for its handshake's).
        let known = self.router.knows(&key.0)
            || (self.router.resolve(now, &key.address()) == Some(key.0)
                && self.router.knows(&key.0));
        if !known {
            if self.parked.len() >= MAX_PARKED_KEYS && !self.parked.contains_key(&key) {
                return;
            }
            let q = self.parked.entry(key).or_default();
            if q.len() < WAIT_PER_ADDRESS {
                q.push_back(msg);
            }
            return;
        }
        let mut out = vec![0u8; msg.len() + 256];
        if let Some((to, len)) = self.route(now, &key, &msg, &mut out) {
            out.truncate(len);
            self.transmits.push_back(Transmit { to, data: out });
        }
    }
}
