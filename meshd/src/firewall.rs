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
//! [`FLOW_IDLE_TCP`] (TCP) or [`FLOW_IDLE`] (UDP, ICMP echo); a reload keeps a flow only if the
//! side that opened it may still open it. ICMPv6 errors (types 1 to 4: Unreachable, Packet Too
//! Big, Time Exceeded, Parameter Problem) pass when the packet they quote was exchanged with
//! that node: path MTU discovery needs them.
//!
//! The whole extension header chain is walked, so no chain hides the transport header; a
//! malformed packet is dropped. A packet whose ports cannot be read (a non-first fragment)
//! passes only if every port of its protocol is allowed.

use crate::identity::PublicKey;
use crate::packet::{IPV6_HEADER_LEN, Ipv6Header};
use crate::toolkit::fastmap::FastMap;
use acl::{Class, Policy, Proto};
use serde::Serialize;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP flow idle this long is forgotten.
pub const FLOW_IDLE_TCP: Duration = Duration::from_secs(600);
/// A UDP or ICMP echo flow idle this long is forgotten.
pub const FLOW_IDLE: Duration = Duration::from_secs(120);
/// Most flows tracked at once; beyond, new flows are not tracked (their replies are judged by
/// the rules alone) and `flows_full` counts them.
pub const MAX_FLOWS: usize = 65_536;
/// Most flows tracked with one remote, so that one sender cannot fill the table for all.
pub const MAX_FLOWS_PER_REMOTE: u32 = 4096;
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
    /// False when the ports cannot be read (a non-first fragment, a first fragment too short
    /// to hold them): such a packet passes only if every port of its protocol is allowed.
    pub ports_known: bool,
    /// Whether replies to it are tracked (TCP, UDP, ICMP echo request and reply).
    pub tracked: bool,
    /// An ICMPv6 error (types 1 to 4) and the source and destination of the packet it quotes.
    pub icmp_error: Option<(Ipv6Addr, Ipv6Addr)>,
}

/// Headers of the IPv6 extension chain this parser walks (hop-by-hop, routing, fragment,
/// destination options, authentication, mobility, HIP, shim6).
fn is_extension(n: u8) -> bool {
    matches!(n, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140)
}

impl Flow {
    /// Reads protocol and ports from an IPv6 packet, walking the whole extension header chain
    /// (however long: a chain cannot hide the transport header). `None`: malformed (a header
    /// runs past the end, an ICMPv6 message without a type), which is dropped.
    pub fn of(packet: &[u8]) -> Option<Flow> {
        let h = Ipv6Header::parse(packet).ok()?;
        let packet = packet.get(..h.total_len)?;
        let mut next = h.next_header;
        let mut at = IPV6_HEADER_LEN;
        let mut ports_known = true;
        // Each header is at least 8 bytes, so this ends within the packet's length.
        while is_extension(next) {
            let n = *packet.get(at)?;
            let len = *packet.get(at + 1)? as usize;
            let size = match next {
                44 => {
                    // Fragment: only the first fragment carries the upper-layer header.
                    let off = packet.get(at + 2..at + 4)?;
                    if u16::from_be_bytes([off[0], off[1]]) & 0xfff8 != 0 {
                        ports_known = false;
                        next = n;
                        break;
                    }
                    8
                }
                51 => 4 * (len + 2),
                _ => 8 + 8 * len,
            };
            if at + size > packet.len() {
                return None;
            }
            next = n;
            at += size;
        }
        let l4 = packet.get(at..).unwrap_or(&[]);
        let word = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let mut f = Flow {
            proto: Proto::from_next_header(next),
            src_port: 0,
            dst_port: 0,
            ports_known,
            tracked: false,
            icmp_error: None,
        };
        if !ports_known {
            return Some(f);
        }
        match f.proto {
            Proto::Tcp | Proto::Udp => match (word(0), word(2)) {
                (Some(s), Some(d)) => {
                    (f.src_port, f.dst_port, f.tracked) = (s, d, true);
                }
                _ => f.ports_known = false,
            },
            Proto::Icmp => {
                let ty = *l4.first()?;
                match ty {
                    128 | 129 => {
                        let id = word(4)?;
                        (f.src_port, f.dst_port, f.tracked) = (id, id, true);
                    }
                    1..=4 => {
                        let q = l4.get(8..8 + IPV6_HEADER_LEN)?;
                        let addr = |r: std::ops::Range<usize>| {
                            let mut o = [0u8; 16];
                            o.copy_from_slice(&q[r]);
                            Ipv6Addr::from(o)
                        };
                        f.icmp_error = Some((addr(8..24), addr(24..40)));
                    }
                    _ => {}
                }
            }
            Proto::Other => {}
        }
        Some(f)
    }
}

