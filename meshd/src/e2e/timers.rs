//! Everything that happens to end-to-end sessions because time passed: handshake retries and
//! giving up, probes of remotes that stopped answering, session expiry.
//!
//! Each remote is filed in a [`TimerTable`](crate::toolkit::timer::TimerTable) under an
//! instant no later than [`Remote::deadline`]; [`E2e::handle_timeout`] pops only the remotes
//! that are due, so its cost follows what expires, not how many remotes there are. Whoever
//! makes a remote's deadline earlier (a handshake started, a first unanswered packet, a new
//! session) files it with `timers.lower`.

use super::{E2e, E2eConfig, Remote};
use crate::identity::PublicKey;
use std::time::Instant;

impl Remote {
    /// The earliest instant at which this remote has timer work, if any.
    pub(super) fn deadline(&self, cfg: &E2eConfig) -> Option<Instant> {
        let mut next = if let Some(p) = &self.initiating {
            Some(p.sent + cfg.handshake_timeout)
        } else {
            self.first_unanswered.map(|t| t + cfg.probe_after)
        };
        if let Some(s) = self.sessions.first() {
            let expiry = cfg.lifetime().expires_at(s);
            next = Some(next.map_or(expiry, |n| n.min(expiry)));
        }
        next
    }
}

impl E2e {
    /// The next instant [`E2e::handle_timeout`] has work (it may find none: a packet can have
    /// moved a deadline later since it was filed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(test)]
        self.check_timers();
        self.timers.next()
    }

    /// Handshake retries, probes of silent remotes, session expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some((at, key)) = self.timers.pop_due(now) {
            // Stale entries (the remote is gone, or was filed again) are skipped.
            if let Some(r) = self.remotes.get_mut(&key).filter(|r| r.timer == Some(at)) {
                r.timer = None;
                due.push(key);
            }
        }
        for key in due {
            self.remote_timers(&key, now);
            if let Some(r) = self.remotes.get_mut(&key) {
                let next = r.deadline(&self.cfg);
                self.timers.set(key, &mut r.timer, next);
            }
        }
    }

    fn remote_timers(&mut self, key: &PublicKey, now: Instant) {
        let Some(r) = self.remotes.get_mut(key) else {
            return;
        };
        let by_index = &mut self.by_index;
        self.cfg.lifetime().drop_expired(&mut r.sessions, now, |i| {
            by_index.remove(&i);
        });
        match &r.initiating {
            Some(p) if now >= p.sent + self.cfg.handshake_timeout => {
                if p.attempts >= self.cfg.handshake_attempts {
                    self.counters.queue_dropped += r.queue.len() as u64;
                    r.queue.clear();
                    r.first_unanswered = None;
                    if let Some(p) = r.initiating.take() {
                        self.by_index.remove(&p.index);
                    }
                    tracing::debug!(peer = %key.short(), "end-to-end handshake gave up");
                } else {
                    self.start_handshake(now, key);
                }
            }
            None if r
                .first_unanswered
                .is_some_and(|t| now >= t + self.cfg.probe_after) =>
            {
                // Data went out and nothing came back: the other side may have lost the
                // session (a restart). Handshake again, keeping the old one meanwhile.
                r.first_unanswered = None;
                self.start_handshake(now, key);
            }
            _ => {}
        }
    }

    /// Under test, on every `poll_timeout`: no remote is filed later than its deadline (else a
    /// timer would be missed).
    #[cfg(test)]
    fn check_timers(&self) {
        for (k, r) in &self.remotes {
            if let Some(d) = r.deadline(&self.cfg) {
                assert!(
                    r.timer.is_some_and(|t| t <= d),
                    "remote {k} filed at {:?}, due at {d:?}",
                    r.timer
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{E2eConfig, Remote};
    use super::*;
    use crate::identity::Identity;
    use std::time::Duration;

    #[test]
    fn handle_timeout_costs_what_expires_not_what_exists() {
        let now = Instant::now();
        let id = Identity::from_seed(&[9; 32]);
        let cfg = E2eConfig {
            max_remotes: 10_000,
            ..E2eConfig::default()
        };
        let probe = cfg.probe_after;
        let mut e2e = E2e::new(&id, cfg, 1, now);
        // 10,000 remotes that were sent something and have not answered yet.
        for i in 0..10_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            let key = PublicKey(k);
            let mut r = Remote::new(&key, now);
            r.first_unanswered = Some(now);
            e2e.timers.lower(key, &mut r.timer, now + probe);
            e2e.remotes.insert(key, r);
        }
        assert_eq!(e2e.poll_timeout(), Some(now + probe));
        e2e.timers.touched = 0;
        e2e.handle_timeout(now + Duration::from_secs(1));
        assert!(e2e.timers.touched <= 2, "touched {}", e2e.timers.touched);
        assert_eq!(e2e.timers.len(), 10_000);
        // All due: one entry each (they probe, which needs real keys; these have none).
        e2e.timers.touched = 0;
        e2e.handle_timeout(now + probe);
        assert_eq!(e2e.timers.touched, 10_001);
    }
}
