//! NAT traversal, sans-IO: learning this node's public (observed) endpoints from its peers,
//! telling remote nodes about them over the mesh, and deciding when to punch a direct path.
//!
//! ```text
//!   link up ──► OBSERVED frame to the peer: "I see you at 203.0.113.7:7820"
//!   traffic to a node that is no direct peer ──► ENDPOINTS (my observed endpoints), inside
//!       the end-to-end session (authenticated, private), at most every 10 s per node
//!   ENDPOINTS received ──► answer with ours (once), and dial each endpoint with the sender's
//!       key pinned: both sides send at once, so each NAT sees an answer to its own packet
//!       and lets the other's handshake in. A link that comes up is an ordinary link: routing
//!       sends to a direct peer directly, and falls back to the tree when it goes down.
//! ```
//!
//! The endpoints a peer reports are only ever used for that: a peer that lies about them can
//! make this node send a few handshake messages (148 bytes, at most four endpoints, one round
//! per 10 s per remote) to an address of its choice, no more. Dialing is subject to the
//! circle policy's `peer` rules, as every link is.

use crate::identity::PublicKey;
use crate::toolkit::fastmap::FastMap;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Kind byte of an ENDPOINTS message (after [`crate::e2e::CONTROL`]).
pub const ENDPOINTS: u8 = crate::codes::control::ENDPOINTS;
/// Most endpoints carried or remembered.
pub const MAX_ENDPOINTS: usize = 4;
/// ENDPOINTS to one remote at most this often (and again this often while traffic flows and
/// no direct link exists).
pub const RESEND: Duration = Duration::from_secs(10);
/// An observed endpoint not confirmed again for this long is dropped.
const OBSERVED_TTL: Duration = Duration::from_secs(300);
/// Every peer is told where it is seen this often (NAT mappings change; a roaming node keeps
/// its links and would otherwise never hear its new endpoint).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(30);
/// Reporters remembered.
const MAX_REPORTERS: usize = 64;

/// Encodes a socket address: family (4 or 6), address, port (big endian).
pub fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Decodes one socket address from the front of `b`; returns it and the bytes it used.
pub fn get_addr(b: &[u8]) -> Option<(SocketAddr, usize)> {
    let (ip, n) = match b.first()? {
        4 => {
            let o: [u8; 4] = b.get(1..5)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(o)), 5)
        }
        6 => {
            let o: [u8; 16] = b.get(1..17)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(o)), 17)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(b.get(n..n + 2)?.try_into().ok()?);
    Some((SocketAddr::new(ip, port), n + 2))
}

/// An address worth telling a remote node: a public unicast one (not loopback, link-local,
/// unspecified or multicast; private ranges are fine: two NATs may share a bigger network).
fn usable(a: &SocketAddr) -> bool {
    let ip = a.ip().to_canonical();
    a.port() != 0
        && !ip.is_loopback()
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The message: [`crate::e2e::CONTROL`], [`ENDPOINTS`], count, addresses.
pub fn endpoints_message(eps: &[SocketAddr]) -> Vec<u8> {
    let mut m = vec![crate::e2e::CONTROL, ENDPOINTS];
    let eps: Vec<&SocketAddr> = eps
        .iter()
        .filter(|a| usable(a))
        .take(MAX_ENDPOINTS)
        .collect();
    m.push(eps.len() as u8);
    for a in eps {
        put_addr(&mut m, a);
    }
    m
}

/// Parses an ENDPOINTS message (whole control payload); `None` if malformed.
pub fn parse_endpoints(b: &[u8]) -> Option<Vec<SocketAddr>> {
    if b.get(..2)? != [crate::e2e::CONTROL, ENDPOINTS] {
        return None;
    }
    let count = usize::from(*b.get(2)?);
    if count > MAX_ENDPOINTS {
        return None;
    }
    let mut at = 3;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (a, n) = get_addr(b.get(at..)?)?;
        at += n;
        if usable(&a) {
            out.push(a);
        }
    }
    (at == b.len()).then_some(out)
}

/// NAT traversal state of a node.
#[derive(Debug, Default)]
pub struct Nat {
    /// This node's endpoint as each peer sees it (one per peer, so that one lying peer
    /// cannot crowd out what the others see), and when it said so.
    observed: HashMap<PublicKey, (SocketAddr, Instant)>,
    /// When every peer is next told where it is seen.
    pub next_report: Option<Instant>,
    /// When ENDPOINTS last went to each remote (looked up for every packet to a node that is
    /// not a peer: foldhash, randomly seeded, bounded at 4,096).
    sent: FastMap<PublicKey, Instant>,
    /// When each remote's ENDPOINTS were last acted on.
    punched: HashMap<PublicKey, Instant>,
    /// Counters for `meshctl status`.
    pub counters: NatCounters,
}

/// What NAT traversal did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NatCounters {
    /// ENDPOINTS messages sent.
    pub endpoints_sent: u64,
    /// ENDPOINTS messages received.
    pub endpoints_received: u64,
    /// Punch rounds started (one per remote per round).
    pub punches: u64,
}

