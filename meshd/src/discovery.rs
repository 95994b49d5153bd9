//! LAN discovery, sans-IO: signed announcements a node multicasts on its links' IPv6
//! link-local scope, and the checks a received one must pass before the node dials it.
//!
//! The daemon's socket and interfaces are `daemon/lan.rs`'s.
//!
//! ```text
//!   announcement (110 bytes) = "PLD1" | key (32) | port (u16) | seq (u64) | ed25519 signature (64)
//!   signature over: DOMAIN | "PLD1" | key | port | seq
//! ```
//!
//! **What an announcement proves.** Only that the holder of `key` said "I listen on `port`"
//! at `seq` (milliseconds of its clock, increasing). It does not bind the sender's address: an
//! eavesdropper on the LAN may replay it from its own address. That gains it nothing. The node
//! dials the announced endpoint with the key *pinned*, and the Noise handshake fails unless
//! the other side holds the key's secret. So a node cannot advertise someone else's key and be
//! linked under it. A replay of an older `seq` than one already seen from that key is dropped
//! outright.
//!
//! **What it costs a receiver.** Checking a signature is the only expensive step, and anyone
//! on the LAN can send announcements from any link-local address with any key. So:
//!
//! 1. the cheap checks come first: length, magic, our own key, and staleness (a `seq` not
//!    newer than the last one accepted from that key); none of them costs a token;
//! 2. a **recognised** neighbour (its key verified in the last [`RECOGNISED_FOR`]) is verified
//!    from a budget of its own: random spoofed announcements never touch it, so a neighbour
//!    that restarts is heard again at once;
//! 3. a **new** key is verified from its interface's budget (per source address, then per
//!    interface: a flood on one interface spends nothing of another's). Once that is spent
//!    (a flood), only keys already **sighted** in the last two [`SIGHTING_WINDOW`]s are
//!    verified, and only when they come with a higher `seq` than when sighted, from a second
//!    budget of the interface: a real neighbour announces every [`INTERVAL`] under the same
//!    key with a growing `seq`, while a flood of made-up keys names each key once (or replays
//!    the same announcements), so the second announcement of a real neighbour gets through.
//!
//! The limits of this: a spoofer who names one recognised key can spend that key's budget
//! (delaying only that neighbour's re-announcements, never its link, which is already dialed);
//! one who sends each made-up key twice with a growing `seq` competes for the sighted budget;
//! and beyond [`MAX_SIGHTINGS`] new keys per window (a flood of more than about 30,000 made-up
//! keys a second), later keys are not remembered until the next window, so a new neighbour
//! may need several windows to be heard.

use crate::identity::{Identity, PublicKey};
use crate::toolkit::bucket::{Bucket, Rate};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The IPv6 link-local multicast group announcements go to (`ff02::706c:616e`, "plan").
pub const GROUP: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x706c, 0x616e);
/// The UDP port announcements go to.
pub const PORT: u16 = 7822;
/// The length of an announcement.
pub const LEN: usize = 4 + 32 + 2 + 8 + 64;
const MAGIC: &[u8; 4] = crate::codes::discovery::MAGIC;
const DOMAIN: &[u8] = b"planetary-lan discovery v1\0";

/// A checked announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing node.
    pub key: PublicKey,
    /// The port it listens on (at the address the announcement came from).
    pub port: u16,
    /// Its sequence number (milliseconds of its clock).
    pub seq: u64,
}

fn signed_part(key: &PublicKey, port: u16, seq: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 46);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(&key.0);
    m.extend_from_slice(&port.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m
}

/// Makes the announcement of `identity` listening on `port`.
pub fn announce(identity: &Identity, port: u16, seq: u64) -> [u8; LEN] {
    let key = identity.public_key();
    let sig = identity.signing_key().sign(&signed_part(&key, port, seq));
    let mut out = [0u8; LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..36].copy_from_slice(&key.0);
    out[36..38].copy_from_slice(&port.to_be_bytes());
    out[38..46].copy_from_slice(&seq.to_be_bytes());
    out[46..].copy_from_slice(&sig.to_bytes());
    out
}

