//! Who may make this node do Diffie-Hellman work, and how often.
//!
//! A handshake init costs the responder two DH operations and a pending slot, and anyone can
//! send one (it is unauthenticated by design, and source addresses can be spoofed). Inits are
//! therefore admitted through token buckets:
//!
//! * from a **known** source (the address of a configured peer, or the current endpoint of a
//!   link), through a bucket of that source alone, so that a flood from elsewhere never keeps a
//!   known peer (say, one that just restarted) from linking again;
//! * from anywhere else, through a bucket per source IP address **and** a global bucket, so
//!   that one address cannot take the whole budget and all addresses together cannot take the
//!   CPU;
//! * from a source that **proved its address** with a cookie ([`super::cookie`]), or came over
//!   a transport whose own handshake did (TCP, QUIC), through a bucket of that IP address and a
//!   global bucket of proven sources: spoofed inits never reach these, so a flood from forged
//!   addresses cannot spend them.
//!
//! When the bucket an init needs is empty, `handshake.rs` answers with a cookie reply instead
//! of the handshake: the initiator proves its address and is then served from the proven
//! budgets. That also covers an attacker who spoofs a known peer's exact address and port
//! (it can empty that peer's bucket, but not the peer's proven one).

use crate::toolkit::bucket::{Bucket, Rate};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Rates (per second) and bursts of the three kinds of bucket.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// All unknown sources together.
    pub global_rate: f64,
    /// See `global_rate`.
    pub global_burst: f64,
    /// One unknown source IP address.
    pub per_ip_rate: f64,
    /// See `per_ip_rate`.
    pub per_ip_burst: f64,
    /// One known source address.
    pub known_rate: f64,
    /// See `known_rate`.
    pub known_burst: f64,
    /// One IP address that proved itself (cookie, or a TCP/QUIC connection).
    pub proven_rate: f64,
    /// See `proven_rate`.
    pub proven_burst: f64,
    /// All proven sources together.
    pub proven_global_rate: f64,
    /// See `proven_global_rate`.
    pub proven_global_burst: f64,
    /// Cookie replies to inits whose cookie MAC is present but wrong (all sources together):
    /// a cookie gone stale is rare for a real initiator, and a made-up one costs us a MAC
    /// check only.
    pub bad_mac_reply_rate: f64,
    /// See `bad_mac_reply_rate`.
    pub bad_mac_reply_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            global_rate: 128.0,
            global_burst: 256.0,
            per_ip_rate: 4.0,
            per_ip_burst: 16.0,
            known_rate: 8.0,
            known_burst: 16.0,
            proven_rate: 4.0,
            proven_burst: 16.0,
            proven_global_rate: 256.0,
            proven_global_burst: 512.0,
            bad_mac_reply_rate: 64.0,
            bad_mac_reply_burst: 64.0,
        }
    }
}

/// Most per-address buckets kept; beyond, the table starts over (a flood from many spoofed
/// addresses then meets only the global bucket, which is what bounds the work anyway).
const MAX_TRACKED: usize = 4096;

/// The admission state for handshake inits.
#[derive(Debug)]
pub struct InitLimiter {
    limits: Limits,
    global: Bucket,
    per_ip: HashMap<IpAddr, Bucket>,
    known: HashMap<SocketAddr, Bucket>,
    proven_global: Bucket,
    proven: HashMap<IpAddr, Bucket>,
    bad_mac_replies: Bucket,
}

impl InitLimiter {
    /// Full buckets.
    pub fn new(limits: Limits, now: Instant) -> Self {
        InitLimiter {
            global: Bucket::full(limits.global_burst, now),
            limits,
            per_ip: HashMap::new(),
            known: HashMap::new(),
            proven_global: Bucket::full(limits.proven_global_burst, now),
            proven: HashMap::new(),
            bad_mac_replies: Bucket::full(limits.bad_mac_reply_burst, now),
        }
    }

