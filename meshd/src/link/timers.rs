//! Everything that happens because time passed: dial attempts and backoff, handshake
//! retries, keepalives, rekeys, session expiry and peer timeouts.

use super::handshake::{Purpose, RESPONDER_EXPIRY};
use super::{Dialer, Links};
use crate::identity::PublicKey;
use std::time::Instant;

impl Links {
    /// The next instant at which [`Links::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for p in self.peers.values() {
            at(p.deadline(&self.cfg));
        }
        for i in self.initiating.values() {
            at(i.sent + self.cfg.handshake_timeout);
        }
        if let Some(oldest) = self
            .responding_order
            .front()
            .and_then(|i| self.responding.get(i))
        {
            at(oldest.created + RESPONDER_EXPIRY);
        }
        for d in &self.dialers {
            if self.wants_dial(d) {
                at(d.next_attempt);
            }
        }
        if let Some(t) = self.discovered_deadline() {
            at(t);
        }
        next
    }

    fn wants_dial(&self, d: &Dialer) -> bool {
        // Linked, and its endpoint is still one of the link's paths (a path that died is
        // dialed again, so that it comes back when it heals).
        let linked = d.linked.is_some_and(|k| {
            self.peers.get(&k).is_some_and(|p| {
                d.addr
                    .is_none_or(|a| p.paths.iter().any(|q| q.endpoint == a))
            })
        });
        !linked && d.in_flight.is_none() && !d.resolving
    }

    /// Does whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_handshakes(now);
        self.expire_discovered(now);
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.peer_timers(&key, now);
        }
        for i in 0..self.dialers.len() {
            let d = &self.dialers[i];
            if !self.wants_dial(d) || d.next_attempt > now {
                continue;
            }
            match d.addr {
                Some(addr) => {
                    let idx = self.start_handshake(addr, Purpose::Dial(addr), now);
                    let d = &mut self.dialers[i];
                    d.in_flight = idx;
                    if idx.is_none() {
                        d.next_attempt = now + self.cfg.max_backoff;
                    }
                }
                None => self.request_resolve(i),
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        let timeout = self.cfg.handshake_timeout;
        let expired: Vec<u32> = self
            .initiating
            .iter()
            .filter(|(_, i)| now >= i.sent + timeout)
            .map(|(idx, _)| *idx)
            .collect();
        for idx in expired {
            if let Some(init) = self.initiating.remove(&idx) {
                for d in self.dialers.iter_mut().filter(|d| d.in_flight == Some(idx)) {
                    d.in_flight = None;
                }
                for p in self
                    .peers
                    .values_mut()
                    .filter(|p| p.rekey_in_flight == Some(idx))
                {
                    p.rekey_in_flight = None;
                }
                tracing::debug!(to = %init.to, "handshake timed out");
                self.handshake_failed(init.purpose, "no answer", now);
            }
        }
        while let Some(idx) = self.responding_order.front().copied() {
            match self.responding.get(&idx) {
                Some(r) if now < r.created + RESPONDER_EXPIRY => break,
                _ => {
                    self.responding.remove(&idx);
                    self.responding_order.pop_front();
                }
            }
        }
    }

    fn peer_timers(&mut self, key: &PublicKey, now: Instant) {
        let cfg = self.cfg.clone();
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        // Sessions past their lifetime are never used again.
        let mut expired = Vec::new();
        peer.sessions.retain(|s| {
            let keep = now < s.created + cfg.reject_after;
            if !keep {
                expired.push(s.local_index);
            }
            keep
        });
        for idx in expired {
            self.sessions.remove(&idx);
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.sessions.is_empty() {
            self.remove_link(key, "no valid session left (rekey failed)");
            self.relink_dialers(key, now);
            return;
        }
        if now >= peer.last_rx + cfg.peer_timeout {
            let confirmed = peer.sessions.iter().any(|s| s.confirmed);
            let why = format!("nothing received for {:?}", cfg.peer_timeout);
            self.remove_link(key, &why);
            if confirmed {
                self.relink_dialers(key, now);
            } else {
                // The handshake completed but the peer never answered on the link: it refused
                // us without saying so (max_peers, an older peer). Back off, do not loop.
                self.unconfirmed_link_failed(
                    key,
                    "the peer completed the handshake but never answered (it may refuse this \
                     node: its max_peers or policy)",
                    now,
                );
            }
            return;
        }
        if peer.rekey_due(&cfg).is_some_and(|t| now >= t) {
            let to = peer.endpoint;
            let idx = self.start_handshake(to, Purpose::Rekey(*key), now);
            if let Some(p) = self.peers.get_mut(key) {
                p.rekey_in_flight = idx;
                p.next_rekey_attempt = now + cfg.handshake_timeout;
            }
        }
        if self
            .peers
            .get(key)
            .is_some_and(|p| now >= p.keepalive_due(&cfg))
        {
            self.send_keepalive(key, now);
        }
        self.path_timers(key, now);
    }

    /// A link that never carried anything from the peer went down (or the peer refused it):
    /// the configured peers that led to it count a failure and back off.
    pub(crate) fn unconfirmed_link_failed(&mut self, key: &PublicKey, why: &str, now: Instant) {
        let addrs: Vec<crate::uri::Endpoint> = self
            .dialers
            .iter()
            .filter(|d| d.linked == Some(*key))
            .filter_map(|d| d.addr)
            .collect();
        for d in self.dialers.iter_mut().filter(|d| d.linked == Some(*key)) {
            d.linked = None;
        }
        for a in addrs {
            self.handshake_failed(super::handshake::Purpose::Dial(a), why, now);
        }
    }

    /// After the link to `key` went down, configured peers that led to it dial again at once.
    pub(crate) fn relink_dialers(&mut self, key: &PublicKey, now: Instant) {
        for d in self.dialers.iter_mut().filter(|d| d.linked == Some(*key)) {
            d.linked = None;
            d.failures = 0;
            d.next_attempt = now;
            d.forget_resolved();
        }
    }
}
