//! Lookup requests are served within budgets: per peer, and for our own lookups.
//!
//! * **Per peer, guaranteed.** Every lookup request (`FIND`, and the ring's and names' requests)
//!   that arrives over a link, to answer or to forward, is paid from that link's own bucket
//!   first: [`FIND_BURST`] requests at once, refilled at [`FIND_RATE`] per second. The link is
//!   the only thing a request carries that is authenticated (keys are cheap and a request names
//!   any source it likes), so every peer's share is its own, whatever the others do.
//! * **Lent from a pool.** Beyond its own share, a link borrows from the node's pool, which
//!   grows with the number of links ([`POOL_BURST_PER_LINK`], [`POOL_RATE_PER_LINK`]) up to a
//!   cap. A link's debt is repaid at `pool rate / BORROW_DIV` and may never exceed
//!   `pool burst / BORROW_DIV`: the idle capacity of a hub's thousand leaf links serves its busy
//!   hub-to-hub links, yet one abusive link gets at most its share plus a quarter of the pool,
//!   and while at most three links borrow to their limit, a quarter of the pool is left for the
//!   others. A request neither can pay for is dropped (counted as `rate_limited`); its lookup
//!   asks someone else or times out.
//! * **Our own.** At most [`MAX_LOOKUPS`] lookups run at once; a resolve beyond that ends at
//!   once as not found (counted in `lookups_refused`), so a local program asking for many
//!   addresses cannot grow the lookup table without bound.
//!
//! A link's ceiling over `t` seconds is `FIND_BURST + FIND_RATE·t + (pool burst + pool rate·t)
//! / BORROW_DIV`. The budgets live in the peer table and the router: bounded by them.
//!
//! This file must not decide where a request goes; it only says whether one is paid for.

use std::time::Instant;

/// Lookup requests a peer may send us at once from its own share ...
pub const FIND_BURST: u32 = 8192;
/// ... and per second after that.
pub const FIND_RATE: u32 = 1024;
/// The pool grows by this burst ...
pub const POOL_BURST_PER_LINK: u64 = 8192;
/// ... and this rate per link ...
pub const POOL_RATE_PER_LINK: u64 = 1024;
/// ... up to these (a hub's pool).
pub const POOL_MAX_BURST: u64 = 1 << 19;
/// The pool's largest rate per second.
pub const POOL_MAX_RATE: u64 = 1 << 16;
/// A link may owe at most 1/`BORROW_DIV` of the pool's burst, and repays at 1/`BORROW_DIV` of
/// its rate.
pub const BORROW_DIV: u64 = 4;
/// Our own lookups running at once.
pub const MAX_LOOKUPS: usize = 256;

const NANO: u128 = 1_000_000_000;

/// A token bucket with any burst and rate, refilled continuously (in billionths of a token).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    level: u128,
    burst: u64,
    rate: u64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(burst: u64, rate: u64, now: Instant) -> Self {
        Bucket {
            level: u128::from(burst) * NANO,
            burst,
            rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let ns = now.saturating_duration_since(self.at).as_nanos();
        self.at = self.at.max(now);
        self.level = (self.level + ns * u128::from(self.rate)).min(u128::from(self.burst) * NANO);
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.level < NANO {
            return false;
        }
        self.level -= NANO;
        true
    }

    /// New size: a larger burst comes full (a new link brings its part of the pool); what it
    /// holds never exceeds the new burst.
    fn resize(&mut self, burst: u64, rate: u64, now: Instant) {
        self.refill(now);
        self.level += u128::from(burst.saturating_sub(self.burst)) * NANO;
        self.burst = burst;
        self.rate = rate;
        self.level = self.level.min(u128::from(burst) * NANO);
    }
}

/// One link's budget: its own bucket and what it owes the pool. Both fit 64 bits (at most
/// [`FIND_BURST`] and a quarter of [`POOL_MAX_BURST`] requests, in billionths), and the
/// own bucket's burst and rate are the constants: 48 bytes where a [`Bucket`] and a 128-bit
/// debt took 80 (every peer of every simulated node has one). Computed in 128 bits as
/// before, so the same decisions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FindBudget {
    /// The link's own share, in billionths of a request, as of `own_at`.
    level: u64,
    own_at: Instant,
    /// Owed to the pool, in billionths of a request, as of `at`.
    owed: u64,
    at: Instant,
}

impl FindBudget {
    pub(crate) fn new(now: Instant) -> Self {
        FindBudget {
            level: u64::from(FIND_BURST) * NANO as u64,
            own_at: now,
            owed: 0,
            at: now,
        }
    }

