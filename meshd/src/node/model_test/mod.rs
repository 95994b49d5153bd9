//! The reference-model test of whole nodes, in the style of firezone's connlib tests: proptest
//! generates sequences of transitions, each is applied to a small pure [`Model`] and to real
//! [`Node`](super::Node)s on a [`TestNet`], and invariants are checked after every step.
//!
//! ```text
//!  Op (connect, disconnect, cut, heal, restart, policy rule, znet members, leave, flaky, send)
//!    ├─► Model: wires, each node's rules about the others, each node's view of the znet
//!    └─► TestNet: the same change on the real nodes, then the clock runs until it settles
//!  after every op: no panic, state bounded;  after a send: delivered ⇔ the model allows it
//! ```
//!
//! What the model says:
//! - Two nodes are *linked* when a wire joins them, it is not cut, and neither denies the other
//!   `peer`. They *can reach* each other when the linked graph connects them.
//! - An overlay packet (ICMPv6 echo or UDP) from `a` reaches `b` exactly when they can reach
//!   each other, `a` does not deny `b` `outbound`, and `b` does not deny `a` `traffic` (all of
//!   it, or UDP for a UDP packet). Nothing else ever reaches anybody's TUN.
//! - A znet packet from `a` reaches `b` exactly when they can reach each other and both have
//!   the znet up with both as members *in their own manifest* (a node removed from the znet
//!   keeps its old manifest, and keeps trying).
//!
//! The overlay is best effort: a packet sent while the routers repair a path may be lost. A
//! send is therefore a probe sent three times, 2.5 s apart, into a network that was left to
//! settle after every change; it must arrive (at least once) when the model allows it and the
//! network is loss-free, and must never arrive when the model forbids it.

mod model;

use super::testnet::{Delivery, TestNet, echo6, udp4, udp6};
use crate::identity::PublicKey;
use crate::znet::{Manifest, Member};
use model::Model;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// Virtual time given to the network after a change of topology: a dead link is noticed in
/// 2 s, a dialer retries within 2 s, a lost root is replaced within 6 s.
const SETTLE: Duration = Duration::from_secs(12);
/// How long a restarting node is away (a link times out after 2 s).
const DOWN_TIME: Duration = Duration::from_secs(3);
/// Virtual time after a policy or membership change.
const SETTLE_POLICY: Duration = Duration::from_secs(1);
/// A probe is sent this many times ...
const TRIES: usize = 3;
/// ... this far apart, and looked for this long after the last.
const TRY_EVERY: Duration = Duration::from_millis(2500);
/// A probe that did not arrive in its [`TRIES`] is sent again every [`SLOW_EVERY`] for up to
/// this long before the test fails. Such slow repairs are counted in [`SLOW`] and printed:
/// after lossy periods and restarts, lookups sometimes take longer than 20 s to succeed again
/// (the routers' slower refreshes repair them), which is worth knowing but is not a broken
/// invariant.
const SLOW_PATIENCE: Duration = Duration::from_secs(90);
const SLOW_EVERY: Duration = Duration::from_secs(5);
/// Probes that needed [`SLOW_PATIENCE`].
static SLOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The znet of the test.
const ZNET: u64 = 0x5a5a_0000_0000_0001;
/// Bounds on a node's state (per node, with at most [`MAX_NODES`] nodes).
const MAX_NODES: usize = 4;
const BOUND_QUEUE: usize = 4096;

/// What a node's policy says about one other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Allow,
    DenyTraffic,
    DenyUdp,
    DenyPeer,
    DenyOutbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Udp,
    Znet,
}

/// One transition. Node indexes are reduced modulo the number of nodes.
#[derive(Debug, Clone)]
enum Op {
    Connect(usize, usize),
    Disconnect(usize, usize),
    Cut(usize, usize),
    Heal(usize, usize),
    /// Restart a node: at once (`true`), or after being away for longer than a link's timeout.
    Restart(usize, bool),
    /// Node `.0`'s rule about node `.1`.
    Policy(usize, usize, Rule),
    /// The znet's members (a bit per node), put in force on every node that is one.
    Members(u8),
    /// A node takes the znet down.
    Leave(usize),
    /// 5 s at 10 % loss, then the network settles again.
    Flaky,
    Send(usize, usize, Kind),
}

