//! The whole node's data path without syscalls: three nodes in a line (A - B - C) in memory,
//! 1,280-byte IPv6 packets from A to C. Per packet: A's outbound (end-to-end encryption,
//! routing header, link encryption), B's forwarding (link decryption, greedy next hop, link
//! encryption), C's inbound (link decryption, end-to-end decryption, source check).
//!
//! The last line repeats AES-GCM with a circle policy of 10,000 identities and 1,000 rules on
//! A (outbound rules) and on C (traffic rules), where the replies' direction is denied so
//! that both also track the flow: the cost of enforcement in the whole data path.
//!
//! Run: `cargo bench -p meshd --bench datapath`. Prints figures; no pass/fail.

use meshd::identity::Identity;
use meshd::node::{Inbound, Node, NodeConfig, Outbound};
use meshd::uri::Endpoint;
use meshd::wire::Suite;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(i: usize) -> Endpoint {
    Endpoint::udp(SocketAddr::from(([10, 0, 0, i as u8 + 1], 7820)))
}

struct Line {
    nodes: Vec<(Node, Identity)>,
    now: Instant,
}

impl Line {
    fn new(suite: Suite) -> Line {
        let now = Instant::now();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let id = Identity::from_seed(&[i as u8 + 90; 32]);
            let mut cfg = NodeConfig::default();
            cfg.link.suite = suite;
            cfg.e2e.suite = suite;
            let node = Node::new(&id, cfg, &id.secret_seed(), 1000, i as u64, now);
            nodes.push((node, id));
        }
        for i in 1..3 {
            let uri = addr(i).to_string().parse().expect("uri");
            nodes[i - 1].0.links.add_peer(uri, now);
        }
        Line { nodes, now }
    }

    /// Delivers every queued control datagram until the network is quiet.
    fn settle(&mut self, d: Duration) {
        let end = self.now + d;
        let mut wire: VecDeque<(Endpoint, Endpoint, Vec<u8>)> = VecDeque::new();
        while self.now < end {
            self.now += Duration::from_millis(5);
            let now = self.now;
            for (i, (n, _)) in self.nodes.iter_mut().enumerate() {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
                while let Some(t) = n.poll_transmit(now) {
                    wire.push_back((addr(i), t.to, t.data));
                }
            }
            while let Some((from, to, d)) = wire.pop_front() {
                let Some(i) = (0..3).find(|i| addr(*i) == to) else {
                    continue;
                };
                // A line: A and C cannot reach each other directly, so their attempts at a
                // direct path (NAT punching) fail and the traffic keeps going through B.
                let Some(j) = (0..3).find(|j| addr(*j) == from) else {
                    continue;
                };
                if i.abs_diff(j) != 1 {
                    continue;
                }
                let (mut f, mut t, mut o) = (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; 4096]);
                if let Inbound::Forward { to, len } = self.nodes[i]
                    .0
                    .inbound(now, from, &d, &mut f, &mut t, &mut o)
                {
                    wire.push_back((addr(i), to, o[..len].to_vec()));
                }
                while let Some(t) = self.nodes[i].0.poll_transmit(now) {
                    wire.push_back((addr(i), t.to, t.data));
                }
            }
        }
    }
}

fn packet(src: &Identity, dst: &Identity) -> Vec<u8> {
    let mut p = vec![0u8; 1280];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&1240u16.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.address().octets());
    p[24..40].copy_from_slice(&dst.address().octets());
    // UDP from port 40000 to port 53: under the bench policy both ends track the flow.
    p[40..42].copy_from_slice(&40000u16.to_be_bytes());
    p[42..44].copy_from_slice(&53u16.to_be_bytes());
    p
}