/// Why an announcement was not accepted (counted, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Over the rate of its source, or of all sources.
    RateLimited,
    /// Not an announcement (length, magic).
    Malformed,
    /// Our own.
    Own,
    /// The signature does not verify for the key it names.
    BadSignature,
    /// Not newer than one already accepted from that key.
    Stale,
}

/// Most sources, keys and interfaces remembered for rate limiting (each table starts over, or
/// forgets its stalest, beyond).
const MAX_SOURCES: usize = 1024;
/// Per source address, announcements of new keys: one a second, bursts of 4.
const SOURCE_RATE: Rate = Rate::new(1.0, 4.0);
/// Per interface, announcements of new keys verified: 20 a second, bursts of 40.
const NEW_RATE: Rate = Rate::new(20.0, 40.0);
/// Per interface, once [`NEW_RATE`] is spent, announcements of keys sighted before.
const SIGHTED_RATE: Rate = Rate::new(20.0, 40.0);
/// Per recognised key (whatever the interface): two a second, bursts of 4.
const RECOGNISED_RATE: Rate = Rate::new(2.0, 4.0);
/// Most interfaces with a budget of their own.
const MAX_INTERFACES: usize = 64;
/// A key verified this recently is a recognised neighbour's.
pub const RECOGNISED_FOR: Duration = Duration::from_secs(600);
/// Keys named in announcements are remembered (unverified) for two windows of this length:
/// longer than [`INTERVAL`], so that a neighbour's next announcement finds its last one.
pub const SIGHTING_WINDOW: Duration = Duration::from_secs(2);
/// Most keys remembered per sighting window (8 bytes each).
pub const MAX_SIGHTINGS: usize = 65_536;

/// An announcement older than the last one from its key is accepted again once the last was
/// accepted this long ago.
pub const RESET_AFTER: Duration = Duration::from_secs(30);

/// Keys named recently, verified or not, with the highest `seq` each was named with: the
/// current window and the one before.
struct Sightings {
    current: HashMap<u64, u64>,
    previous: HashMap<u64, u64>,
    since: Instant,
}

impl Sightings {
    /// Whether `key` was named in this window or the last with a lower `seq` (a neighbour
    /// announcing again; a replayed announcement does not count); notes it in this one.
    fn seen(&mut self, key: &PublicKey, seq: u64, now: Instant) -> bool {
        if now >= self.since + SIGHTING_WINDOW {
            let quiet = now >= self.since + 2 * SIGHTING_WINDOW;
            self.previous = std::mem::take(&mut self.current);
            if quiet {
                self.previous.clear();
            }
            self.since = now;
        }
        let mut f = [0u8; 8];
        f.copy_from_slice(&key.0[..8]);
        let f = u64::from_be_bytes(f);
        let before = [self.current.get(&f), self.previous.get(&f)]
            .into_iter()
            .flatten()
            .min()
            .copied();
        if self.current.len() < MAX_SIGHTINGS || self.current.contains_key(&f) {
            let e = self.current.entry(f).or_insert(seq);
            *e = (*e).max(seq);
        }
        before.is_some_and(|b| b < seq)
    }
}

/// The verification budgets of one interface.
struct Interface {
    new: Bucket,
    sighted: Bucket,
}

/// The receiving side: checks announcements.
pub struct Receiver {
    own: PublicKey,
    sources: HashMap<IpAddr, Bucket>,
    interfaces: HashMap<u32, Interface>,
    /// Recognised keys: when last verified, and their own bucket.
    recognised: HashMap<PublicKey, (Instant, Bucket)>,
    sightings: Sightings,
    latest: HashMap<PublicKey, (u64, Instant)>,
}

impl Receiver {
    /// A receiver for the node with key `own`.
    pub fn new(own: PublicKey, now: Instant) -> Receiver {
        Receiver {
            own,
            sources: HashMap::new(),
            interfaces: HashMap::new(),
            recognised: HashMap::new(),
            sightings: Sightings {
                current: HashMap::new(),
                previous: HashMap::new(),
                since: now,
            },
            latest: HashMap::new(),
        }
    }