fn op() -> impl Strategy<Value = Op> {
    let n = || 0..MAX_NODES;
    let rule = prop_oneof![
        Just(Rule::Allow),
        Just(Rule::DenyTraffic),
        Just(Rule::DenyUdp),
        Just(Rule::DenyPeer),
        Just(Rule::DenyOutbound),
    ];
    let kind = prop_oneof![Just(Kind::Echo), Just(Kind::Udp), Just(Kind::Znet)];
    prop_oneof![
        2 => (n(), n()).prop_map(|(a, b)| Op::Connect(a, b)),
        1 => (n(), n()).prop_map(|(a, b)| Op::Disconnect(a, b)),
        2 => (n(), n()).prop_map(|(a, b)| Op::Cut(a, b)),
        2 => (n(), n()).prop_map(|(a, b)| Op::Heal(a, b)),
        1 => (n(), any::<bool>()).prop_map(|(a, fast)| Op::Restart(a, fast)),
        3 => (n(), n(), rule).prop_map(|(a, b, r)| Op::Policy(a, b, r)),
        2 => any::<u8>().prop_map(Op::Members),
        1 => n().prop_map(Op::Leave),
        1 => Just(Op::Flaky),
        8 => (n(), n(), kind).prop_map(|(a, b, k)| Op::Send(a, b, k)),
    ]
}

fn policy_text(model: &Model, keys: &[PublicKey], a: usize) -> String {
    let mut circles = String::from("[circles]\n");
    let mut rules = String::new();
    for (rule, name, action, ports) in [
        (Rule::DenyTraffic, "no_traffic", "traffic", None),
        (Rule::DenyUdp, "no_udp", "traffic", Some("udp")),
        (Rule::DenyPeer, "no_peer", "peer", None),
        (Rule::DenyOutbound, "no_out", "outbound", None),
    ] {
        let who: Vec<String> = (0..model.n)
            .filter(|&b| model.rules[a][b] == rule)
            .map(|b| format!("\"{}\"", keys[b]))
            .collect();
        if who.is_empty() {
            continue;
        }
        circles += &format!("{name} = [{}]\n", who.join(", "));
        rules += &format!("[[rules]]\naction = \"{action}\"\ndeny = \"circle:{name}\"\n");
        if let Some(p) = ports {
            rules += &format!("ports = \"{p}\"\n");
        }
    }
    format!("{circles}\n{rules}")
}

fn manifest(keys: &[PublicKey], members: u8) -> Manifest {
    Manifest {
        name: "model".into(),
        id: ZNET,
        secret: [0x5a; 32].into(),
        ipv4: Ipv4Addr::new(10, 50, 0, 0),
        ipv6: None,
        members: (0..keys.len())
            .filter(|i| members & (1 << i) != 0)
            .map(|i| Member {
                key: keys[i],
                v4: Ipv4Addr::new(10, 50, i as u8 + 1, 0),
                v6: None,
            })
            .collect(),
        egress: None,
    }
}

/// A probe sent and what the model said of it.
struct Probe {
    from: usize,
    to: usize,
    kind: Kind,
    sender_allowed: bool,
}

struct Run {
    model: Model,
    net: TestNet,
    keys: Vec<PublicKey>,
    probes: Vec<Probe>,
    /// Deliveries already judged.
    judged: usize,
    log: Vec<String>,
}

/// The probe number carried at the end of every test packet.
fn probe_of(packet: &[u8]) -> Option<usize> {
    let tail = packet.get(packet.len().checked_sub(12)?..)?;
    if &tail[..8] != b"MDLPROBE" {
        return None;
    }
    Some(u32::from_be_bytes([tail[8], tail[9], tail[10], tail[11]]) as usize)
}