/// 100 circles of 100 identities, 1,000 rules over ports; A and C are in the last circle,
/// which may exchange UDP.
fn big_policy(a: &Identity, c: &Identity) -> acl::Policy {
    use std::fmt::Write as _;
    let mut t = String::from("[defaults]\ntraffic = \"deny\"\noutbound = \"deny\"\n\n[circles]\n");
    for g in 0..100u32 {
        let _ = write!(t, "team{g} = [");
        for m in 0..100u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&(g * 100 + m).to_le_bytes());
            let _ = write!(t, "\"{}\", ", Identity::from_seed(&seed).public_key());
        }
        t.push_str("]\n");
    }
    let _ = writeln!(
        t,
        "bench = [\"{}\", \"{}\"]\n",
        a.public_key(),
        c.public_key()
    );
    for r in 0..998u32 {
        let (action, verdict) = match r % 10 {
            0 => ("outbound", "deny"),
            1..=3 => ("outbound", "allow"),
            4 => ("traffic", "deny"),
            _ => ("traffic", "allow"),
        };
        let port = 1000 + (r * 37) % 60000;
        let _ = writeln!(
            t,
            "[[rules]]\naction = \"{action}\"\n{verdict} = \"circle:team{}\"\nports = [\"tcp/{port}\", \"udp/{}-{}\"]\n",
            r % 100,
            port,
            port + 10
        );
    }
    t.push_str("[[rules]]\naction = [\"traffic\", \"outbound\"]\nallow = \"circle:bench\"\nports = \"udp/0-999\"\n\n");
    t.push_str("[[rules]]\naction = \"traffic\"\ndeny = \"circle:team7\"\n");
    acl::Policy::load(&t, "bench.toml").expect("the bench policy loads")
}

fn main() {
    for (suite, with_policy) in [
        (Suite::AesGcm, false),
        (Suite::ChaChaPoly, false),
        (Suite::AesGcm, true),
    ] {
        let mut line = Line::new(suite);
        if with_policy {
            let p = std::sync::Arc::new(big_policy(&line.nodes[0].1, &line.nodes[2].1));
            let now = line.now;
            for i in [0, 2] {
                line.nodes[i].0.set_policy(now, p.clone());
            }
        }
        line.settle(Duration::from_secs(3));
        let pkt = packet(&line.nodes[0].1, &line.nodes[2].1);
        let (mut net, mut f, mut t, mut o) = (
            vec![0u8; 4096],
            vec![0u8; 4096],
            vec![0u8; 4096],
            vec![0u8; 4096],
        );
        // Warm up: lookup and end-to-end handshake.
        let now = line.now;
        let _ = line.nodes[0].0.outbound(now, &pkt, &mut net);
        line.settle(Duration::from_millis(500));
        let n = 200_000u32;
        let (mut out_t, mut fwd_t, mut in_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut delivered = 0;
        for _ in 0..n {
            let now = line.now;
            let t0 = Instant::now();
            let Outbound::Datagram { len, .. } = line.nodes[0].0.outbound(now, &pkt, &mut net)
            else {
                panic!("A did not send")
            };
            let t1 = Instant::now();
            let r = line.nodes[1]
                .0
                .inbound(now, addr(0), &net[..len], &mut f, &mut t, &mut o);
            let t2 = Instant::now();
            let Inbound::Forward { len, .. } = r else {
                panic!("B did not forward: {r:?}")
            };
            let r = line.nodes[2]
                .0
                .inbound(now, addr(1), &o[..len], &mut f, &mut t, &mut net);
            let t3 = Instant::now();
            if matches!(r, Inbound::Tun { len: 1280 }) {
                delivered += 1;
            }
            out_t += t1 - t0;
            fwd_t += t2 - t1;
            in_t += t3 - t2;
        }
        assert_eq!(delivered, n, "not every packet arrived");
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        let gbps = |d: Duration| n as f64 * 1280.0 * 8.0 / d.as_secs_f64() / 1e9;
        println!(
            "{:<20} source {:>5.0} ns/packet ({:.1} Gbit/s) | transit {:>5.0} ns ({:.1} Gbit/s) | destination {:>5.0} ns ({:.1} Gbit/s)",
            if with_policy {
                format!("{} + policy", suite.name())
            } else {
                suite.name().to_string()
            },
            per(out_t),
            gbps(out_t),
            per(fwd_t),
            gbps(fwd_t),
            per(in_t),
            gbps(in_t),
        );
    }
}