    /// Checks an announcement that came from `from` (its scope id names the interface).
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Announcement, Rejected> {
        // Cheap checks first, so that junk does not use up the budget of real neighbours.
        if bytes.len() != LEN || &bytes[..4] != MAGIC {
            return Err(Rejected::Malformed);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[4..36]);
        let key = PublicKey(key);
        if key == self.own {
            return Err(Rejected::Own);
        }
        let port = u16::from_be_bytes([bytes[36], bytes[37]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[38..46]);
        let seq = u64::from_be_bytes(seq);
        // Not newer than the last one, unless that was a while ago: a neighbour whose clock
        // stepped back (no RTC, NTP) is heard again after [`RESET_AFTER`]. Replaying an older
        // announcement gains nothing anyway: the key is pinned when dialing.
        if self
            .latest
            .get(&key)
            .is_some_and(|&(s, t)| seq <= s && now < t + RESET_AFTER)
        {
            return Err(Rejected::Stale);
        }
        if !self.admit(now, from, &key, seq) {
            return Err(Rejected::RateLimited);
        }
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&bytes[46..]);
        let ok = VerifyingKey::from_bytes(&key.0).is_ok_and(|vk| {
            vk.verify_strict(&signed_part(&key, port, seq), &Signature::from_bytes(&sig))
                .is_ok()
        });
        if !ok {
            return Err(Rejected::BadSignature);
        }
        if self.latest.len() >= MAX_SOURCES && !self.latest.contains_key(&key) {
            // Forget one at random-ish (the map's first): replay protection is best effort
            // beyond this many keys; the pinned handshake still protects the link.
            if let Some(k) = self.latest.keys().next().copied() {
                self.latest.remove(&k);
            }
        }
        self.latest.insert(key, (seq, now));
        self.recognise(key, now);
        Ok(Announcement { key, port, seq })
    }

    /// Whether the signature of an announcement naming `key` from `from` may be checked now.
    fn admit(&mut self, now: Instant, from: SocketAddr, key: &PublicKey, seq: u64) -> bool {
        if let Some((at, bucket)) = self.recognised.get_mut(key)
            && now < *at + RECOGNISED_FOR
        {
            return bucket.take(now, RECOGNISED_RATE);
        }
        let sighted = self.sightings.seen(key, seq, now);
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&from.ip()) {
            // Only a flood from many addresses fills it: starting over is fair to all.
            self.sources.clear();
        }
        if !self
            .sources
            .entry(from.ip())
            .or_insert(Bucket::full(SOURCE_RATE.burst, now))
            .take(now, SOURCE_RATE)
            && !sighted
        {
            return false;
        }
        let scope = match from {
            SocketAddr::V6(a) => a.scope_id(),
            SocketAddr::V4(_) => 0,
        };
        if self.interfaces.len() >= MAX_INTERFACES && !self.interfaces.contains_key(&scope) {
            self.interfaces.clear();
        }
        let i = self.interfaces.entry(scope).or_insert(Interface {
            new: Bucket::full(NEW_RATE.burst, now),
            sighted: Bucket::full(SIGHTED_RATE.burst, now),
        });
        // Under load (the budget for new keys spent), only keys sighted before are checked.
        i.new.take(now, NEW_RATE) || (sighted && i.sighted.take(now, SIGHTED_RATE))
    }

    /// Gives a key whose announcement verified a budget of its own.
    fn recognise(&mut self, key: PublicKey, now: Instant) {
        if self.recognised.len() >= MAX_SOURCES && !self.recognised.contains_key(&key) {
            self.recognised
                .retain(|_, (at, _)| now < *at + RECOGNISED_FOR);
            if self.recognised.len() >= MAX_SOURCES {
                let oldest = self
                    .recognised
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.recognised.remove(&k);
                }
            }
        }
        let e = self
            .recognised
            .entry(key)
            .or_insert((now, Bucket::full(RECOGNISED_RATE.burst, now)));
        e.0 = now;
    }
}