/// Which side opened a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// The remote (a packet in passed the traffic rules).
    In,
    /// This host (a packet out passed the outbound rules).
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    key: PublicKey,
    proto: Proto,
    local: u16,
    remote: u16,
}

/// The policy in force and the flows it lets through.
pub struct Firewall {
    policy: Arc<Policy>,
    /// The empty policy: everything passes, nothing is looked at.
    open: bool,
    cache: FastMap<PublicKey, Class>,
    flows: FastMap<FlowKey, (Instant, Opened)>,
    per_key: FastMap<PublicKey, u32>,
    counters: PolicyCounters,
    next_sweep: Option<Instant>,
    next_full_sweep: Option<Instant>,
    /// The TCP port of this node's gateway on the overlay (`[gateway] mesh_port`): whoever
    /// may `publish` may reach it, whatever the `traffic` rules say.
    gateway_port: Option<u16>,
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
            cache: FastMap::default(),
            flows: FastMap::default(),
            per_key: FastMap::default(),
            counters: PolicyCounters::default(),
            next_sweep: None,
            next_full_sweep: None,
            gateway_port: None,
        }
    }

    /// Lets identities that may `publish` reach TCP `port` (the gateway's port on the
    /// overlay) even where `traffic` rules would deny it.
    pub fn set_gateway_port(&mut self, port: Option<u16>) {
        self.gateway_port = port;
    }

    /// Whether `class` may reach the gateway's port.
    fn may_publish(&self, c: &Class) -> bool {
        self.gateway_port.is_some() && c.publish().allows()
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
        // One classification per remote key, not per flow: a full flow table of a few remotes
        // costs a few hashes, not one per flow (this runs on the event loop).
        let mut classes: FastMap<PublicKey, Class> =
            FastMap::with_capacity_and_hasher(self.per_key.len(), Default::default());
        let gateway = self.gateway_port;
        self.flows.retain(|f, (_, opened)| {
            // Kept only if the side that opened it may still open it.
            let c = classes
                .entry(f.key)
                .or_insert_with(|| policy.classify(&f.key.0));
            match opened {
                Opened::In => {
                    c.traffic(f.proto, f.local).allows()
                        || (f.proto == Proto::Tcp
                            && gateway == Some(f.local)
                            && c.publish().allows())
                }
                Opened::Out => c.outbound(f.proto, f.remote).allows(),
            }
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
        if let Some(c) = self.cache.get(key) {
            return c.clone();
        }
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        let c = self.policy.classify(&key.0);
        self.cache.insert(*key, c.clone());
        c
    }

    /// May `key` link with us?
    pub fn peer_allowed(&mut self, key: &PublicKey) -> bool {
        self.open || self.class(key).peer().allows()
    }

    /// May `key` set up an end-to-end session with us? Yes if it may send us something, or if
    /// we have flows with it (it is answering us).
    pub fn session_allowed(&mut self, key: &PublicKey) -> bool {
        if self.open || self.per_key.contains_key(key) {
            return true;
        }
        let c = self.class(key);
        c.receives_any() || self.may_publish(&c)
    }

    fn track(&mut self, now: Instant, f: FlowKey, opened: Opened) {
        if let Some(t) = self.flows.get_mut(&f) {
            t.0 = now;
            return;
        }
        if self
            .per_key
            .get(&f.key)
            .is_some_and(|n| *n >= MAX_FLOWS_PER_REMOTE)
        {
            self.counters.flows_full += 1;
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            // A full sweep at most once a second: a full table costs nothing per packet.
            if self.next_full_sweep.is_none_or(|t| now >= t) {
                self.next_full_sweep = Some(now + Duration::from_secs(1));
                self.sweep(now);
            }
            if self.flows.len() >= MAX_FLOWS {
                self.counters.flows_full += 1;
                return;
            }
        }
        self.flows.insert(f, (now, opened));
        *self.per_key.entry(f.key).or_default() += 1;
    }

    fn tracked(&mut self, now: Instant, f: &FlowKey) -> bool {
        match self.flows.get_mut(f) {
            Some(t) if now < t.0 + idle(f.proto) => {
                t.0 = now;
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
        let pass = self.judge(now, key, packet, Opened::In);
        if !pass {
            self.counters.dropped_in += 1;
        }
        pass
    }

    /// Whether a packet from the TUN device may go to `key`. Counts drops.
    pub fn check_out(&mut self, now: Instant, key: &PublicKey, packet: &[u8]) -> bool {
        if self.open {
            return true;
        }
        let pass = self.judge(now, key, packet, Opened::Out);
        if !pass {
            self.counters.dropped_out += 1;
        }
        pass
    }

    /// One packet, received from (`In`) or sent to (`Out`) `key`.
    fn judge(&mut self, now: Instant, key: &PublicKey, packet: &[u8], way: Opened) -> bool {
        let Some(f) = Flow::of(packet) else {
            return false;
        };
        let c = self.class(key);
        // This direction's rules, and the reverse direction's (for the replies).
        let (this, reverse): (Rules, Rules) = match way {
            Opened::In => (Class::traffic, Class::outbound),
            Opened::Out => (Class::outbound, Class::traffic),
        };
        // Our port and theirs.
        let (local, remote) = match way {
            Opened::In => (f.dst_port, f.src_port),
            Opened::Out => (f.src_port, f.dst_port),
        };
        if let Some((quoted_src, quoted_dst)) = f.icmp_error {
            return match way {
                // An error about a packet we sent to this node (its stack answered it).
                Opened::In => routing::address::key_owns(&key.0, &quoted_dst),
                // Our stack answers a packet this node sent us, which it may.
                Opened::Out => {
                    routing::address::key_owns(&key.0, &quoted_src) && self.session_allowed(key)
                }
            };
        }
        if !f.ports_known {
            return match way {
                Opened::In => c.traffic_all(f.proto),
                Opened::Out => c.outbound_all(f.proto),
            };
        }
        let flow = FlowKey {
            key: *key,
            proto: f.proto,
            local,
            remote,
        };
        let to_gateway = way == Opened::In
            && f.proto == Proto::Tcp
            && self.gateway_port == Some(f.dst_port)
            && self.may_publish(&c);
        if to_gateway || this(&c, f.proto, f.dst_port).allows() {
            if f.tracked && !reverse(&c, f.proto, f.src_port).allows() {
                self.track(now, flow, way);
            }
            return true;
        }
        f.tracked && self.tracked(now, &flow)
    }

    /// Forgets flows idle too long.
    fn sweep(&mut self, now: Instant) {
        let before = self.flows.len();
        self.flows.retain(|f, t| now < t.0 + idle(f.proto));
        if self.flows.len() != before {
            self.recount();
        }
    }

    /// Forgets idle flows; called with every timer, sweeps at most every 10 s.
    pub fn expire(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + Duration::from_secs(10));
        self.sweep(now);
    }
}

/// The rules of one direction, as a function of a class.
type Rules = fn(&Class, Proto, u16) -> acl::Verdict;

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

    /// An IPv6 packet with `ext` destination-options headers, then `proto` with `l4` bytes.
    fn packet(ext: usize, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = if ext > 0 { 60 } else { proto };
        for i in 0..ext {
            p.extend_from_slice(&[if i + 1 == ext { proto } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
        }
        p.extend_from_slice(l4);
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        packet(0, 6, &l4)
    }

    fn fw(text: &str) -> (Firewall, PublicKey) {
        let p = Policy::load(text, "t.toml").expect("policy");
        let k: PublicKey = A.parse().expect("key");
        (Firewall::new(Arc::new(p)), k)
    }

    #[test]
    fn publishers_reach_the_gateway_port_whatever_traffic_says() {
        let (mut f, k) = fw(&format!(
            "default = \"deny\"\n[circles]\nshops = [\"{A}\"]\n[[rules]]\naction = \"publish\"\nallow = \"circle:shops\"\n"
        ));
        let now = Instant::now();
        assert!(!f.session_allowed(&k));
        assert!(!f.check_in(now, &k, &tcp(40000, 7443)));
        f.set_gateway_port(Some(7443));
        assert!(f.session_allowed(&k));
        assert!(f.check_in(now, &k, &tcp(40000, 7443)));
        assert!(
            f.check_out(now, &k, &tcp(7443, 40000)),
            "the gateway's replies pass"
        );
        assert!(
            !f.check_in(now, &k, &tcp(40000, 22)),
            "only the gateway's port"
        );
        assert!(!f.check_in(
            now,
            &k,
            &packet(0, 17, &[0x9c, 0x40, 0x1d, 0x03, 0, 8, 0, 0])
        ));
        let stranger: PublicKey = PublicKey([9; 32]);
        assert!(!f.session_allowed(&stranger));
        assert!(!f.check_in(now, &stranger, &tcp(40000, 7443)));
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
    fn a_reload_keeps_a_flow_only_if_its_opener_still_may_open_it() {
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
        // A flow the remote opened (ssh in) is not kept alive by outbound being allowed now.
        let (mut f, k) = fw(&format!(
            "default = \"deny\"\n[[rules]]\naction = \"traffic\"\nallow = \"{A}\"\nports = \"tcp/22\"\n"
        ));
        assert!(f.check_in(now, &k, &tcp(40000, 22)));
        assert!(f.check_out(now, &k, &tcp(22, 40000)));
        let p = Policy::load("[defaults]\ntraffic = \"deny\"\n", "t.toml").expect("policy");
        f.set_policy(Arc::new(p));
        assert!(
            !f.check_in(now, &k, &tcp(40000, 22)),
            "revoked ssh still passes"
        );
    }

    #[test]
    fn no_extension_chain_hides_the_port() {
        let (mut f, k) = fw(&format!(
            "[[rules]]\naction = \"traffic\"\ndeny = \"{A}\"\nports = \"tcp/22\"\n"
        ));
        let now = Instant::now();
        let mut l4 = vec![0u8; 20];
        l4[2..4].copy_from_slice(&22u16.to_be_bytes());
        for ext in [0, 1, 8, 9, 100] {
            assert!(!f.check_in(now, &k, &packet(ext, 6, &l4)), "{ext} headers");
        }
        l4[2..4].copy_from_slice(&23u16.to_be_bytes());
        assert!(f.check_in(now, &k, &packet(9, 6, &l4)));
        // A chain that runs past the end is dropped.
        let mut p = packet(2, 6, &l4);
        p.truncate(50);
        p[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert!(!f.check_in(now, &k, &p));
    }

    #[test]
    fn fragments_without_ports_need_the_whole_protocol() {
        let mut frag = vec![0u8; 8 + 8];
        frag[0] = 17;
        frag[2..4].copy_from_slice(&8u16.to_be_bytes()); // offset 1: not the first
        let p = packet(0, 44, &frag);
        let now = Instant::now();
        let (mut f, k) = fw(
            "[defaults]\ntraffic = \"deny\"\n[[rules]]\naction = \"traffic\"\nallow = \"any\"\nports = \"udp/53\"\n",
        );
        assert!(
            !f.check_in(now, &k, &p),
            "udp/53 only: a fragment of unknown port is dropped"
        );
        let (mut f, k) = fw(
            "[defaults]\ntraffic = \"deny\"\n[[rules]]\naction = \"traffic\"\nallow = \"any\"\nports = \"udp\"\n",
        );
        assert!(f.check_in(now, &k, &p), "all of udp: it passes");
        let fl = Flow::of(&p).expect("parses");
        assert_eq!((fl.proto, fl.ports_known), (Proto::Udp, false));
    }

    #[test]
    fn icmp_errors_pass_only_about_that_nodes_packets() {
        let k: PublicKey = A.parse().expect("key");
        let theirs = k.address();
        let other: Ipv6Addr = "600::9".parse().expect("lit");
        let ours: Ipv6Addr = "600::1".parse().expect("lit");
        let error = |src: Ipv6Addr, dst: Ipv6Addr| {
            let mut l4 = vec![1u8, 4, 0, 0, 0, 0, 0, 0];
            let mut quoted = tcp(1, 2);
            quoted[8..24].copy_from_slice(&src.octets());
            quoted[24..40].copy_from_slice(&dst.octets());
            l4.extend_from_slice(&quoted);
            packet(0, 58, &l4)
        };
        let (mut f, k) = fw("default = \"deny\"\n");
        let now = Instant::now();
        assert!(f.check_in(now, &k, &error(ours, theirs)));
        assert!(
            !f.check_in(now, &k, &error(ours, other)),
            "an error about a third party"
        );
        assert!(
            !f.check_out(now, &k, &error(theirs, ours)),
            "no session allowed with it"
        );
        let (mut f, k) = fw("[defaults]\noutbound = \"deny\"\n");
        assert!(f.check_out(now, &k, &error(theirs, ours)));
        assert!(!f.check_out(now, &k, &error(other, ours)));
        assert!(
            !f.check_in(now, &k, &packet(0, 58, &[])),
            "ICMPv6 without a type"
        );
    }

    #[test]
    fn one_remote_cannot_fill_the_flow_table() {
        let (mut f, k) = fw("[defaults]\noutbound = \"deny\"\n");
        let now = Instant::now();
        for port in 0..(MAX_FLOWS_PER_REMOTE as u16 + 100) {
            assert!(f.check_in(now, &k, &tcp(port, 80)));
        }
        assert_eq!(f.counters().flows, MAX_FLOWS_PER_REMOTE as usize);
        assert_eq!(f.counters().flows_full, 100);
    }
}
