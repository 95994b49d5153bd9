//! The whole node's data path without syscalls: three nodes in a line (A - B - C) in memory,
//! 1,280-byte IPv6 packets from A to C. Per packet: A's outbound (end-to-end encryption,
//! routing header, link encryption), B's forwarding (link decryption, greedy next hop, link
//! encryption), C's inbound (link decryption, end-to-end decryption, source check).
//!
//! The last line repeats AES-GCM with a circle policy of 10,000 identities and 1,000 rules on
//! A (outbound rules) and on C (traffic rules), where the replies' direction is denied so
//! that both also track the flow: the cost of enforcement in the whole data path.
//!
//! A second set of lines runs two nodes linked directly (A - C), where the link peer is the
//! destination: source and destination only.
//!
//! Run: `cargo bench -p meshd --bench datapath`. Prints figures; no pass/fail.
//! `DATAPATH_PACKETS=N` sets the packets per line (default 200,000); `DATAPATH_LINE=` one of
//! `aes`, `chacha`, `aes-policy`, `aes-direct`, `chacha-direct`, `aes-direct-threads` runs
//! only that line. The last line (`aes-direct-threads`) decides batches of 64 packets in
//! order and seals them on 1, 2, ... threads (as many as there are cores, at least 2), the
//! pool's idle threads sleeping at once or spinning first: the source's packets per second
//! by thread count. For instruction counts,
//! which repeat exactly on a busy machine (`bench/callgrind.sh` runs this):
//! `valgrind --tool=callgrind` on the bench binary with a small N; the stages are the
//! functions `stage_source`, `stage_transit` and `stage_destination`, never inlined, so
//! their inclusive counts divided by N are the instructions per packet.

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
    fn new(suite: Suite, len: usize) -> Line {
        let now = Instant::now();
        let mut nodes = Vec::new();
        for i in 0..len {
            let id = Identity::from_seed(&[i as u8 + 90; 32]);
            let mut cfg = NodeConfig::default();
            cfg.link.suite = suite;
            cfg.e2e.suite = suite;
            let node = Node::new(&id, cfg, &id.secret_seed(), 1000, i as u64, now);
            nodes.push((node, id));
        }
        for i in 1..len {
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
                let len = self.nodes.len();
                let Some(i) = (0..len).find(|i| addr(*i) == to) else {
                    continue;
                };
                // A line: A and C cannot reach each other directly, so their attempts at a
                // direct path (NAT punching) fail and the traffic keeps going through B.
                let Some(j) = (0..len).find(|j| addr(*j) == from) else {
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

/// A's outbound: the packet from A's local stack to a datagram for the next hop.
#[inline(never)]
fn stage_source(node: &mut Node, now: Instant, pkt: &[u8], net: &mut [u8]) -> usize {
    match node.outbound(now, pkt, net) {
        Outbound::Datagram { len, .. } => len,
        _ => panic!("A did not send"),
    }
}

/// B's forwarding: a datagram in, a datagram out to the next hop.
#[inline(never)]
fn stage_transit(node: &mut Node, now: Instant, d: &mut [u8], bufs: &mut Bufs) -> usize {
    let r = node.inbound_in_place(now, addr(0), d, &mut bufs.t);
    match r {
        Inbound::ForwardInPlace { len, .. } => len,
        r => panic!("B did not forward: {r:?}"),
    }
}

/// C's inbound: a datagram in, the packet for C's local stack out.
#[inline(never)]
fn stage_destination(
    node: &mut Node,
    now: Instant,
    from: usize,
    d: &mut [u8],
    bufs: &mut Bufs,
) -> bool {
    let r = node.inbound_in_place(now, addr(from), d, &mut bufs.t);
    matches!(
        r,
        Inbound::Tun { len: 1280 } | Inbound::TunAt { len: 1280, .. }
    )
}

struct Bufs {
    t: Vec<u8>,
}

fn main() {
    let n: u32 = std::env::var("DATAPATH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let only = std::env::var("DATAPATH_LINE").ok();
    for (key, suite, with_policy, len) in [
        ("aes", Suite::AesGcm, false, 3),
        ("chacha", Suite::ChaChaPoly, false, 3),
        ("aes-policy", Suite::AesGcm, true, 3),
        ("aes-direct", Suite::AesGcm, false, 2),
        ("chacha-direct", Suite::ChaChaPoly, false, 2),
    ] {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let mut line = Line::new(suite, len);
        let last = len - 1;
        if with_policy {
            let p = std::sync::Arc::new(big_policy(&line.nodes[0].1, &line.nodes[last].1));
            let now = line.now;
            for i in [0, last] {
                line.nodes[i].0.set_policy(now, p.clone());
            }
        }
        line.settle(Duration::from_secs(3));
        let pkt = packet(&line.nodes[0].1, &line.nodes[last].1);
        let mut net = vec![0u8; 4096];
        let mut bufs = Bufs { t: vec![0u8; 4096] };
        // Warm up: lookup and end-to-end handshake.
        let now = line.now;
        let _ = line.nodes[0].0.outbound(now, &pkt, &mut net);
        line.settle(Duration::from_millis(500));
        let (mut out_t, mut fwd_t, mut in_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut delivered = 0;
        for _ in 0..n {
            let now = line.now;
            let t0 = Instant::now();
            let len = stage_source(&mut line.nodes[0].0, now, &pkt, &mut net);
            let t1 = Instant::now();
            let arrived = if last == 2 {
                // Sealed again where it lies, as the daemon forwards.
                let len = stage_transit(&mut line.nodes[1].0, now, &mut net[..len], &mut bufs);
                let t2 = Instant::now();
                fwd_t += t2 - t1;
                let ok =
                    stage_destination(&mut line.nodes[2].0, now, 1, &mut net[..len], &mut bufs);
                in_t += Instant::now() - t2;
                ok
            } else {
                let ok =
                    stage_destination(&mut line.nodes[1].0, now, 0, &mut net[..len], &mut bufs);
                in_t += Instant::now() - t1;
                ok
            };
            out_t += t1 - t0;
            if arrived {
                delivered += 1;
            }
        }
        assert_eq!(delivered, n, "not every packet arrived");
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        let gbps = |d: Duration| n as f64 * 1280.0 * 8.0 / d.as_secs_f64() / 1e9;
        let name = match (with_policy, len) {
            (true, _) => format!("{} + policy", suite.name()),
            (false, 2) => format!("{}, direct", suite.name()),
            _ => suite.name().to_string(),
        };
        let transit = if len == 3 {
            format!("{:>5.0} ns ({:.1} Gbit/s)", per(fwd_t), gbps(fwd_t))
        } else {
            format!("{:>5} ns ({:>3} Gbit/s)", "-", "-")
        };
        println!(
            "{name:<20} source {:>5.0} ns/packet ({:.1} Gbit/s) | transit {transit} | destination {:>5.0} ns ({:.1} Gbit/s)",
            per(out_t),
            gbps(out_t),
            per(in_t),
            gbps(in_t),
        );
    }
    if only.as_deref().is_none_or(|o| o == "aes-direct-threads") {
        sealing_threads(n);
    }
}

/// The source stage by batches, as the daemon sends: 64 packets decided in order
/// (`outbound_deferred`) into one buffer, then their encryptions on 1, 2, ... threads
/// (`SealPool`), for a direct link with AES-256-GCM. Every packet is opened at the
/// destination (not timed), so a wrong seal would stop the bench.
fn sealing_threads(n: u32) {
    use meshd::seal_pool::SealPool;
    const BATCH: usize = 64;
    const SLOT: usize = 2048;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let batches = (n as usize / BATCH).max(1);
    let modes = [(1, 0)]
        .into_iter()
        .chain((2..=cores.max(2)).flat_map(|t| [(t, 0), (t, meshd::seal_pool::IDLE_SPIN)]));
    for (threads, spin) in modes {
        let pool = SealPool::with_spin(threads, spin).expect("a sealing pool");
        let mut line = Line::new(Suite::AesGcm, 2);
        line.settle(Duration::from_secs(3));
        let pkt = packet(&line.nodes[0].1, &line.nodes[1].1);
        let mut buf = vec![0u8; BATCH * SLOT];
        let mut bufs = Bufs { t: vec![0u8; 4096] };
        let now = line.now;
        let _ = line.nodes[0].0.outbound(now, &pkt, &mut buf);
        line.settle(Duration::from_millis(500));
        let now = line.now;
        let mut jobs = Vec::with_capacity(BATCH);
        let mut lens = [0usize; BATCH];
        let (mut took, mut sealing, mut delivered) = (Duration::ZERO, Duration::ZERO, 0usize);
        for _ in 0..batches {
            let t0 = Instant::now();
            for (k, l) in lens.iter_mut().enumerate() {
                let mut job = None;
                let out = &mut buf[k * SLOT..(k + 1) * SLOT];
                match line.nodes[0].0.outbound_deferred(now, &pkt, out, &mut job) {
                    Outbound::Datagram { len, .. } => *l = len,
                    r => panic!("A did not send: {r:?}"),
                }
                jobs.push(
                    job.expect("a direct message is sealed later")
                        .shifted(k * SLOT),
                );
            }
            let t1 = Instant::now();
            assert_eq!(pool.seal_all(&mut buf, &mut jobs), 0, "every job sealed");
            let t2 = Instant::now();
            took += t2 - t0;
            sealing += t2 - t1;
            for (k, &l) in lens.iter().enumerate() {
                let d = &mut buf[k * SLOT..k * SLOT + l];
                if stage_destination(&mut line.nodes[1].0, now, 0, d, &mut bufs) {
                    delivered += 1;
                }
            }
        }
        assert_eq!(delivered, batches * BATCH, "not every packet arrived");
        let packets = (batches * BATCH) as f64;
        println!(
            "AES-256-GCM, direct, batches of {BATCH} sealed on {threads} thread(s), idle spin {spin:>4}: source {:>5.0} ns/packet, of which sealing {:>4.0} ({:.2} Mpps, {:.1} Gbit/s)",
            took.as_nanos() as f64 / packets,
            sealing.as_nanos() as f64 / packets,
            packets / took.as_secs_f64() / 1e6,
            packets * 1280.0 * 8.0 / took.as_secs_f64() / 1e9,
        );
    }
}
