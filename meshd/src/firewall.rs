//! Enforcing the circle policy on the data path: which packets pass, which sessions may be
//! set up, and the connection tracking that lets replies through.
//!
//! ```text
//!  TUN packet for K ─► check_out(K, packet): outbound rule, else a tracked flow ─► encrypt
//!                                           └► drop, count, ICMPv6 "prohibited" to the stack
//!  decrypted packet from K ─► check_in(K, packet): traffic rule, else a tracked flow ─► TUN
//!  session init from K ─► session_allowed(K): K may send something, or we have flows with K
//! ```
//!
//! The policy (crate `acl`) answers per packet from compiled tables. A rule is about the
//! *destination* port: `traffic tcp/22` lets others reach our port 22, `outbound tcp/80` lets us
//! reach their port 80. Replies need no rule: a packet that passes in one direction records its
//! flow (only when the reverse direction would be denied, so permissive policies track
//! nothing), and packets of that flow in the other direction pass until it has been idle for
//! [`FLOW_IDLE_TCP`] (TCP) or [`FLOW_IDLE`] (UDP, ICMP echo). ICMPv6 error messages (Packet Too
//! Big, Unreachable, Time Exceeded) always pass inside an existing session: path MTU discovery
//! needs them, and they can only come from a node we already have a session with.
//!
//! Non-first IPv6 fragments carry no ports: they count as protocol `other`.

use crate::identity::PublicKey;
use crate::packet::{IPV6_HEADER_LEN, Ipv6Header};
use acl::{Class, Policy, Proto};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP flow idle this long is forgotten.
pub const FLOW_IDLE_TCP: Duration = Duration::from_secs(600);
/// A UDP or ICMP echo flow idle this long is forgotten.
pub const FLOW_IDLE: Duration = Duration::from_secs(120);
/// Most flows tracked at once; beyond, new flows are not tracked (their replies are judged by
/// the rules alone) and `flows_full` counts them.
pub const MAX_FLOWS: usize = 65_536;
/// Identities whose class is kept (when the policy names addresses, classifying a key costs a
/// hash).
const MAX_CACHED: usize = 16_384;

/// What the policy did, for `meshctl status` and `meshctl policy show`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyCounters {
    /// Links refused at the handshake (`peer` rules).
    pub links_refused: u64,
    /// End-to-end sessions refused at their handshake (`traffic` rules).
    pub sessions_refused: u64,
    /// Packets from the overlay dropped (`traffic` rules).
    pub dropped_in: u64,
    /// Packets from this host dropped (`outbound` rules).
    pub dropped_out: u64,
    /// Links closed because a reload denied their peer.
    pub links_closed: u64,
    /// Sessions closed because a reload denied their remote.
    pub sessions_closed: u64,
    /// Flows tracked now.
    pub flows: usize,
    /// Flows not tracked because the table was full.
    pub flows_full: u64,
}

/// One packet, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Protocol.
    pub proto: Proto,
    /// Source port (the echo identifier for ICMP echo).
    pub src_port: u16,
    /// Destination port (the echo identifier for ICMP echo).
    pub dst_port: u16,
    /// Whether replies to it are tracked (TCP, UDP, ICMP echo request and reply).
    pub tracked: bool,
    /// An ICMPv6 error message.
    pub icmp_error: bool,
}

