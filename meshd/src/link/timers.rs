//! Everything that happens because time passed: dial attempts and backoff, handshake
//! retries, keepalives, rekeys, session expiry and peer timeouts.
//!
//! Peers and our handshakes in flight are filed in a
//! [`TimerTable`](crate::toolkit::timer::TimerTable): a peer under an instant no later than
//! [`Peer::deadline`](super::Peer), a handshake under the instant its answer is overdue.
//! [`Links::handle_timeout`] pops only what is due, so an idle node with thousands of links
//! does no work per link when nothing expires. Whoever makes a peer's deadline earlier files
//! it again ([`Links::refile_peer`]); the data path does so only in the rare case the
//! deadline moves earlier than what is filed (one comparison otherwise). Configured and
//! discovered dialers (a few, bounded by the config and [`super::MAX_DISCOVERED`] /
//! [`super::MAX_PUNCHED`]) are still scanned; half-open inbound handshakes expire in order
//! from a queue.

use super::handshake::{Purpose, RESPONDER_EXPIRY};
use super::{Dialer, Links, Timer};
use crate::identity::PublicKey;
use std::time::Instant;

impl Links {
    /// The next instant at which [`Links::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        #[cfg(test)]
        self.check_timers();
        if let Some(t) = self.timers.next() {
            at(t);
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
        // Dialing fast, a new attempt does not wait for the answer to the last one.
        !linked && (d.in_flight.is_none() || d.fast_until.is_some()) && !d.resolving
    }

