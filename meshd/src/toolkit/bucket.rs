//! A token bucket driven by the caller's `now`: `burst` tokens at most, refilled at `rate` a
//! second, one spent per admitted event. Used for handshake inits (link and end-to-end) and LAN
//! announcements.

use std::time::Instant;

/// A rate (tokens a second) and a burst (most tokens held).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added a second.
    pub per_sec: f64,
    /// Most tokens held; a new bucket starts full.
    pub burst: f64,
}

impl Rate {
    /// `per_sec` a second, bursts of `burst`.
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Rate { per_sec, burst }
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens.
    pub fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Adds the tokens earned since the last call, up to the burst.
    fn refill(&mut self, now: Instant, rate: Rate) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
    }

    /// Refills for the time since the last call, then spends a token if there is one.
    pub fn take(&mut self, now: Instant, rate: Rate) -> bool {
        self.take_up_to(now, rate, 1) == 1
    }

    /// Refills for the time since the last call, then spends as many whole tokens as there
    /// are, up to `most`; returns how many.
    pub fn take_up_to(&mut self, now: Instant, rate: Rate, most: usize) -> usize {
        self.refill(now, rate);
        let n = (self.tokens.floor().max(0.0) as usize).min(most);
        self.tokens -= n as f64;
        n
    }

    /// Refills for the time since the last call; whether a token is there (none is spent).
    pub fn has(&mut self, now: Instant, rate: Rate) -> bool {
        self.refill(now, rate);
        self.tokens >= 1.0
    }

    /// When it was last asked (to evict the stalest of a table).
    pub fn last_used(&self) -> Instant {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let now = Instant::now();
        let rate = Rate::new(2.0, 4.0);
        let mut b = Bucket::full(rate.burst, now);
        assert_eq!((0..10).filter(|_| b.take(now, rate)).count(), 4);
        let later = now + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| b.take(later, rate)).count(), 2);
        // Never more than the burst, however long it rested.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(much_later, rate)).count(), 4);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let now = Instant::now() + Duration::from_secs(10);
        let rate = Rate::new(1.0, 1.0);
        let mut b = Bucket::full(rate.burst, now);
        assert!(b.take(now, rate));
        assert!(!b.take(now - Duration::from_secs(5), rate));
    }
}
