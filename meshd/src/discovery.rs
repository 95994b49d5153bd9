//! LAN discovery, sans-IO: signed announcements a node multicasts on its links' IPv6
//! link-local scope, and the checks a received one must pass before the node dials it.
//!
//! (Issue 8, first part: the wire format and its checks. The daemon does not send or listen
//! yet; see `docs/ARCHITECTURE.md`.)
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
//! **What it costs a receiver.** Announcements are admitted through a token bucket per source
//! address and one for all sources *before* the signature is checked, so a flood costs a few
//! hash-free comparisons per datagram, not a verification each.

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

/// Most sources remembered for rate limiting (the stalest go first beyond).
const MAX_SOURCES: usize = 1024;
/// Per source: one announcement a second, bursts of 4.
const SOURCE_RATE: Rate = Rate::new(1.0, 4.0);
/// All sources together: 50 a second, bursts of 100.
const GLOBAL_RATE: Rate = Rate::new(50.0, 100.0);

/// An announcement older than the last one from its key is accepted again once the last was
/// accepted this long ago.
pub const RESET_AFTER: Duration = Duration::from_secs(30);

/// The receiving side: checks announcements.
pub struct Receiver {
    own: PublicKey,
    sources: HashMap<IpAddr, Bucket>,
    global: Bucket,
    latest: HashMap<PublicKey, (u64, Instant)>,
}

impl Receiver {
    /// A receiver for the node with key `own`.
    pub fn new(own: PublicKey, now: Instant) -> Receiver {
        Receiver {
            own,
            sources: HashMap::new(),
            global: Bucket::full(GLOBAL_RATE.burst, now),
            latest: HashMap::new(),
        }
    }

    /// Checks an announcement that came from `from`.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Announcement, Rejected> {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&from.ip()) {
            let stale = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.last_used())
                .map(|(ip, _)| *ip);
            if let Some(ip) = stale {
                self.sources.remove(&ip);
            }
        }
        // Cheap checks first, so that junk does not use up the budget of real neighbours.
        if bytes.len() != LEN || &bytes[..4] != MAGIC {
            return Err(Rejected::Malformed);
        }
        let src = self
            .sources
            .entry(from.ip())
            .or_insert(Bucket::full(SOURCE_RATE.burst, now));
        if !src.take(now, SOURCE_RATE) || !self.global.take(now, GLOBAL_RATE) {
            return Err(Rejected::RateLimited);
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
        Ok(Announcement { key, port, seq })
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
        assert_eq!(admitted, 4, "one source gets its burst, then one a second");
        // Another source is not held back by the first.
        assert!(rx.handle(now, from(10), &announce(&a, 1, 1000)).is_ok());
        // A second later the flooding source gets one more.
        let later = now + Duration::from_secs(1);
        assert!(rx.handle(later, from(9), &announce(&a, 1, 1001)).is_ok());
        assert_eq!(
            rx.handle(later, from(9), &announce(&a, 1, 1002)),
            Err(Rejected::RateLimited)
        );
    }
}