/// How often a node announces itself.
pub const INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn from(last: u8) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(std::net::Ipv6Addr::new(
                0xfe80,
                0,
                0,
                0,
                0,
                0,
                0,
                u16::from(last),
            )),
            PORT,
        )
    }

    #[test]
    fn a_signed_announcement_is_accepted_once() {
        let (a, b) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let now = Instant::now();
        let mut rx = Receiver::new(b.public_key(), now);
        let m = announce(&a, 7820, 1000);
        assert_eq!(
            rx.handle(now, from(1), &m),
            Ok(Announcement {
                key: a.public_key(),
                port: 7820,
                seq: 1000
            })
        );
        // The same again (a replay) and an older one are stale; a newer one passes.
        assert_eq!(rx.handle(now, from(1), &m), Err(Rejected::Stale));
        assert_eq!(
            rx.handle(now, from(1), &announce(&a, 7820, 999)),
            Err(Rejected::Stale)
        );
        assert!(rx.handle(now, from(1), &announce(&a, 7820, 1001)).is_ok());
        // A neighbour whose clock stepped back is heard again after a while.
        let later = now + RESET_AFTER + Duration::from_secs(1);
        assert!(rx.handle(later, from(1), &announce(&a, 7820, 5)).is_ok());
        // Our own is ignored.
        assert_eq!(
            rx.handle(now, from(2), &announce(&b, 7820, 5)),
            Err(Rejected::Own)
        );
    }

    #[test]
    fn another_nodes_key_cannot_be_announced() {
        let (a, b, mallory) = (
            Identity::from_seed(&[1; 32]),
            Identity::from_seed(&[2; 32]),
            Identity::from_seed(&[3; 32]),
        );
        let now = Instant::now();
        let mut rx = Receiver::new(b.public_key(), now);
        // Mallory names A's key and signs with her own.
        let mut forged = announce(&mallory, 7820, 1);
        forged[4..36].copy_from_slice(&a.public_key().0);
        assert_eq!(
            rx.handle(now, from(3), &forged),
            Err(Rejected::BadSignature)
        );
        // Or changes the port of A's genuine announcement.
        let mut moved = announce(&a, 7820, 2);
        moved[36] ^= 1;
        assert_eq!(rx.handle(now, from(3), &moved), Err(Rejected::BadSignature));
        // Anything else is malformed.
        assert_eq!(
            rx.handle(now, from(4), &moved[..50]),
            Err(Rejected::Malformed)
        );
        let mut magic = announce(&a, 7820, 3);
        magic[0] = b'X';
        assert_eq!(rx.handle(now, from(5), &magic), Err(Rejected::Malformed));
        // A's genuine one still passes after all that.
        assert!(rx.handle(now, from(1), &announce(&a, 7820, 4)).is_ok());
    }

    #[test]
    fn floods_are_cut_before_any_signature_is_checked() {
        let (a, b) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let now = Instant::now();
        let mut rx = Receiver::new(b.public_key(), now);
        let mut admitted = 0;
        for seq in 0..100 {
            if !matches!(
                rx.handle(now, from(9), &announce(&a, 1, seq)),
                Err(Rejected::RateLimited)
            ) {
                admitted += 1;
            }
        }
        assert_eq!(
            admitted, 5,
            "the first, then the recognised key's own burst of 4"
        );
        // Another key from another source is not held back by the first.
        let c = Identity::from_seed(&[3; 32]);
        assert!(rx.handle(now, from(10), &announce(&c, 1, 1000)).is_ok());
        // A second later the flooding key gets two more.
        let later = now + Duration::from_secs(1);
        assert!(rx.handle(later, from(9), &announce(&a, 1, 1001)).is_ok());
        assert!(rx.handle(later, from(9), &announce(&a, 1, 1002)).is_ok());
        assert_eq!(
            rx.handle(later, from(9), &announce(&a, 1, 1003)),
            Err(Rejected::RateLimited)
        );
    }

    fn on(scope: u32, last: u16) -> SocketAddr {
        SocketAddr::V6(std::net::SocketAddrV6::new(
            std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last),
            PORT,
            0,
            scope,
        ))
    }

    /// `n` announcements of made-up keys with junk signatures from made-up link-local
    /// addresses on interface `scope`.
    fn spoof(rx: &mut Receiver, now: Instant, scope: u32, first: u32, n: u32) {
        for i in first..first + n {
            let mut m = [0u8; LEN];
            m[..4].copy_from_slice(MAGIC);
            for (k, x) in m[4..].iter_mut().enumerate() {
                *x = (i.wrapping_mul(2_654_435_761) >> (k % 4 * 8)) as u8 ^ k as u8;
            }
            let from = on(scope, (i % 65_000) as u16 + 100);
            let _ = rx.handle(now, from, &m);
        }
    }

    /// Runs 10,000 spoofed announcements a second on interface 1 (and one announcement a
    /// second of `who` from `at`) until `who` is accepted; returns after how many seconds.
    fn heard_during_flood(
        rx: &mut Receiver,
        start: Instant,
        who: &Identity,
        at: SocketAddr,
    ) -> u64 {
        let mut next = 0;
        for ms in 0..5000u64 {
            let now = start + Duration::from_millis(ms);
            spoof(rx, now, 1, next, 10);
            next += 10;
            if ms % 1000 == 500 {
                let seq = 1_000_000 + ms;
                if rx.handle(now, at, &announce(who, 7820, seq)).is_ok() {
                    return ms / 1000;
                }
            }
        }
        panic!("never heard during the flood");
    }

    #[test]
    fn a_flood_of_made_up_keys_keeps_no_new_neighbour_out() {
        let (a, me) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let start = Instant::now();
        let mut rx = Receiver::new(me.public_key(), start);
        // The flood spends the budget for new keys first; the neighbour's second
        // announcement names a key sighted a second ago, and is checked.
        spoof(&mut rx, start, 1, 1_000_000, 1000);
        let took = heard_during_flood(&mut rx, start, &a, on(1, 1));
        assert_eq!(
            took, 1,
            "heard after {took} s, not at its second announcement"
        );
    }

    #[test]
    fn a_replayed_flood_is_not_taken_for_announcing_neighbours() {
        let (a, me) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let start = Instant::now();
        let mut rx = Receiver::new(me.public_key(), start);
        // The same 5,000 announcements over and over (from as many sources, so that the
        // per-source buckets do not hold them back): every key is named again and again, but
        // never with a newer seq, so none of them spends the budget for sighted keys.
        let mut heard = None;
        for ms in 0..3000u64 {
            let now = start + Duration::from_millis(ms);
            for i in 0..10 {
                spoof(&mut rx, now, 1, (ms as u32 * 10 + i) % 5000, 1);
            }
            if ms % 1000 == 500
                && heard.is_none()
                && rx.handle(now, on(1, 1), &announce(&a, 7820, ms)).is_ok()
            {
                heard = Some(ms / 1000);
            }
        }
        assert_eq!(heard, Some(1), "heard at its second announcement");
    }

    #[test]
    fn a_flood_on_one_interface_spends_nothing_of_another() {
        let (a, me) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let now = Instant::now();
        let mut rx = Receiver::new(me.public_key(), now);
        spoof(&mut rx, now, 1, 0, 5000);
        assert!(rx.handle(now, on(2, 1), &announce(&a, 7820, 1)).is_ok());
    }

    #[test]
    fn a_recognised_neighbour_that_restarts_is_heard_at_once_during_a_flood() {
        let (a, me) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let start = Instant::now();
        let mut rx = Receiver::new(me.public_key(), start);
        assert!(rx.handle(start, on(1, 1), &announce(&a, 7820, 5)).is_ok());
        spoof(&mut rx, start, 1, 0, 5000);
        // Restarted: a newer seq (its clock), at once.
        let took = heard_during_flood(&mut rx, start, &a, on(1, 1));
        assert_eq!(took, 0);
    }
}
