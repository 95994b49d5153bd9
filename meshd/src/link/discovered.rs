//! Peers this node dials without being told to: neighbours found by LAN discovery
//! ([`crate::discovery`]) and endpoints a remote node gave for NAT traversal
//! ([`crate::nat`]). Dialed like configured peers, with the key pinned, but bounded in number,
//! never persisted, subject to the circle policy's `peer` rules, and forgotten once their
//! announcements stop (or the punching round is over) while no link stands.

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
/// A punched endpoint that did not link within this long is forgotten.
pub const PUNCH_EXPIRY: Duration = Duration::from_secs(12);
/// Most punched endpoints dialed at once.
pub const MAX_PUNCHED: usize = 64;

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
        // Linked already, over another path (the Internet, a relay's punched path): the LAN
        // path is dialed too, and the better one carries the link ([`super::paths`]).
        if self
            .peers
            .get(&key)
            .is_some_and(|p| p.paths.iter().any(|q| q.endpoint == ep))
        {
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
            let quiet = d.origin.expires().is_some_and(|t| now >= t);
            let linked = d.linked.is_some_and(|k| self.peers.contains_key(&k));
            if quiet && !linked {
                let d = self.dialers.remove(i);
                tracing::debug!(uri = %d.uri, origin = d.origin.name(), "not linked; forgotten");
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
            .filter_map(|d| d.origin.expires())
            .min()
    }

    /// A remote node `key` (reached through the mesh) says it can be reached at `endpoints`:
    /// dial them all, with its key pinned, for one round. Returns how many are dialed.
    pub fn punch(&mut self, key: PublicKey, endpoints: &[SocketAddr], now: Instant) -> usize {
        if key == self.public
            || self.peers.contains_key(&key)
            || self.policy_refusal(&key).is_some()
            || self.peers.len() >= self.cfg.max_peers
        {
            return 0;
        }
        let mut n = 0;
        for addr in endpoints {
            let ep = crate::uri::Endpoint::udp(*addr);
            if let Some(d) = self.dialers.iter_mut().find(|d| d.addr == Some(ep)) {
                if let Origin::Punched { last_seen } = &mut d.origin {
                    *last_seen = now;
                    d.next_attempt = now;
                    d.failures = 0;
                    n += 1;
                }
                continue;
            }
            let punched = |d: &&Dialer| matches!(d.origin, Origin::Punched { .. });
            let count = self.dialers.iter().filter(punched).count();
            let for_key = self
                .dialers
                .iter()
                .filter(punched)
                .filter(|d| d.uri.key == Some(key))
                .count();
            if count >= MAX_PUNCHED || for_key >= crate::nat::MAX_ENDPOINTS {
                break;
            }
            let uri = PeerUri {
                scheme: Scheme::Udp,
                host: Host::Ip(addr.ip()),
                port: addr.port(),
                key: Some(key),
            };
            tracing::info!(peer = %key, %uri, "punching a direct path");
            let mut d = Dialer::new(uri, now);
            d.origin = Origin::Punched { last_seen: now };
            self.dialers.push(d);
            n += 1;
        }
        n
    }
}
