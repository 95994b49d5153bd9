//! Return-routability cookies for handshake inits, after WireGuard's: proof that an init's
//! sender receives at the address it sends from, for the price of one round trip and no
//! Diffie-Hellman.
//!
//! ```text
//!   initiator                                        responder (budget for unknown sources spent)
//!   Init (no cookie MAC)              ───────────►   cookie = MAC(secret, source address, port)
//!                   ◄───────────  CookieReply (index, echo of the init's ephemeral, cookie)
//!   stores the cookie for that endpoint, and at once
//!   Init (MAC(cookie, init head))     ───────────►   MAC checks out: the address is real;
//!                                                    served from that address's own budget
//! ```
//!
//! * The **secret** rotates every [`ROTATE_EVERY`]; a cookie made under the previous one is
//!   still accepted, so a cookie is good for at least that long. Each secret is a MAC, keyed
//!   by the node's Noise private key, of numbers from the core's seeded generator: someone who
//!   learnt the generator's state (its numbers travel as session indexes) still cannot
//!   compute cookies for addresses it does not receive at.
//! * A **spoofed** init costs the responder one keyed hash and a reply smaller than the init
//!   (sent to whoever owns the spoofed address), never a Diffie-Hellman or a pending slot, and
//!   takes nothing from the budget of anyone who proved an address.
//! * A **forged** cookie reply needs the init's index and ephemeral key, which only the path
//!   sees; even then, all it does is make the initiator store a wrong cookie and send its init
//!   again (at most [`MAX_COOKIE_RESENDS`] times per init): it never ends a handshake or a
//!   link.
//!
//! This file owns the MACs, the responder's secrets and the initiator's store of cookies. It
//! must not decide when a cookie is needed (that is `handshake.rs`, with the budgets of
//! [`super::ratelimit`]); it reads no clock and sends nothing.

use crate::wire::{COOKIE_LEN, INIT_MAC_AT};
use blake2::Blake2sMac;
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the responder's cookie secret changes.
pub const ROTATE_EVERY: Duration = Duration::from_secs(120);
/// How long an initiator uses a cookie it received: less than [`ROTATE_EVERY`], so that the
/// responder always still accepts it.
pub const COOKIE_FRESH_FOR: Duration = Duration::from_secs(110);
/// Most cookies an initiator keeps (one per endpoint it dials); the oldest goes beyond.
pub const MAX_STORED_COOKIES: usize = 256;
/// Most times one init is sent again because of a cookie reply.
pub const MAX_COOKIE_RESENDS: u8 = 2;

/// A cookie or a cookie MAC.
pub type Tag = [u8; COOKIE_LEN];

type Mac16 = Blake2sMac<U16>;