    /// Whether an init whose cookie MAC is wrong may get a cookie reply now.
    pub fn answer_bad_mac(&mut self, now: Instant) -> bool {
        let l = self.limits;
        self.bad_mac_replies
            .take(now, Rate::new(l.bad_mac_reply_rate, l.bad_mac_reply_burst))
    }

    /// Whether an init from `from`, which proved its address, may be answered now.
    pub fn admit_proven(&mut self, from: SocketAddr, now: Instant) -> bool {
        let l = self.limits;
        if self.proven.len() >= MAX_TRACKED {
            // Only real addresses get here: starting over is fair to all of them.
            self.proven.clear();
        }
        let ip = from.ip().to_canonical();
        self.proven
            .entry(ip)
            .or_insert_with(|| Bucket::full(l.proven_burst, now))
            .take(now, Rate::new(l.proven_rate, l.proven_burst))
            && self
                .proven_global
                .take(now, Rate::new(l.proven_global_rate, l.proven_global_burst))
    }

    /// Whether an init from `from` may be answered now. `known` says whether `from` is a
    /// configured peer's address or a link's endpoint.
    pub fn admit(&mut self, from: SocketAddr, known: bool, now: Instant) -> bool {
        let l = self.limits;
        if known {
            if self.known.len() >= MAX_TRACKED {
                self.known.clear();
            }
            return self
                .known
                .entry(from)
                .or_insert_with(|| Bucket::full(l.known_burst, now))
                .take(now, Rate::new(l.known_rate, l.known_burst));
        }
        let global = Rate::new(l.global_rate, l.global_burst);
        if !self.global.has(now, global) {
            // Spent (a flood): no need to look up, or make room for, the address.
            return false;
        }
        if self.per_ip.len() >= MAX_TRACKED {
            self.per_ip.clear();
        }
        let ip = from.ip().to_canonical();
        let per_ip = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| Bucket::full(l.per_ip_burst, now));
        // Both must have a token; the per-address one is asked first so that one noisy
        // address does not drain the global bucket.
        per_ip.take(now, Rate::new(l.per_ip_rate, l.per_ip_burst)) && self.global.take(now, global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn one_address_cannot_take_the_global_budget() {
        let now = Instant::now();
        let mut l = InitLimiter::new(Limits::default(), now);
        let admitted = (0..1000)
            .filter(|_| l.admit(addr("192.0.2.1:1"), false, now))
            .count();
        assert_eq!(admitted, 16);
        assert!(
            l.admit(addr("192.0.2.2:1"), false, now),
            "another address is still served"
        );
    }

    #[test]
    fn a_flood_from_many_addresses_spares_known_peers() {
        let now = Instant::now();
        let mut l = InitLimiter::new(Limits::default(), now);
        for i in 0..100_000u32 {
            let a = SocketAddr::new(IpAddr::from(i.to_be_bytes()), 1);
            l.admit(a, false, now);
        }
        assert!(
            !l.admit(addr("198.51.100.1:1"), false, now),
            "global budget is spent"
        );
        assert!(
            l.admit(addr("10.0.0.2:7820"), true, now),
            "a known peer still gets in"
        );
        // And the budget comes back with time.
        let later = now + Duration::from_secs(1);
        assert!(l.admit(addr("198.51.100.1:1"), false, later));
    }

    #[test]
    fn the_proven_budget_is_apart_and_per_address() {
        let now = Instant::now();
        let mut l = InitLimiter::new(Limits::default(), now);
        for i in 0..100_000u32 {
            let a = SocketAddr::new(IpAddr::from(i.to_be_bytes()), 1);
            l.admit(a, false, now);
            l.admit(a, true, now);
        }
        let admitted = (0..100)
            .filter(|_| l.admit_proven(addr("198.51.100.1:1"), now))
            .count();
        assert_eq!(admitted, 16, "one address gets its own burst, no more");
        assert!(l.admit_proven(addr("198.51.100.2:1"), now));
    }
}
