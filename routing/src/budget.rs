//! Lookup requests are served within budgets: per peer, and for our own lookups.
//!
//! * **Per peer.** Every lookup request (`FIND`) that arrives over a link, to answer or to
//!   forward, is paid from that link's bucket: [`FIND_BURST`] requests at once, refilled at
//!   [`FIND_RATE`] per second. A request over budget is dropped (counted as `rate_limited`);
//!   its lookup asks someone else or times out. The link is the only thing a request carries
//!   that is authenticated (keys are cheap and a request names any source it likes), so a peer
//!   asking for 20,000 destinations gets at most the burst and then the rate, and every other
//!   peer has its own bucket, untouched. The buckets live in the peer table: bounded by it.
//! * **Our own.** At most [`MAX_LOOKUPS`] lookups run at once; a resolve beyond that ends at
//!   once as not found (counted in `lookups_refused`), so a local program asking for many
//!   addresses cannot grow the lookup table without bound.
//!
//! The budget is sized on the simulator at 10,000 nodes, where the links between hubs carry
//! the lookups of thousands of nodes (docs/ROUTING.md, "Lookup budgets"): it caps abuse, not
//! use, up to that size.
//!
//! This file must not decide where a request goes; it only says whether one is paid for.

use std::time::{Duration, Instant};

/// Lookup requests a peer may send us at once ...
pub const FIND_BURST: u32 = 8192;
/// ... and per second after that.
pub const FIND_RATE: u32 = 1024;
/// Our own lookups running at once.
pub const MAX_LOOKUPS: usize = 256;

/// A token bucket: `FIND_BURST` tokens, one more every 1/`FIND_RATE` s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FindBudget {
    tokens: u32,
    /// When the next token is due (meaningful while not full).
    next: Instant,
}

impl FindBudget {
    pub(crate) fn new(now: Instant) -> Self {
        FindBudget {
            tokens: FIND_BURST,
            next: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let every = Duration::from_secs(1) / FIND_RATE;
        if self.tokens >= FIND_BURST {
            self.next = now + every;
        } else if now >= self.next {
            let due = (now - self.next).as_nanos() / every.as_nanos() + 1;
            let add = due.min(u128::from(FIND_BURST)) as u32;
            self.tokens = (self.tokens + add).min(FIND_BURST);
            self.next = if self.tokens >= FIND_BURST {
                now + every
            } else {
                self.next + every * add
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_serves_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = FindBudget::new(t0);
        let served = (0..10_000).filter(|_| b.take(t0)).count();
        assert_eq!(served, FIND_BURST as usize);
        // Ten seconds of asking 1,000 times every 10 ms.
        let mut served = 0;
        for step in 1..=1000u32 {
            let now = t0 + Duration::from_millis(10) * step;
            served += (0..1000).filter(|_| b.take(now)).count();
        }
        let rate = FIND_RATE as usize * 10;
        assert!(served <= rate + 1 && served + 2 >= rate, "{served} served");
        // Idle: full again, never above the burst.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            (0..10_000).filter(|_| b.take(later)).count(),
            FIND_BURST as usize
        );
    }
}
