//! Neighbours found by LAN discovery ([`crate::discovery`]): dialed like configured peers,
//! with their announced key pinned, but bounded in number, never persisted, subject to the
//! circle policy's `peer` rules, and forgotten once their announcements stop.

use super::{Dialer, Links, Origin};
use crate::identity::PublicKey;
use crate::uri::{Host, PeerUri, Scheme};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most discovered neighbours dialed at once (a LAN full of made-up keys cannot make this
/// node dial without end).
pub const MAX_DISCOVERED: usize = 64;
/// A neighbour not heard for this long, and not linked, is forgotten.
pub const DISCOVERED_EXPIRY: Duration = Duration::from_secs(10);

/// What became of an announcement handed to [`Links::discovered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovered {
    /// A new neighbour: it will be dialed.
    New,
    /// Already known (dialed, or linked): nothing changes.
    Known,
    /// The circle policy does not allow a link with it.
    Denied,
    /// Too many neighbours (or links) already.
    Full,
}

impl Links {
    /// A neighbour announced `key` at `addr` (its link-local address, interface and link port).
    pub fn discovered(&mut self, key: PublicKey, addr: SocketAddr, now: Instant) -> Discovered {
        if key == self.public {
            return Discovered::Known;
        }
        let ep = crate::uri::Endpoint::udp(addr);
        if let Some(d) = self.dialers.iter_mut().find(|d| d.addr == Some(ep)) {
            if let Origin::Discovered { last_seen } = &mut d.origin {
                *last_seen = now;
            }
            return Discovered::Known;
        }
        if self.peers.contains_key(&key) {
            return Discovered::Known;
        }
        if self.policy_refusal(&key).is_some() {
            return Discovered::Denied;
        }
        let count = self
            .dialers
            .iter()
            .filter(|d| matches!(d.origin, Origin::Discovered { .. }))
            .count();
        if count >= MAX_DISCOVERED || self.peers.len() >= self.cfg.max_peers {
            return Discovered::Full;
        }
        let host = match addr {
            SocketAddr::V6(a) if a.scope_id() != 0 => Host::Scoped(*a.ip(), a.scope_id()),
            a => Host::Ip(a.ip()),
        };
        let uri = PeerUri {
            scheme: Scheme::Udp,
            host,
            port: addr.port(),
            key: Some(key),
        };
        tracing::info!(peer = %key, %uri, "neighbour discovered on the LAN");
        let mut d = Dialer::new(uri, now);
        d.origin = Origin::Discovered { last_seen: now };
        self.dialers.push(d);
        Discovered::New
    }

    /// Forgets discovered neighbours that went quiet and are not linked.
    pub(crate) fn expire_discovered(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.dialers.len() {
            let d = &self.dialers[i];
            let quiet = matches!(d.origin, Origin::Discovered { last_seen }
                if now >= last_seen + DISCOVERED_EXPIRY);
            let linked = d.linked.is_some_and(|k| self.peers.contains_key(&k));
            if quiet && !linked {
                let d = self.dialers.remove(i);
                tracing::debug!(uri = %d.uri, "discovered neighbour went quiet; forgotten");
                if let Some(idx) = d.in_flight {
                    self.initiating.remove(&idx);
                }
            } else {
                i += 1;
            }
        }
    }

    /// When the next discovered neighbour may go quiet, if any.
    pub(crate) fn discovered_deadline(&self) -> Option<Instant> {
        self.dialers
            .iter()
            .filter(|d| !d.linked.is_some_and(|k| self.peers.contains_key(&k)))
            .filter_map(|d| match d.origin {
                Origin::Discovered { last_seen } => Some(last_seen + DISCOVERED_EXPIRY),
                Origin::Configured => None,
            })
            .min()
    }
}