fn mac16(key: &[u8], parts: &[&[u8]]) -> Tag {
    // Keys are 16 or 32 bytes, which BLAKE2s always takes.
    let Ok(mut m) = <Mac16 as KeyInit>::new_from_slice(key) else {
        return [0; COOKIE_LEN];
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// The MAC an init carries: keyed by the cookie, over the init's first [`INIT_MAC_AT`] bytes.
pub fn init_mac(cookie: &Tag, head: &[u8]) -> Tag {
    mac16(cookie, &[&head[..head.len().min(INIT_MAC_AT)]])
}

fn address_bytes(addr: SocketAddr) -> [u8; 18] {
    let ip = match addr.ip().to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    let mut b = [0u8; 18];
    b[..16].copy_from_slice(&ip.octets());
    b[16..].copy_from_slice(&addr.port().to_be_bytes());
    b
}

/// The responder's side: the current and the previous secret.
pub struct Secrets {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    made: Instant,
    /// How many secrets were made (so that no two are derived alike).
    count: u64,
}

impl Secrets {
    /// A first secret from `fresh` (numbers of the core's generator) and `private` (the
    /// node's Noise private key).
    pub fn new(private: &[u8; 32], fresh: [u64; 2], now: Instant) -> Secrets {
        Secrets {
            current: derive(private, fresh, 0),
            previous: None,
            made: now,
            count: 1,
        }
    }

    /// Whether the secret is due to change; then call [`Secrets::rotate`].
    pub fn due(&self, now: Instant) -> bool {
        now >= self.made + ROTATE_EVERY
    }

    /// Replaces the secret; the old one stays valid until the next rotation. After a long
    /// quiet time (two periods), the old one is not kept either.
    pub fn rotate(&mut self, private: &[u8; 32], fresh: [u64; 2], now: Instant) {
        let stale = now >= self.made + 2 * ROTATE_EVERY;
        let new = derive(private, fresh, self.count);
        self.previous = (!stale).then_some(self.current);
        self.current = new;
        self.made = now;
        self.count += 1;
    }

    /// The cookie for a sender at `from`.
    pub fn cookie(&self, from: SocketAddr) -> Tag {
        mac16(&self.current, &[&address_bytes(from)])
    }

    /// Whether `mac` is the MAC of `head` under a cookie of ours for `from` (current or
    /// previous secret). An all-zero MAC (none) is never valid.
    pub fn verify(&self, from: SocketAddr, head: &[u8], mac: &[u8]) -> bool {
        if mac.len() != COOKIE_LEN || mac.iter().all(|&b| b == 0) {
            return false;
        }
        let a = address_bytes(from);
        [Some(self.current), self.previous]
            .into_iter()
            .flatten()
            .any(|secret| {
                let cookie = mac16(&secret, &[&a]);
                // Constant-time comparison (the digest crate's).
                <Mac16 as KeyInit>::new_from_slice(&cookie).is_ok_and(|mut m| {
                    Mac::update(&mut m, &head[..head.len().min(INIT_MAC_AT)]);
                    m.verify_slice(mac).is_ok()
                })
            })
    }
}

fn derive(private: &[u8; 32], fresh: [u64; 2], count: u64) -> [u8; 32] {
    let a = mac16(
        private,
        &[
            b"planetary-lan cookie secret a",
            &fresh[0].to_be_bytes(),
            &fresh[1].to_be_bytes(),
            &count.to_be_bytes(),
        ],
    );
    let b = mac16(
        private,
        &[
            b"planetary-lan cookie secret b",
            &fresh[0].to_be_bytes(),
            &fresh[1].to_be_bytes(),
            &count.to_be_bytes(),
        ],
    );
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&b);
    out
}

/// The initiator's side: cookies received, by the endpoint we dial.
#[derive(Default)]
pub struct Jar {
    cookies: HashMap<crate::uri::Endpoint, (Tag, Instant)>,
}

impl Jar {
    /// Keeps `cookie` for inits to `to`.
    pub fn store(&mut self, to: crate::uri::Endpoint, cookie: Tag, now: Instant) {
        if self.cookies.len() >= MAX_STORED_COOKIES && !self.cookies.contains_key(&to) {
            self.cookies
                .retain(|_, (_, at)| now < *at + COOKIE_FRESH_FOR);
            if self.cookies.len() >= MAX_STORED_COOKIES {
                let oldest = self
                    .cookies
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(e, _)| *e);
                if let Some(e) = oldest {
                    self.cookies.remove(&e);
                }
            }
        }
        self.cookies.insert(to, (cookie, now));
    }

    /// A fresh cookie for `to`, if we hold one.
    pub fn get(&self, to: crate::uri::Endpoint, now: Instant) -> Option<Tag> {
        self.cookies
            .get(&to)
            .filter(|(_, at)| now < *at + COOKIE_FRESH_FOR)
            .map(|(c, _)| *c)
    }

    /// How many cookies are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cookies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Endpoint;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn a_cookie_proves_one_address_and_port_for_two_periods() {
        let now = Instant::now();
        let key = [7u8; 32];
        let mut s = Secrets::new(&key, [1, 2], now);
        let head = [9u8; INIT_MAC_AT];
        let a = addr("192.0.2.1:7820");
        let mac = init_mac(&s.cookie(a), &head);
        assert!(s.verify(a, &head, &mac));
        // Another port, another address, another init head, no MAC: no.
        assert!(!s.verify(addr("192.0.2.1:7821"), &head, &mac));
        assert!(!s.verify(addr("192.0.2.2:7820"), &head, &mac));
        assert!(!s.verify(a, &[8u8; INIT_MAC_AT], &mac));
        assert!(!s.verify(a, &head, &[0; COOKIE_LEN]));
        // An IPv4 address is the same as its IPv6-mapped form.
        assert!(s.verify(addr("[::ffff:192.0.2.1]:7820"), &head, &mac));
        // Still good after one rotation, not after two.
        let t1 = now + ROTATE_EVERY;
        assert!(s.due(t1));
        s.rotate(&key, [3, 4], t1);
        assert!(s.verify(a, &head, &mac));
        s.rotate(&key, [5, 6], t1 + ROTATE_EVERY);
        assert!(!s.verify(a, &head, &mac));
    }

    #[test]
    fn secrets_depend_on_the_private_key() {
        let now = Instant::now();
        let a = addr("192.0.2.1:1");
        let s1 = Secrets::new(&[1; 32], [1, 2], now);
        let s2 = Secrets::new(&[2; 32], [1, 2], now);
        assert_ne!(s1.cookie(a), s2.cookie(a));
    }

    #[test]
    fn the_jar_is_bounded_and_forgets_stale_cookies() {
        let now = Instant::now();
        let mut j = Jar::default();
        for i in 0..(MAX_STORED_COOKIES as u16 + 50) {
            j.store(
                Endpoint::udp(addr(&format!("10.0.0.1:{}", 1000 + i))),
                [1; 16],
                now,
            );
        }
        assert_eq!(j.len(), MAX_STORED_COOKIES);
        let e = Endpoint::udp(addr("10.0.0.9:1"));
        j.store(e, [2; 16], now);
        assert_eq!(j.get(e, now), Some([2; 16]));
        assert_eq!(j.get(e, now + COOKIE_FRESH_FOR), None);
    }
}
