//! Moves events and messages between the layers: links up and down into the router,
//! router events (lookups resolved, pongs) back to waiting packets and pings, end-to-end and
//! znet handshakes and routing messages out as datagrams. Loops until every layer is quiet.

use super::{MAX_DATAGRAM, NameEvent, Node, Outbound, PingOutcome};
use crate::identity::PublicKey;
use crate::link::{self, LinkId, Transmit};
use crate::nat;
use crate::packet::{Icmp6Error, icmp6_error};
use crate::wire;
use crate::znet;
use routing::{Event as RouteEvent, PeerId};
use std::time::Instant;

impl Node {
    /// Moves events and control messages between the layers. Called by `poll_transmit`,
    /// `handle_timeout` and the accessors; cheap when there is nothing to do.
    pub(super) fn pump(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            // The link's own datagrams first: a handshake's final message must reach the peer
            // before the routing messages the new link provokes (else those arrive for a
            // session the peer does not hold yet, and are lost).
            while let Some(t) = self.links.poll_transmit() {
                busy = true;
                self.transmits.push_back(t);
            }
            while let Some(e) = self.links.poll_event() {
                busy = true;
                match e {
                    link::Event::LinkUp { link, key, rtt } => {
                        self.router.peer_up(now, PeerId(link.0), key.0, rtt);
                        self.peer_event(key, true);
                        self.report_observed(now, key);
                        self.nat
                            .next_report
                            .get_or_insert(now + nat::REPORT_INTERVAL);
                    }
                    link::Event::PeerMoved { key } => self.report_observed(now, key),
                    link::Event::LinkDown { link, key } => {
                        self.router.peer_down(now, PeerId(link.0));
                        self.peer_event(key, false);
                    }
                    link::Event::Resolve(uri) => self.links_events.push_back(uri),
                }
            }
            while let Some(e) = self.router.poll_event() {
                busy = true;
                self.on_route_event(now, e);
            }
            while let Some((key, msg)) = self.e2e.poll_transmit() {
                busy = true;
                self.route_owned(now, key, msg);
            }
            let mut zmsgs = Vec::new();
            for (id, z) in self.znets.iter_mut() {
                while let Some((key, msg)) = z.e2e.poll_transmit() {
                    let mut m = Vec::with_capacity(msg.len() + znet::HEADER);
                    m.push(znet::ZNET);
                    m.extend_from_slice(&id.to_be_bytes());
                    m.extend_from_slice(&msg);
                    zmsgs.push((key, m));
                }
            }
            for (key, m) in zmsgs {
                busy = true;
                self.route_owned(now, key, m);
            }
            while let Some((peer, msg)) = self.router.poll_transmit() {
                busy = true;
                let mut frame = Vec::with_capacity(msg.len() + 1);
                frame.push(wire::frame::ROUTING);
                frame.extend_from_slice(&msg);
                let mut out = vec![0u8; frame.len() + wire::TRANSPORT_OVERHEAD];
                if let link::Send::Transmit { to, len } =
                    self.links
                        .encapsulate(now, LinkId(peer.0), &frame, &mut out)
                {
                    out.truncate(len);
                    self.transmits.push_back(Transmit { to, data: out });
                }
            }
            while let Some(t) = self.links.poll_transmit() {
                busy = true;
                self.transmits.push_back(t);
            }
            if !busy {
                return;
            }
        }
    }

    pub(super) fn on_route_event(&mut self, now: Instant, e: RouteEvent) {
        match e {
            RouteEvent::Resolved { addr, key } => {
                let waiting = self
                    .waiting
                    .remove(&addr)
                    .map(|(_, q)| q)
                    .unwrap_or_default();
                match key {
                    Some(k) => {
                        let key = PublicKey(k);
                        let mut out = vec![0u8; MAX_DATAGRAM + 64];
                        for pkt in waiting {
                            if let Outbound::Datagram { to, len } =
                                self.outbound(now, &pkt, &mut out)
                            {
                                let data = out[..len].to_vec();
                                self.transmits.push_back(Transmit { to, data });
                            }
                        }
                        if let Some(q) = self.parked.remove(&key) {
                            for m in q {
                                self.route_owned(now, key, m);
                            }
                        }
                        let mut pinged = false;
                        for p in self
                            .pings
                            .iter_mut()
                            .filter(|p| p.addr == addr && p.nonce.is_none())
                        {
                            p.nonce = self.router.ping(now, &k);
                            pinged = true;
                        }
                        if pinged {
                            self.offer_endpoints(now, key);
                        }
                    }
                    None => {
                        self.parked.retain(|k, _| k.address() != addr);
                        for pkt in waiting {
                            self.counters.unreachable += 1;
                            if let Some(e) = icmp6_error(Icmp6Error::AddressUnreachable, &pkt) {
                                self.tun_out.push_back(e);
                            }
                        }
                        let mut done = Vec::new();
                        self.pings.retain(|p| {
                            let gone = p.addr == addr && p.nonce.is_none();
                            if gone {
                                done.push(p.ticket);
                            }
                            !gone
                        });
                        for t in done {
                            self.ping_results.push_back((t, PingOutcome::Unreachable));
                        }
                    }
                }
            }
            RouteEvent::Pong { nonce, hops, rtt } => {
                if let Some(i) = self.pings.iter().position(|p| p.nonce == Some(nonce)) {
                    let p = self.pings.remove(i);
                    let rtt_us = rtt.as_micros() as u64;
                    let direct = self
                        .router
                        .resolve(now, &p.addr)
                        .and_then(|k| self.links.peers.get(&PublicKey(k)))
                        .map(|peer| peer.endpoint.to_string());
                    self.ping_results.push_back((
                        p.ticket,
                        PingOutcome::Reply {
                            hops,
                            rtt_us,
                            direct,
                        },
                    ));
                }
            }
            RouteEvent::PathBroken { key } => {
                tracing::debug!(peer = %PublicKey(key).short(), "a node on the path could not forward to it: looking it up again");
            }
            RouteEvent::TreeChanged => tracing::debug!("our place in the tree changed"),
            RouteEvent::NameClaimed { name, state } => {
                self.name_event(NameEvent::Claimed { name, state });
            }
            RouteEvent::NameResolved { name, result } => {
                self.name_event(NameEvent::Resolved { name, result });
            }
        }
    }
}