    /// Does whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (mut peers, mut handshakes) = (Vec::new(), Vec::new());
        while let Some((at, timer)) = self.timers.pop_due(now) {
            // Stale entries (the owner is gone, or was filed again) are skipped.
            match timer {
                Timer::Peer(key) => {
                    if let Some(p) = self.peers.get_mut(&key).filter(|p| p.timer == Some(at)) {
                        p.timer = None;
                        peers.push(key);
                    }
                }
                Timer::Handshake(idx) => {
                    if let Some(i) = self
                        .initiating
                        .get_mut(&idx)
                        .filter(|i| i.timer == Some(at))
                    {
                        i.timer = None;
                        handshakes.push(idx);
                    }
                }
            }
        }
        self.expire_handshakes(&handshakes, now);
        self.expire_discovered(now);
        for key in peers {
            self.peer_timers(&key, now);
            if let Some(p) = self.peers.get_mut(&key) {
                let next = p.deadline(&self.cfg);
                self.timers.set(Timer::Peer(key), &mut p.timer, Some(next));
            }
        }
        for i in 0..self.dialers.len() {
            let d = &mut self.dialers[i];
            if d.fast_until.is_some_and(|t| now >= t) {
                d.fast_until = None;
            }
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
                    } else if d.fast_until.is_some() {
                        d.next_attempt = now + super::liveness::FAST_REDIAL;
                    }
                }
                None => self.request_resolve(i),
            }
        }
    }

    /// Our handshakes `expired` (popped from the timer table) got no answer in time: sent
    /// again, or given up once their time is over.
    fn expire_handshakes(&mut self, expired: &[u32], now: Instant) {
        for &idx in expired {
            let timed_out = self
                .initiating
                .get(&idx)
                .map(|i| now >= i.sent + self.cfg.handshake_timeout);
            if timed_out == Some(false) {
                self.resend_init(idx, now);
                continue;
            }
            if let Some(init) = self.initiating.remove(&idx) {
                self.clear_in_flight(idx, init.purpose);
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
        let sessions = &mut self.sessions;
        cfg.lifetime().drop_expired(&mut peer.sessions, now, |idx| {
            sessions.remove(&idx);
        });
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.sessions.is_empty() {
            self.remove_link(key, "no valid session left (rekey failed)");
            self.relink_dialers(key, now);
            return;
        }
        let silent = peer.silent_after(&cfg);
        let mut unanswered = peer.first_unanswered_tx.is_some_and(|t| now >= t + silent);
        if unanswered && now < peer.last_rx + cfg.peer_timeout {
            // Another path heard from lately (its probes are answered): the path in use died,
            // not the link. Move there and give it the same time.
            let other = peer
                .paths
                .iter()
                .filter(|p| p.endpoint != peer.endpoint)
                .filter(|p| now < p.last_rx + super::paths::PATH_SILENT)
                .max_by_key(|p| p.last_rx)
                .map(|p| p.endpoint);
            if let Some(ep) = other {
                tracing::info!(peer = %key.short(), from = %peer.endpoint, to = %ep,
                    "data unanswered on the path in use: the link moves to another path");
                peer.endpoint = ep;
                peer.switched = now;
                peer.first_unanswered_tx = Some(now);
                unanswered = false;
            }
        }
        if unanswered || now >= peer.last_rx + cfg.peer_timeout {
            let confirmed = peer.sessions.iter().any(|s| s.confirmed);
            let why = if unanswered {
                format!("data unanswered for {silent:?}")
            } else {
                format!("nothing received for {:?}", cfg.peer_timeout)
            };
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

    /// Files the peer `key` again after something made its deadline earlier (a new session,
    /// a second path, a rekey that may be retried).
    pub(crate) fn refile_peer(&mut self, key: &PublicKey) {
        if let Some(p) = self.peers.get_mut(key) {
            let d = p.deadline(&self.cfg);
            self.timers.lower(Timer::Peer(*key), &mut p.timer, d);
        }
    }

    /// Under test, on every `poll_timeout`: no peer is filed later than its deadline and every
    /// handshake of ours is filed when its answer is overdue (else a timer would be missed).
    #[cfg(test)]
    fn check_timers(&self) {
        for (k, p) in &self.peers {
            let d = p.deadline(&self.cfg);
            assert!(
                p.timer.is_some_and(|t| t <= d),
                "peer {k} filed at {:?}, due at {d:?}",
                p.timer
            );
        }
        for (idx, i) in &self.initiating {
            assert!(
                i.timer
                    .is_some_and(|t| t <= i.sent + self.cfg.handshake_timeout),
                "handshake {idx} filed at {:?}",
                i.timer
            );
        }
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

    /// After the link to `key` went down, configured peers that led to it dial again at once,
    /// and then fast for a while ([`super::liveness::FAST_REDIAL`]): it was up a moment ago.
    pub(crate) fn relink_dialers(&mut self, key: &PublicKey, now: Instant) {
        for d in self.dialers.iter_mut().filter(|d| d.linked == Some(*key)) {
            d.linked = None;
            d.failures = 0;
            d.next_attempt = now;
            d.fast_until = Some(now + super::liveness::FAST_FOR);
            d.forget_resolved();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LinkConfig, LinkId, Peer};
    use super::*;
    use crate::identity::Identity;
    use crate::uri::Endpoint;
    use std::net::SocketAddr;
    use std::time::Duration;

    /// 10,000 links filed as a handshake would file them (no sessions: only the timer work
    /// is measured here).
    fn idle_links(now: Instant) -> Links {
        let id = Identity::from_seed(&[7; 32]);
        let mut links = Links::new(&id, LinkConfig::default(), 1, now);
        for i in 0..10_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            let key = PublicKey(k);
            let ep = Endpoint::udp(SocketAddr::from((
                [192, 0, 2, 1],
                1024 + (i % 60_000) as u16,
            )));
            let link = LinkId(u64::from(i) + 1);
            links.links.insert(link, key);
            links.peers.insert(key, Peer::new(key, link, ep, now));
            links.refile_peer(&key);
        }
        links
    }

    #[test]
    fn handle_timeout_costs_what_expires_not_what_exists() {
        let now = Instant::now();
        let mut links = idle_links(now);
        assert_eq!(
            links.poll_timeout(),
            Some(now + LinkConfig::default().keepalive_interval)
        );
        // Nothing due: one look at the first entry, whatever the number of links.
        links.timers.touched = 0;
        links.handle_timeout(now + Duration::from_millis(100));
        assert!(
            links.timers.touched <= 2,
            "touched {}",
            links.timers.touched
        );
        assert_eq!(links.peers.len(), 10_000);
        // Everything due: one entry per link, plus the look that finds nothing more.
        links.timers.touched = 0;
        links.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(links.timers.touched, 10_001);
    }
}
