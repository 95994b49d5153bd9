//! NAT traversal glue: offering this node's observed endpoints to a node it is not linked
//! with (over the end-to-end session), punching when such an offer arrives, and telling
//! peers where their datagrams come from. The rounds and limits live in [`crate::nat`].

use super::Node;
use crate::e2e::Encrypt;
use crate::identity::PublicKey;
use crate::nat;
use crate::wire;
use std::time::Instant;

impl Node {
    /// The host's network changed (the caller bound its sockets again first): the public
    /// endpoints peers saw are forgotten, every peer is told `MOVED` from where this node is
    /// now (it sends there at once and reports what it sees), every path is probed, and
    /// configured peers not linked are dialed now. Returns the number of peers told.
    pub fn network_changed(&mut self, now: Instant) -> usize {
        self.nat.network_changed();
        let n = self.links.network_changed(now);
        self.pump(now);
        n
    }

    /// Sends this node's observed endpoints to `key` (not a direct peer) if they were not
    /// sent lately: the first step of punching a direct path ([`crate::nat`]).
    pub(super) fn offer_endpoints(&mut self, now: Instant, key: PublicKey) {
        // Only to nodes this one may link with (the circle policy's `peer` rules): nobody
        // else learns this node's public address or gets to make it dial.
        if self.links.policy_refusal(&key).is_some() || !self.nat.should_send(&key, now) {
            return;
        }
        let msg = nat::endpoints_message(&self.nat.endpoints(now));
        let mut out = Vec::new();
        if self.e2e.encrypt(now, &key, &msg, &mut out) == Encrypt::Ready {
            self.route_owned(now, key, out);
        }
    }

    /// A message from the node `from` itself, over the end-to-end session.
    pub(super) fn control(&mut self, now: Instant, from: PublicKey, msg: &[u8]) {
        let Some(endpoints) = nat::parse_endpoints(msg) else {
            return;
        };
        if self.links.peers.contains_key(&from) {
            return;
        }
        self.offer_endpoints(now, from);
        if self.nat.should_punch(&from, now) {
            let n = self.links.punch(from, &endpoints, now);
            tracing::debug!(peer = %from.short(), endpoints = ?endpoints, dialed = n, "endpoints received");
        }
    }

    /// Tells a peer where its datagrams come from (its public endpoint, when it is behind a
    /// NAT).
    pub(super) fn report_observed(&mut self, now: Instant, key: PublicKey) {
        let Some(ep) = self.links.peers.get(&key).map(|p| p.endpoint) else {
            return;
        };
        if ep.scheme != crate::uri::Scheme::Udp {
            return;
        }
        let mut f = vec![wire::frame::OBSERVED];
        nat::put_addr(&mut f, &ep.addr);
        self.links.send_control_frame(&key, &f, now);
    }
}