impl Nat {
    /// The peer `reporter` says it sees this node at `addr`.
    pub fn observed(&mut self, reporter: PublicKey, addr: SocketAddr, now: Instant) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !usable(&addr) {
            return;
        }
        if self.observed.len() >= MAX_REPORTERS && !self.observed.contains_key(&reporter) {
            self.observed.retain(|_, (_, t)| now < *t + OBSERVED_TTL);
            let oldest = self
                .observed
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            if let Some(k) = oldest.filter(|_| self.observed.len() >= MAX_REPORTERS) {
                self.observed.remove(&k);
            }
        }
        let before = self.observed.insert(reporter, (addr, now));
        if before.is_some_and(|(a, _)| a != addr) {
            // This node's public endpoint changed (a new network, a new NAT mapping): remote
            // nodes hear the new one with the next packet to them, not a round later.
            self.sent.clear();
        }
    }

    /// This node's network changed: what peers saw is of the old network. They report again
    /// ([`crate::link::Event::PeerMoved`]), and ENDPOINTS go to remote nodes again then.
    pub fn network_changed(&mut self) {
        self.observed.clear();
        self.sent.clear();
        self.punched.clear();
    }

    /// This node's observed endpoints at `now`: those seen by the most peers first, then the
    /// most recent; at most [`MAX_ENDPOINTS`].
    pub fn endpoints(&self, now: Instant) -> Vec<SocketAddr> {
        let mut by_addr: HashMap<SocketAddr, (usize, Instant)> = HashMap::new();
        for (addr, t) in self
            .observed
            .values()
            .filter(|(_, t)| now < *t + OBSERVED_TTL)
        {
            let e = by_addr.entry(*addr).or_insert((0, *t));
            e.0 += 1;
            e.1 = e.1.max(*t);
        }
        let mut v: Vec<(SocketAddr, (usize, Instant))> = by_addr.into_iter().collect();
        v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(b.1.1.cmp(&a.1.1)));
        v.into_iter().take(MAX_ENDPOINTS).map(|(a, _)| a).collect()
    }

    /// Whether ENDPOINTS should go to `remote` now (and notes that it goes).
    pub fn should_send(&mut self, remote: &PublicKey, now: Instant) -> bool {
        if self.sent.get(remote).is_some_and(|t| now < *t + RESEND) {
            return false;
        }
        if self.sent.len() >= 4096 {
            self.sent.retain(|_, t| now < *t + RESEND);
        }
        self.sent.insert(*remote, now);
        self.counters.endpoints_sent += 1;
        true
    }

    /// Whether ENDPOINTS from `remote` should be acted on now (one round per [`RESEND`]).
    pub fn should_punch(&mut self, remote: &PublicKey, now: Instant) -> bool {
        self.counters.endpoints_received += 1;
        if self
            .punched
            .get(remote)
            .is_some_and(|t| now < *t + RESEND / 2)
        {
            return false;
        }
        if self.punched.len() >= 4096 {
            self.punched.retain(|_, t| now < *t + RESEND);
        }
        self.punched.insert(*remote, now);
        self.counters.punches += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_and_bad_input_is_refused() {
        let eps: Vec<SocketAddr> = vec![
            "203.0.113.7:7820".parse().expect("addr"),
            "[2001:db8::1]:7820".parse().expect("addr"),
            "127.0.0.1:7820".parse().expect("addr"),
            "[fe80::1]:7820".parse().expect("addr"),
        ];
        let m = endpoints_message(&eps);
        assert_eq!(
            parse_endpoints(&m),
            Some(eps[..2].to_vec()),
            "loopback, link-local left out"
        );
        for cut in 0..m.len() {
            assert_eq!(parse_endpoints(&m[..cut]), None, "cut at {cut}");
        }
        let mut long = m.clone();
        long.push(0);
        assert_eq!(parse_endpoints(&long), None);
        let mut many = vec![crate::e2e::CONTROL, ENDPOINTS, 200];
        many.extend([4, 1, 2, 3, 4, 0, 1]);
        assert_eq!(parse_endpoints(&many), None);
        assert_eq!(
            parse_endpoints(&[crate::e2e::CONTROL, ENDPOINTS, 1, 9]),
            None
        );
    }

    #[test]
    fn observed_endpoints_are_bounded_and_rounds_are_rate_limited() {
        let mut n = Nat::default();
        let now = Instant::now();
        let real = SocketAddr::from(([203, 0, 113, 7], 7820));
        // Two honest peers see the real endpoint; one liar reports ten made-up ones.
        n.observed(PublicKey([1; 32]), real, now);
        n.observed(PublicKey([2; 32]), real, now);
        for i in 0..10u8 {
            let t = now + Duration::from_millis(u64::from(i) + 1);
            n.observed(
                PublicKey([3; 32]),
                SocketAddr::from(([198, 51, 100, i], 7820)),
                t,
            );
        }
        let later = now + Duration::from_secs(1);
        assert_eq!(
            n.endpoints(later),
            vec![real, SocketAddr::from(([198, 51, 100, 9], 7820))]
        );
        assert!(
            n.endpoints(now + OBSERVED_TTL + Duration::from_secs(1))
                .is_empty()
        );
        let k = PublicKey([7; 32]);
        assert!(n.should_send(&k, now));
        assert!(!n.should_send(&k, now + Duration::from_secs(1)));
        assert!(n.should_send(&k, now + RESEND));
        assert!(n.should_punch(&k, now));
        assert!(!n.should_punch(&k, now + Duration::from_secs(1)));
    }
}
