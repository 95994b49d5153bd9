//! Time on a node: the next instant any layer has work, running what is due (link, router,
//! session and znet timers, lookups given up, pings timed out, observed-endpoint reports),
//! and an orderly shut-down.

use super::{LOOKUP_PATIENCE, Node, PING_TIMEOUT, PingOutcome};
use crate::identity::PublicKey;
use crate::nat;
use std::net::Ipv6Addr;
use std::time::Instant;

impl Node {
    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = [
            self.links.poll_timeout(),
            self.router.poll_timeout(),
            self.e2e.poll_timeout(),
        ]
        .into_iter()
        .chain(self.znets.values().map(|z| z.e2e.poll_timeout()))
        .flatten()
        .min();
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for (started, _) in self.waiting.values() {
            at(*started + LOOKUP_PATIENCE);
        }
        for p in &self.pings {
            at(p.started + PING_TIMEOUT);
        }
        if let Some(r) = self.nat.next_report {
            at(r);
        }
        t
    }

    /// Runs whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.links.handle_timeout(now);
        self.firewall.expire(now);
        self.router.handle_timeout(now);
        self.e2e.handle_timeout(now);
        for z in self.znets.values_mut() {
            z.e2e.handle_timeout(now);
        }
        let stale: Vec<Ipv6Addr> = self
            .waiting
            .iter()
            .filter(|(_, (t, _))| now >= *t + LOOKUP_PATIENCE)
            .map(|(a, _)| *a)
            .collect();
        for a in stale {
            if let Some((_, q)) = self.waiting.remove(&a) {
                self.counters.unreachable += q.len() as u64;
            }
        }
        let mut done = Vec::new();
        self.pings.retain(|p| {
            let late = now >= p.started + PING_TIMEOUT;
            if late {
                done.push(p.ticket);
            }
            !late
        });
        for t in done {
            self.ping_results.push_back((t, PingOutcome::Timeout));
        }
        if self.nat.next_report.is_some_and(|r| now >= r) {
            let keys: Vec<PublicKey> = self.links.peers.keys().copied().collect();
            for k in keys {
                self.report_observed(now, k);
            }
            self.nat.next_report = Some(now + nat::REPORT_INTERVAL);
        }
        self.pump(now);
    }

    /// The node is stopping: a root says farewell (so the tree re-forms at once), then every
    /// link is closed. Send what `poll_transmit` returns afterwards.
    pub fn shut_down(&mut self, now: Instant) {
        self.router.retire(now);
        self.pump(now);
        self.links.close_all(now);
        self.pump(now);
    }
}
