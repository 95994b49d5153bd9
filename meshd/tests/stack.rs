//! Whole nodes (links, router, end-to-end sessions) in memory: three in a line, A - B - C.
//! A packet from A to C crosses B; B must see only ciphertext, C must get the packet, and C
//! must refuse a packet whose source address is not the sender's.

use meshd::identity::Identity;
use meshd::node::{Inbound, Node, NodeConfig, Outbound};
use meshd::uri::Endpoint;
use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

struct Net {
    now: Instant,
    nodes: Vec<(Node, Endpoint, Identity)>,
    /// (from, to, datagram)
    wire: VecDeque<(Endpoint, Endpoint, Vec<u8>)>,
    /// Frames each node saw after link decryption: (node index, frame).
    seen: Vec<(usize, Vec<u8>)>,
    /// IPv6 packets each node's TUN received.
    tun: Vec<(usize, Vec<u8>)>,
}

fn addr(i: usize) -> Endpoint {
    Endpoint::udp(SocketAddr::from(([10, 0, 0, i as u8 + 1], 7820)))
}

impl Net {
    fn line(n: usize) -> Net {
        let now = Instant::now();
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = Identity::from_seed(&[i as u8 + 40; 32]);
            let node = Node::new(
                &id,
                NodeConfig::default(),
                &id.secret_seed(),
                1000,
                i as u64,
                now,
            );
            nodes.push((node, addr(i), id));
        }
        for i in 1..n {
            let uri = addr(i).to_string().parse().expect("uri");
            nodes[i - 1].0.links.add_peer(uri, now);
        }
        Net {
            now,
            nodes,
            wire: VecDeque::new(),
            seen: vec![],
            tun: vec![],
        }
    }

    fn index(&self, a: Endpoint) -> Option<usize> {
        self.nodes.iter().position(|n| n.1 == a)
    }

    fn collect(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let me = self.nodes[i].1;
            while let Some(t) = self.nodes[i].0.poll_transmit(now) {
                self.wire.push_back((me, t.to, t.data));
            }
            while let Some(p) = self.nodes[i].0.poll_tun() {
                self.tun.push((i, p));
            }
        }
    }

    fn step(&mut self) {
        self.collect();
        while let Some((from, to, d)) = self.wire.pop_front() {
            let Some(i) = self.index(to) else { continue };
            let (mut frame, mut tun, mut net) = (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; 4096]);
            let now = self.now;
            let r = self.nodes[i]
                .0
                .inbound(now, from, &d, &mut frame, &mut tun, &mut net);
            self.seen
                .push((i, frame[..d.len().min(frame.len())].to_vec()));
            match r {
                Inbound::Tun { len } => self.tun.push((i, tun[..len].to_vec())),
                Inbound::Forward { to, len } => {
                    self.wire
                        .push_back((self.nodes[i].1, to, net[..len].to_vec()))
                }
                // Only `inbound_in_place` forwards and decrypts in place.
                Inbound::ForwardInPlace { .. }
                | Inbound::TunAt { .. }
                | Inbound::Znet { .. }
                | Inbound::Done => {}
            }
            self.collect();
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            for n in &mut self.nodes {
                if n.0.poll_timeout().is_some_and(|t| t <= now) {
                    n.0.handle_timeout(now);
                }
            }
            self.step();
        }
    }

    fn send(&mut self, from: usize, packet: &[u8]) {
        let now = self.now;
        let mut out = vec![0u8; 4096];
        let me = self.nodes[from].1;
        if let Outbound::Datagram { to, len } = self.nodes[from].0.outbound(now, packet, &mut out) {
            self.wire.push_back((me, to, out[..len].to_vec()));
        }
        self.step();
    }

    fn address(&self, i: usize) -> Ipv6Addr {
        self.nodes[i].2.address()
    }
}

fn udp_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 8];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&5000u16.to_be_bytes());
    p[42..44].copy_from_slice(&5001u16.to_be_bytes());
    p[44..46].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

const SECRET: &[u8] = b"THE-KNOWN-PLAINTEXT-PAYLOAD-0123456789";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_packet_crosses_a_transit_node_that_sees_only_ciphertext() {
    let mut net = Net::line(3);
    net.run(Duration::from_secs(3));
    let (a, c) = (net.address(0), net.address(2));
    let pkt = udp_packet(a, c, SECRET);
    // The first packet waits for the lookup and the end-to-end handshake, then goes out.
    net.send(0, &pkt);
    net.run(Duration::from_millis(500));
    net.send(0, &pkt);
    net.run(Duration::from_millis(200));
    let at_c: Vec<_> = net
        .tun
        .iter()
        .filter(|(i, p)| *i == 2 && p == &pkt)
        .collect();
    assert!(!at_c.is_empty(), "C never received the packet");
    // B forwarded it, and what B saw (after link decryption) never contains the payload.
    let b_frames: Vec<_> = net.seen.iter().filter(|(i, _)| *i == 1).collect();
    assert!(!b_frames.is_empty());
    assert!(
        b_frames.iter().all(|(_, f)| !contains(f, SECRET)),
        "B saw the plaintext"
    );
    assert!(
        net.nodes[1].0.router.stats().forwarded > 0,
        "B did not forward"
    );
    // C saw it in clear only after end-to-end decryption: in its TUN packet, not its frames.
    assert!(
        net.seen
            .iter()
            .filter(|(i, _)| *i == 2)
            .all(|(_, f)| !contains(f, SECRET))
    );
}

#[test]
fn a_packet_whose_source_is_not_the_senders_is_refused() {
    let mut net = Net::line(3);
    net.run(Duration::from_secs(3));
    let (b, c) = (net.address(1), net.address(2));
    // A claims B's address as its source.
    let pkt = udp_packet(b, c, b"spoofed");
    net.send(0, &pkt);
    net.run(Duration::from_millis(500));
    net.send(0, &pkt);
    net.run(Duration::from_millis(200));
    assert!(
        net.tun.iter().all(|(i, p)| !(*i == 2 && p == &pkt)),
        "spoofed packet delivered"
    );
    assert!(net.nodes[2].0.e2e.counters().spoofed_source > 0);
}