    /// Takes one request from the link's own share only (no pool): a [`Bucket`] of burst
    /// [`FIND_BURST`] and rate [`FIND_RATE`].
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let ns = now.saturating_duration_since(self.own_at).as_nanos();
        self.own_at = self.own_at.max(now);
        let level = (u128::from(self.level) + ns * u128::from(FIND_RATE))
            .min(u128::from(FIND_BURST) * NANO);
        if level < NANO {
            self.level = level as u64;
            return false;
        }
        self.level = (level - NANO) as u64;
        true
    }
}

/// The node's pool, lent to its links.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FindPool {
    pool: Bucket,
}

impl FindPool {
    pub(crate) fn new(now: Instant) -> Self {
        FindPool {
            pool: Bucket::new(0, 0, now),
        }
    }

    /// Sizes the pool for this many links (on a link up or down).
    pub(crate) fn resize(&mut self, links: usize, now: Instant) {
        let l = links as u64;
        self.pool.resize(
            (POOL_BURST_PER_LINK * l).min(POOL_MAX_BURST),
            (POOL_RATE_PER_LINK * l).min(POOL_MAX_RATE),
            now,
        );
    }

    /// One request arriving over the link whose budget is `b`: true if paid for.
    pub(crate) fn take(&mut self, b: &mut FindBudget, now: Instant) -> bool {
        if b.take(now) {
            return true;
        }
        // Repay: the debt decays at a quarter of the pool's rate.
        let ns = now.saturating_duration_since(b.at).as_nanos();
        b.at = b.at.max(now);
        let repaid = ns * u128::from(self.pool.rate / BORROW_DIV);
        let owed = u128::from(b.owed).saturating_sub(repaid);
        // (Never above a quarter of the pool's burst, which fits 64 bits: see `FindBudget`.)
        b.owed = owed as u64;
        if owed + NANO > u128::from(self.pool.burst / BORROW_DIV) * NANO {
            return false;
        }
        if !self.pool.take(now) {
            return false;
        }
        b.owed = (owed + NANO) as u64;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_links_own_share_serves_the_burst_then_the_rate() {
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

    /// Two links; one floods. The other's own share is untouched, the flooder borrows at most
    /// a quarter of the pool, and the pool lends to an honest burst beyond a link's share.
    #[test]
    fn the_pool_lends_within_bounds() {
        let t0 = Instant::now();
        let mut pool = FindPool::new(t0);
        pool.resize(2, t0);
        let (mut flood, mut honest) = (FindBudget::new(t0), FindBudget::new(t0));
        let served = (0..100_000).filter(|_| pool.take(&mut flood, t0)).count() as u64;
        let pool_burst = POOL_BURST_PER_LINK * 2;
        assert_eq!(served, u64::from(FIND_BURST) + pool_burst / BORROW_DIV);
        // The honest link still has its own share and can borrow its own quarter.
        let honest_served = (0..100_000).filter(|_| pool.take(&mut honest, t0)).count() as u64;
        assert_eq!(
            honest_served,
            u64::from(FIND_BURST) + pool_burst / BORROW_DIV
        );
        // Ten seconds of flooding: own rate plus the debt's repayment, no more.
        let mut served = 0u64;
        for step in 1..=1000u32 {
            let now = t0 + Duration::from_millis(10) * step;
            served += (0..1000).filter(|_| pool.take(&mut flood, now)).count() as u64;
        }
        let rate = u64::from(FIND_RATE) + POOL_RATE_PER_LINK * 2 / BORROW_DIV;
        assert!(served <= rate * 10 + 2, "{served} served in 10 s");
        // After an hour idle: full, never above the caps; shrinking never leaves excess.
        let later = t0 + Duration::from_secs(3600);
        pool.resize(1, later);
        let mut fresh = FindBudget::new(later);
        let n = (0..100_000)
            .filter(|_| pool.take(&mut fresh, later))
            .count() as u64;
        assert_eq!(n, u64::from(FIND_BURST) + POOL_BURST_PER_LINK / BORROW_DIV);
    }

    #[test]
    fn a_hubs_pool_is_capped() {
        let t0 = Instant::now();
        let mut pool = FindPool::new(t0);
        pool.resize(100_000, t0);
        let mut b = FindBudget::new(t0);
        let n = (0..1_000_000).filter(|_| pool.take(&mut b, t0)).count() as u64;
        assert_eq!(n, u64::from(FIND_BURST) + POOL_MAX_BURST / BORROW_DIV);
    }
}