impl Run {
    fn new(n: usize, seed: u64, links: &[(usize, usize)]) -> Run {
        let net = TestNet::new(n, seed);
        let keys = net.nodes.iter().map(|t| t.identity.public_key()).collect();
        let mut r = Run {
            model: Model::new(n),
            net,
            keys,
            probes: Vec::new(),
            judged: 0,
            log: Vec::new(),
        };
        for &(a, b) in links {
            r.apply(&Op::Connect(a % n, b % n), false)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        r.net.run(SETTLE);
        r
    }

    fn latency(&self, a: usize, b: usize) -> Duration {
        Duration::from_millis(2 + ((a * 7 + b * 13) % 20) as u64)
    }

    fn set_policy(&mut self, a: usize) -> Result<(), String> {
        let text = policy_text(&self.model, &self.keys, a);
        let p = acl::Policy::load(&text, "model.toml")
            .map_err(|e| format!("policy of node {a} does not load: {e}\n{text}"))?;
        self.net.set_policy(a, Arc::new(p));
        Ok(())
    }

    /// Applies `op` to both sides; `settle` runs the clock afterwards.
    fn apply(&mut self, op: &Op, settle: bool) -> Result<(), String> {
        let n = self.model.n;
        let wait = match *op {
            Op::Connect(a, b) | Op::Disconnect(a, b) | Op::Cut(a, b) | Op::Heal(a, b)
                if a % n == b % n =>
            {
                return Ok(());
            }
            Op::Connect(a, b) => {
                let (a, b) = (a % n, b % n);
                self.model
                    .wires
                    .entry((a.min(b), a.max(b)))
                    .or_insert(false);
                let l = self.latency(a, b);
                self.net.connect(a, b, l);
                SETTLE
            }
            Op::Disconnect(a, b) => {
                let (a, b) = (a % n, b % n);
                self.model.wires.remove(&(a.min(b), a.max(b)));
                self.net.disconnect(a, b);
                SETTLE
            }
            Op::Cut(a, b) | Op::Heal(a, b) => {
                let (a, b) = (a % n, b % n);
                let cut = matches!(op, Op::Cut(..));
                if let Some(c) = self.model.wires.get_mut(&(a.min(b), a.max(b))) {
                    *c = cut;
                }
                self.net.set_cut(a, b, cut);
                SETTLE
            }
            Op::Restart(a, fast) => {
                // At once (its peers see a new incarnation handshake while the old link is
                // still up), or down for longer than a link's timeout.
                let a = a % n;
                if fast {
                    self.net.restart(a);
                    SETTLE
                } else {
                    let mine: Vec<((usize, usize), bool)> = (self.model.wires.iter())
                        .filter(|((x, y), _)| *x == a || *y == a)
                        .map(|(w, c)| (*w, *c))
                        .collect();
                    for &((x, y), _) in &mine {
                        self.net.set_cut(x, y, true);
                    }
                    self.net.run(DOWN_TIME);
                    self.net.restart(a);
                    for &((x, y), cut) in &mine {
                        self.net.set_cut(x, y, cut);
                    }
                    SETTLE
                }
            }
            Op::Policy(a, b, rule) => {
                let (a, b) = (a % n, b % n);
                if a == b {
                    return Ok(());
                }
                let was = self.model.rules[a][b];
                self.model.rules[a][b] = rule;
                self.set_policy(a)?;
                if was == Rule::DenyPeer || rule == Rule::DenyPeer {
                    SETTLE
                } else {
                    SETTLE_POLICY
                }
            }
            Op::Members(m) => {
                let m = m & ((1u8 << n) - 1);
                let man = manifest(&self.keys, m);
                for i in (0..n).filter(|i| m & (1 << i) != 0) {
                    self.net
                        .znet_up(i, man.clone())
                        .map_err(|e| format!("znet_up on member {i} refused: {e}"))?;
                    self.model.views[i] = Some(m);
                }
                SETTLE_POLICY
            }
            Op::Leave(a) => {
                let a = a % n;
                self.net.znet_down(a, ZNET);
                self.model.views[a] = None;
                SETTLE_POLICY
            }
            Op::Flaky => {
                self.net.loss_per_mille = 100;
                self.net.run(Duration::from_secs(5));
                self.net.loss_per_mille = 0;
                SETTLE
            }
            Op::Send(a, b, kind) => {
                let (a, b) = (a % n, b % n);
                if a == b {
                    return Ok(());
                }
                return self.send(a, b, kind);
            }
        };
        if settle {
            self.net.run(wait);
        }
        self.check_deliveries()?;
        self.check_bounded()
    }

    fn packet(&self, a: usize, b: usize, kind: Kind, probe: usize) -> Vec<u8> {
        let mut payload = b"MDLPROBE".to_vec();
        payload.extend_from_slice(&(probe as u32).to_be_bytes());
        let (sa, sb) = (self.net.address(a), self.net.address(b));
        match kind {
            // A fresh echo identifier per probe: no probe is a reply to another.
            Kind::Echo => echo6(sa, sb, probe as u16, &payload),
            // Always port 40000 to port 9: never the reverse of another probe's flow.
            Kind::Udp => udp6(sa, sb, (40000, 9), &payload),
            Kind::Znet => udp4(
                Ipv4Addr::new(10, 50, a as u8 + 1, 10),
                Ipv4Addr::new(10, 50, b as u8 + 1, 10),
                &payload,
            ),
        }
    }

    fn send(&mut self, a: usize, b: usize, kind: Kind) -> Result<(), String> {
        let probe = self.probes.len();
        let sender_allowed = self.model.sender_allows(a, b, kind);
        let expected =
            sender_allowed && self.model.can_reach(a, b) && self.model.receiver_allows(a, b, kind);
        self.probes.push(Probe {
            from: a,
            to: b,
            kind,
            sender_allowed,
        });
        let packet = self.packet(a, b, kind, probe);
        for _ in 0..TRIES {
            match kind {
                Kind::Znet => self.net.send_znet(a, ZNET, &packet),
                _ => self.net.send(a, &packet),
            };
            self.net.run(TRY_EVERY);
            self.check_deliveries()?;
        }
        if expected && !self.arrived(probe) {
            // Slow repair (see SLOW_PATIENCE): keep trying, and count it.
            let end = self.net.now + SLOW_PATIENCE;
            while self.net.now < end && !self.arrived(probe) {
                match kind {
                    Kind::Znet => self.net.send_znet(a, ZNET, &packet),
                    _ => self.net.send(a, &packet),
                };
                self.net.run(SLOW_EVERY);
                self.check_deliveries()?;
            }
            if !self.arrived(probe) {
                return Err(format!(
                    "probe {probe} ({kind:?} from node {a} to node {b}) was never delivered \
                     (tried for {:?}), but the model says it must be: they are connected and \
                     policy and membership allow it",
                    TRY_EVERY * TRIES as u32 + SLOW_PATIENCE
                ));
            }
            SLOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.check_bounded()
    }

    fn arrived(&self, probe: usize) -> bool {
        self.net.deliveries.iter().any(|d| match d {
            Delivery::Tun { packet, .. } | Delivery::Znet { packet, .. } => {
                probe_of(packet) == Some(probe)
            }
            _ => false,
        })
    }

    /// Every packet that reached a TUN since the last check: a probe, at its destination,
    /// allowed by the sender's side when sent and by the receiver's side now.
    fn check_deliveries(&mut self) -> Result<(), String> {
        // Deliveries are kept up to a bound; the test never gets near it.
        let fresh = self.net.deliveries.get(self.judged..).unwrap_or(&[]);
        for d in fresh {
            let (node, packet, znet) = match d {
                Delivery::Tun { node, packet } => (*node, packet, false),
                Delivery::Znet { node, packet, .. } => (*node, packet, true),
                Delivery::Local { .. } | Delivery::LocalZnet { .. } => continue,
            };
            let Some(p) = probe_of(packet).and_then(|i| self.probes.get(i).map(|p| (i, p))) else {
                return Err(format!(
                    "node {node} received a packet no probe sent: {packet:?}"
                ));
            };
            let (i, p) = p;
            if p.to != node || (p.kind == Kind::Znet) != znet {
                return Err(format!(
                    "probe {i} ({:?} from {} to {}) arrived at node {node} (znet: {znet})",
                    p.kind, p.from, p.to
                ));
            }
            if !p.sender_allowed {
                return Err(format!(
                    "probe {i} ({:?} from {} to {}) was delivered though the sender's side \
                     forbids it (outbound rule, or the receiver is not a member in the sender's manifest)",
                    p.kind, p.from, p.to
                ));
            }
            if !self.model.receiver_allows(p.from, p.to, p.kind) {
                return Err(format!(
                    "probe {i} ({:?} from {} to {}) reached node {} though its policy or znet \
                     membership denies the sender",
                    p.kind, p.from, p.to, p.to
                ));
            }
        }
        self.judged = self.net.deliveries.len();
        Ok(())
    }

    /// No table or queue of any node grows without bound.
    fn check_bounded(&self) -> Result<(), String> {
        for (i, t) in self.net.nodes.iter().enumerate() {
            let nd = &t.node;
            let sizes = [
                ("waiting", nd.waiting.len(), super::MAX_PARKED_KEYS),
                ("parked", nd.parked.len(), super::MAX_PARKED_KEYS),
                ("transmits", nd.transmits.len(), BOUND_QUEUE),
                ("tun_out", nd.tun_out.len(), BOUND_QUEUE),
                ("pings", nd.pings.len(), BOUND_QUEUE),
                ("peer_events", nd.peer_events.len(), super::MAX_PEER_EVENTS),
                ("links", nd.links.peers.len(), MAX_NODES),
                ("e2e remotes", nd.e2e.remotes().count(), MAX_NODES),
                ("znets", nd.znets.len(), 1),
            ];
            for (what, len, bound) in sizes {
                if len > bound {
                    return Err(format!("node {i}: {what} holds {len} (bound {bound})"));
                }
            }
            if nd
                .parked
                .values()
                .any(|q| q.len() > super::WAIT_PER_ADDRESS)
                || nd
                    .waiting
                    .values()
                    .any(|q| q.1.len() > super::WAIT_PER_ADDRESS)
            {
                return Err(format!("node {i}: a waiting queue exceeds its bound"));
            }
        }
        if self.net.deliveries.len() >= super::testnet::MAX_DELIVERIES {
            return Err("the test made more deliveries than the harness keeps".into());
        }
        Ok(())
    }
}

/// A case: how many nodes, a seed, the first wires, the transitions.
fn case() -> impl Strategy<Value = (usize, u64, Vec<(usize, usize)>, Vec<Op>)> {
    (
        3..=MAX_NODES,
        any::<u64>(),
        prop::collection::vec((0..MAX_NODES, 0..MAX_NODES), 2..5),
        prop::collection::vec(op(), 5..16),
    )
}

fn run_case(
    n: usize,
    seed: u64,
    links: &[(usize, usize)],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut r = Run::new(n, seed, links);
    for (k, op) in ops.iter().enumerate() {
        r.log.push(format!("{op:?}"));
        if let Err(e) = r.apply(op, true) {
            return Err(TestCaseError::fail(format!(
                "after step {k} ({op:?}) of {n} nodes: {e}\nsteps: {:?}\nmodel: {:?}",
                r.log, r.model
            )));
        }
    }
    Ok(())
}

/// Cases run; `MODEL_CASES` overrides (the planted-bug script and CI use the default).
fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn whole_nodes_agree_with_the_reference_model() {
    let config = Config {
        cases: cases(),
        // Reproducible in CI: the same sequences every run (MODEL_SEED changes them).
        rng_seed: RngSeed::Fixed(
            std::env::var("MODEL_SEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(16),
        ),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |(n, seed, links, ops)| {
        run_case(n, seed, &links, &ops)
    });
    eprintln!(
        "model test: {} probes needed more than {TRIES} tries to arrive",
        SLOW.load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