impl Flow {
    /// Reads protocol and ports from an IPv6 packet, walking extension headers.
    pub fn of(packet: &[u8]) -> Flow {
        let other = Flow {
            proto: Proto::Other,
            src_port: 0,
            dst_port: 0,
            tracked: false,
            icmp_error: false,
        };
        let Ok(h) = Ipv6Header::parse(packet) else {
            return other;
        };
        let mut next = h.next_header;
        let mut at = IPV6_HEADER_LEN;
        for _ in 0..8 {
            match next {
                // Hop-by-hop, routing, destination options: length in 8-byte units.
                0 | 43 | 60 => {
                    let (Some(&n), Some(&len)) = (packet.get(at), packet.get(at + 1)) else {
                        return other;
                    };
                    next = n;
                    at += 8 + 8 * usize::from(len);
                }
                // Fragment: only the first fragment has the upper-layer header.
                44 => {
                    let (Some(&n), Some(off)) = (packet.get(at), packet.get(at + 2..at + 4)) else {
                        return other;
                    };
                    if u16::from_be_bytes([off[0], off[1]]) & 0xfff8 != 0 {
                        return other;
                    }
                    next = n;
                    at += 8;
                }
                _ => break,
            }
        }
        let l4 = packet.get(at..).unwrap_or(&[]);
        let port = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        match Proto::from_next_header(next) {
            p @ (Proto::Tcp | Proto::Udp) => match (port(0), port(2)) {
                (Some(s), Some(d)) => Flow {
                    proto: p,
                    src_port: s,
                    dst_port: d,
                    tracked: true,
                    icmp_error: false,
                },
                _ => other,
            },
            Proto::Icmp => {
                let ty = l4.first().copied().unwrap_or(0);
                let echo = ty == 128 || ty == 129;
                let id = if echo { port(4).unwrap_or(0) } else { 0 };
                Flow {
                    proto: Proto::Icmp,
                    src_port: id,
                    dst_port: id,
                    tracked: echo,
                    icmp_error: ty < 128,
                }
            }
            Proto::Other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    key: [u8; 32],
    proto: Proto,
    local: u16,
    remote: u16,
}

/// The policy in force and the flows it lets through.
pub struct Firewall {
    policy: Arc<Policy>,
    /// The empty policy: everything passes, nothing is looked at.
    open: bool,
    cache: HashMap<[u8; 32], Class>,
    flows: HashMap<FlowKey, Instant>,
    per_key: HashMap<[u8; 32], u32>,
    counters: PolicyCounters,
    next_sweep: Option<Instant>,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall::new(Arc::new(Policy::allow_all()))
    }
}

impl Firewall {
    /// A firewall enforcing `policy`.
    pub fn new(policy: Arc<Policy>) -> Firewall {
        Firewall {
            open: policy.is_open(),
            policy,
            cache: HashMap::new(),
            flows: HashMap::new(),
            per_key: HashMap::new(),
            counters: PolicyCounters::default(),
            next_sweep: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Counters.
    pub fn counters(&self) -> PolicyCounters {
        PolicyCounters {
            flows: self.flows.len(),
            ..self.counters.clone()
        }
    }

    pub(crate) fn counters_mut(&mut self) -> &mut PolicyCounters {
        &mut self.counters
    }

    /// Puts `policy` in force. Flows stay only if the direction that opened them is still
    /// allowed, so allowed traffic is not disturbed and newly denied traffic stops at once.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.open = policy.is_open();
        self.policy = policy;
        self.cache.clear();
        let policy = self.policy.clone();
        self.flows.retain(|f, _| {
            let c = policy.classify(&f.key);
            // A tracked flow was opened by whichever side the rules allowed.
            c.outbound(f.proto, f.remote).allows() || c.traffic(f.proto, f.local).allows()
        });
        self.recount();
    }

    fn recount(&mut self) {
        self.per_key.clear();
        for f in self.flows.keys() {
            *self.per_key.entry(f.key).or_default() += 1;
        }
    }

    /// The class of `key` (kept per key when classifying costs a hash).
    #[inline]
    pub fn class(&mut self, key: &PublicKey) -> Class {
        if !self.policy.names_addresses() {
            return self.policy.classify(&key.0);
        }
        if let Some(c) = self.cache.get(&key.0) {
            return c.clone();
        }
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        let c = self.policy.classify(&key.0);
        self.cache.insert(key.0, c.clone());
        c
    }

    /// May `key` link with us?
    pub fn peer_allowed(&mut self, key: &PublicKey) -> bool {
        self.open || self.class(key).peer().allows()
    }

    /// May `key` set up an end-to-end session with us? Yes if it may send us something, or if
    /// we have flows with it (it is answering us).
    pub fn session_allowed(&mut self, key: &PublicKey) -> bool {
        self.open || self.class(key).receives_any() || self.per_key.contains_key(&key.0)
    }

    fn track(&mut self, now: Instant, f: FlowKey) {
        if let Some(t) = self.flows.get_mut(&f) {
            *t = now;
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            self.expire(now);
            if self.flows.len() >= MAX_FLOWS {
                self.counters.flows_full += 1;
                return;
            }
        }
        self.flows.insert(f, now);
        *self.per_key.entry(f.key).or_default() += 1;
    }

    fn tracked(&mut self, now: Instant, f: &FlowKey) -> bool {
        match self.flows.get_mut(f) {
            Some(t) if now < *t + idle(f.proto) => {
                *t = now;
                true
            }
            _ => false,
        }
    }

    /// Whether a packet decrypted from `key` may go to the TUN device. Counts drops.
    pub fn check_in(&mut self, now: Instant, key: &PublicKey, packet: &[u8]) -> bool {
        if self.open {
            return true;
        }
        let f = Flow::of(packet);
        if f.icmp_error {
            return true;
        }
        let c = self.class(key);
        let flow = FlowKey {
            key: key.0,
            proto: f.proto,
            local: f.dst_port,
            remote: f.src_port,
        };
        if c.traffic(f.proto, f.dst_port).allows() {
            if f.tracked && !c.outbound(f.proto, f.src_port).allows() {
                self.track(now, flow);
            }
            return true;
        }
        if f.tracked && self.tracked(now, &flow) {
            return true;
        }
        self.counters.dropped_in += 1;
        false
    }

    /// Whether a packet from the TUN device may go to `key`. Counts drops.
    pub fn check_out(&mut self, now: Instant, key: &PublicKey, packet: &[u8]) -> bool {
        if self.open {
            return true;
        }
        let f = Flow::of(packet);
        if f.icmp_error {
            return true;
        }
        let c = self.class(key);
        let flow = FlowKey {
            key: key.0,
            proto: f.proto,
            local: f.src_port,
            remote: f.dst_port,
        };
        if c.outbound(f.proto, f.dst_port).allows() {
            if f.tracked && !c.traffic(f.proto, f.src_port).allows() {
                self.track(now, flow);
            }
            return true;
        }
        if f.tracked && self.tracked(now, &flow) {
            return true;
        }
        self.counters.dropped_out += 1;
        false
    }

    /// Forgets idle flows; sweeps at most every 10 s (a full table is swept at once).
    pub fn expire(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) && self.flows.len() < MAX_FLOWS {
            return;
        }
        self.next_sweep = Some(now + Duration::from_secs(10));
        let before = self.flows.len();
        self.flows.retain(|f, t| now < *t + idle(f.proto));
        if self.flows.len() != before {
            self.recount();
        }
    }
}

fn idle(p: Proto) -> Duration {
    if p == Proto::Tcp {
        FLOW_IDLE_TCP
    } else {
        FLOW_IDLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&20u16.to_be_bytes());
        p[6] = 6;
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn fw(text: &str) -> (Firewall, PublicKey) {
        let p = Policy::load(text, "t.toml").expect("policy");
        let k: PublicKey = A.parse().expect("key");
        (Firewall::new(Arc::new(p)), k)
    }

    #[test]
    fn ports_and_replies() {
        let (mut f, k) = fw(&format!(
            "default = \"deny\"\n[circles]\nd = [\"{A}\"]\n[[rules]]\naction = \"traffic\"\nallow = \"circle:d\"\nports = \"tcp/22\"\n"
        ));
        let now = Instant::now();
        assert!(f.check_in(now, &k, &tcp(40000, 22)));
        assert!(!f.check_in(now, &k, &tcp(40000, 80)));
        assert_eq!(f.counters().dropped_in, 1);
        // The reply to the allowed connection goes out although outbound is denied.
        assert!(f.check_out(now, &k, &tcp(22, 40000)));
        assert!(!f.check_out(now, &k, &tcp(22, 40001)));
        // An idle flow is forgotten.
        let later = now + FLOW_IDLE_TCP + Duration::from_secs(1);
        assert!(!f.check_out(later, &k, &tcp(22, 40000)));
        assert!(f.session_allowed(&k));
        let stranger: PublicKey = PublicKey([9; 32]);
        assert!(!f.session_allowed(&stranger));
    }

    #[test]
    fn outbound_flows_let_replies_in_and_reload_prunes() {
        let (mut f, k) = fw("[defaults]\ntraffic = \"deny\"\n");
        let now = Instant::now();
        assert!(f.check_out(now, &k, &tcp(50000, 80)));
        assert!(f.check_in(now, &k, &tcp(80, 50000)));
        assert!(!f.check_in(now, &k, &tcp(80, 50001)));
        assert!(
            f.session_allowed(&k),
            "a remote we have flows with may answer"
        );
        // Outbound now denied: the flow goes, its replies are dropped.
        let p = Policy::load("default = \"deny\"\n", "t.toml").expect("policy");
        f.set_policy(Arc::new(p));
        assert!(!f.check_in(now, &k, &tcp(80, 50000)));
        assert!(!f.session_allowed(&k));
    }

    #[test]
    fn flow_parsing() {
        let f = Flow::of(&tcp(1, 2));
        assert_eq!(
            (f.proto, f.src_port, f.dst_port, f.tracked),
            (Proto::Tcp, 1, 2, true)
        );
        let mut frag = vec![0u8; 68];
        frag[0] = 0x60;
        frag[4..6].copy_from_slice(&28u16.to_be_bytes());
        frag[6] = 44;
        frag[40] = 6;
        frag[42..44].copy_from_slice(&8u16.to_be_bytes()); // offset 1: not the first
        assert_eq!(Flow::of(&frag).proto, Proto::Other);
        frag[42..44].copy_from_slice(&0u16.to_be_bytes());
        frag[48..50].copy_from_slice(&7u16.to_be_bytes());
        frag[50..52].copy_from_slice(&22u16.to_be_bytes());
        let f = Flow::of(&frag);
        assert_eq!((f.proto, f.src_port, f.dst_port), (Proto::Tcp, 7, 22));
        assert_eq!(Flow::of(&[1, 2, 3]).proto, Proto::Other);
        let mut short = tcp(1, 2);
        short.truncate(42);
        short[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(Flow::of(&short).proto, Proto::Other);
    }
}
