//! Two link cores on a virtual network with a virtual clock (quinn's `Pair`, for links).

use super::*;
use crate::identity::Identity;
use crate::uri::Scheme;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const A_ADDR: Endpoint = Endpoint {
    scheme: Scheme::Udp,
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7820),
};
const B_ADDR: Endpoint = Endpoint {
    scheme: Scheme::Udp,
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 7820),
};
/// Another address of B's that it never answers from (multi-homed, privacy addresses).
const B_ALIAS: Endpoint = Endpoint {
    scheme: Scheme::Udp,
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 22)), 7820),
};
/// A second path between the two: A's and B's ends of it (say TCP over another network).
const A2: Endpoint = Endpoint {
    scheme: Scheme::Tcp,
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)), 40000),
};
const B2: Endpoint = Endpoint {
    scheme: Scheme::Tcp,
    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2)), 7820),
};

struct Node {
    links: Links,
    delivered: Vec<Vec<u8>>,
}

struct Pair {
    now: Instant,
    a: Node,
    b: Node,
    /// Datagrams in flight: (arrival, from, to, bytes).
    wire: Vec<(Instant, Endpoint, Endpoint, Vec<u8>)>,
    latency: Duration,
    /// Latency of the second path (A2–B2).
    latency2: Duration,
    /// The second path drops everything.
    cut2: bool,
    /// Drop everything sent by this address (a dead or partitioned node).
    blackhole: Option<Endpoint>,
    captured: Vec<(Endpoint, Vec<u8>)>,
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

fn uri(addr: Endpoint, key: Option<PublicKey>) -> PeerUri {
    let mut s = format!("{addr}");
    if let Some(k) = key {
        s.push_str(&format!("?key={k}"));
    }
    s.parse().expect("test uri")
}

impl Pair {
    fn new(b_pin: Option<PublicKey>) -> Pair {
        let now = Instant::now();
        let mut a = Links::new(&identity(1), LinkConfig::default(), 1, now);
        let b = Links::new(&identity(2), LinkConfig::default(), 2, now);
        a.add_peer(uri(B_ADDR, b_pin), now);
        Pair {
            now,
            a: Node {
                links: a,
                delivered: vec![],
            },
            b: Node {
                links: b,
                delivered: vec![],
            },
            wire: vec![],
            latency: Duration::from_millis(10),
            latency2: Duration::from_millis(10),
            cut2: false,
            blackhole: None,
            captured: vec![],
        }
    }

    fn node(&mut self, addr: Endpoint) -> &mut Node {
        if addr == A_ADDR || addr == A2 {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Where a datagram from node `me` to `to` comes from: the same path's near end.
    fn source(me: Endpoint, to: Endpoint) -> Endpoint {
        match to {
            t if t == A2 => B2,
            t if t == B2 => A2,
            _ => me,
        }
    }

    fn collect(&mut self) {
        for me in [A_ADDR, B_ADDR] {
            let now = self.now;
            while let Some(t) = self.node(me).links.poll_transmit() {
                let from = Self::source(me, t.to);
                let second = from == A2 || from == B2;
                if self.blackhole == Some(me) || (second && self.cut2) {
                    continue;
                }
                let latency = if second { self.latency2 } else { self.latency };
                self.captured.push((from, t.data.clone()));
                self.wire.push((now + latency, from, t.to, t.data));
            }
        }
    }

    /// Advances to the next event (arrival or timeout), but not past `limit`, and processes it.
    fn step(&mut self, limit: Instant) {
        self.collect();
        let next_arrival = self.wire.iter().map(|w| w.0).min();
        let next_timer = [self.a.links.poll_timeout(), self.b.links.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let t = match (next_arrival, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => limit,
        };
        self.now = self.now.max(t.min(limit));
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
        self.wire = later;
        for (_, from, to, data) in due {
            if ![A_ADDR, B_ADDR, A2, B2, B_ALIAS].contains(&to) {
                continue;
            }
            let node = self.node(to);
            let mut out = vec![0u8; 2048];
            if let Recv::Frame { len, .. } = node.links.handle_datagram(now, from, &data, &mut out)
            {
                node.delivered.push(out[1..len].to_vec());
            }
        }
        self.a.links.handle_timeout(now);
        self.b.links.handle_timeout(now);
        self.collect();
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end);
        }
    }

    /// Sends a routing frame carrying an IPv6 packet from node `from` to its peer; returns
    /// whether it left.
    fn send(&mut self, from: Endpoint, src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> bool {
        let now = self.now;
        let latency = self.latency;
        let mut buf = vec![wire::frame::ROUTING];
        buf.extend(ip_packet(src, dst, payload));
        let mut out = vec![0u8; buf.len() + wire::TRANSPORT_OVERHEAD];
        let peer_key = if from == A_ADDR {
            identity(2)
        } else {
            identity(1)
        }
        .public_key();
        let Some(link) = self.node(from).links.peers.get(&peer_key).map(|p| p.link) else {
            return false;
        };
        match self.node(from).links.encapsulate(now, link, &buf, &mut out) {
            Send::Transmit { to, len } => {
                if self.blackhole != Some(from) {
                    self.captured.push((from, out[..len].to_vec()));
                    self.wire
                        .push((now + latency, from, to, out[..len].to_vec()));
                }
                true
            }
            Send::Dropped(_) => false,
        }
    }

    fn up(&self) -> bool {
        let a = identity(1).public_key();
        let b = identity(2).public_key();
        self.a.links.peers.contains_key(&b) && self.b.links.peers.contains_key(&a)
    }
}

fn ip_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = 59;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn addr(n: u8) -> Ipv6Addr {
    identity(n).address()
}

#[test]
fn handshake_then_packets_both_ways() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(100));
    assert!(p.up(), "link did not come up");
    assert!(p.send(A_ADDR, addr(1), addr(2), 1000));
    assert!(p.send(B_ADDR, addr(2), addr(1), 500));
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.b.delivered, vec![ip_packet(addr(1), addr(2), 1000)]);
    assert_eq!(p.a.delivered, vec![ip_packet(addr(2), addr(1), 500)]);
    // Both ends of the link see the same suite and one session each.
    let b_key = identity(2).public_key();
    assert_eq!(p.a.links.peers[&b_key].sessions.len(), 1);
}

#[test]
fn link_stays_up_idle_and_rekeys() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_secs(600));
    assert!(p.up());
    let b_key = identity(2).public_key();
    let peer = &p.a.links.peers[&b_key];
    // Rekeyed several times (every 120 s), never more than MAX_SESSIONS kept.
    assert!(
        p.a.links.counters.handshakes_completed >= 4,
        "{:?}",
        p.a.links.counters
    );
    assert!(peer.sessions.len() <= peer::MAX_SESSIONS);
    assert!(
        peer.sessions
            .iter()
            .all(|s| p.now < s.created + Duration::from_secs(180))
    );
    assert!(p.send(A_ADDR, addr(1), addr(2), 100));
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.b.delivered.len(), 1);
}

#[test]
fn pinned_key_mismatch_is_refused() {
    let wrong = identity(3).public_key();
    let mut p = Pair::new(Some(wrong));
    p.run_for(Duration::from_secs(5));
    assert!(!p.up());
    assert!(p.a.links.counters.dropped.refused > 0);
    let d = &p.a.links.dialers()[0];
    assert!(
        d.last_error.as_deref().unwrap_or("").contains("pinned"),
        "{:?}",
        d.last_error
    );
    // And the right pin links.
    let mut p = Pair::new(Some(identity(2).public_key()));
    p.run_for(Duration::from_millis(100));
    assert!(p.up());
}

#[test]
fn inbound_from_a_pinned_address_with_another_key_is_refused() {
    // B is configured on A with a wrong pin; B dials A (A does not dial: its dialer is pinned
    // to a key nobody has, and every attempt is refused).
    let mut p = Pair::new(Some(identity(3).public_key()));
    p.b.links.add_peer(uri(A_ADDR, None), p.now);
    p.run_for(Duration::from_secs(3));
    assert!(!p.up());
    assert!(p.a.links.counters.dropped.refused > 0);
}

#[test]
fn replays_and_garbage_are_dropped_and_counted() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(100));
    assert!(p.send(A_ADDR, addr(1), addr(2), 200));
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.b.delivered.len(), 1);
    let captured: Vec<_> = p
        .captured
        .iter()
        .filter(|(f, _)| *f == A_ADDR)
        .cloned()
        .collect();
    let now = p.now;
    let mut out = vec![0u8; 2048];
    let sessions_before = p.b.links.counters.handshakes_completed;
    for (_, data) in &captured {
        let r = p.b.links.handle_datagram(now, A_ADDR, data, &mut out);
        // A replayed Init is answered (it is unauthenticated by design, and answered with
        // fewer bytes); everything else is refused.
        if data[0] != wire::TYPE_INIT {
            assert!(matches!(r, Recv::Dropped(_)), "replay accepted: {r:?}");
        }
    }
    assert_eq!(p.b.links.counters.handshakes_completed, sessions_before);
    assert!(p.b.links.counters.dropped.replay >= 1);
    assert_eq!(p.b.delivered.len(), 1);
    // Deterministic garbage of every length and type byte: no panic, all dropped.
    let mut x = 12345u64;
    for i in 0..20_000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x as usize) % 1600;
        let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        if let Some(b) = d.first_mut() {
            *b = (i % 6) as u8;
        }
        let r = p.b.links.handle_datagram(now, A_ADDR, &d, &mut out);
        assert!(
            !matches!(r, Recv::Frame { .. }),
            "garbage delivered as a frame"
        );
    }
    // Garbage answered by handshake responses never exceeds what it cost to send.
    p.run_for(Duration::from_millis(100));
    assert!(p.send(A_ADDR, addr(1), addr(2), 200));
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.b.delivered.len(), 2, "link broken by garbage");
}

#[test]
fn peer_restart_resumes_quickly() {
    let mut p = Pair::new(None);
    p.b.links.add_peer(uri(A_ADDR, None), p.now);
    p.run_for(Duration::from_millis(500));
    assert!(p.up());
    // B dies (kill -9) and comes back 3 s later with the same identity and config.
    p.blackhole = Some(B_ADDR);
    p.run_for(Duration::from_secs(3));
    p.blackhole = None;
    let now = p.now;
    p.b.links = Links::new(&identity(2), LinkConfig::default(), 99, now);
    p.b.links.add_peer(uri(A_ADDR, None), now);
    p.b.delivered.clear();
    let restarted = p.now;
    let mut resumed = None;
    while p.now < restarted + Duration::from_secs(5) {
        p.send(A_ADDR, addr(1), addr(2), 64);
        p.run_for(Duration::from_millis(100));
        if !p.b.delivered.is_empty() {
            resumed = Some(p.now - restarted);
            break;
        }
    }
    let took = resumed.expect("traffic did not resume within 5 s");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn passive_side_restart_is_noticed_by_the_sender() {
    // Only A dials. B restarts and does not dial back: A must notice from silence.
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    let now = p.now;
    p.b.links = Links::new(&identity(2), LinkConfig::default(), 77, now);
    p.b.delivered.clear();
    let start = p.now;
    while p.now < start + Duration::from_secs(10) && p.b.delivered.is_empty() {
        p.send(A_ADDR, addr(1), addr(2), 64);
        p.run_for(Duration::from_millis(100));
    }
    assert!(!p.b.delivered.is_empty(), "A never re-handshook");
    assert!(
        p.now - start < Duration::from_secs(8),
        "took {:?}",
        p.now - start
    );
}

#[test]
fn dead_peer_times_out_and_redials_with_backoff() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    p.blackhole = Some(B_ADDR);
    p.run_for(Duration::from_secs(20));
    let b_key = identity(2).public_key();
    assert!(!p.a.links.peers.contains_key(&b_key), "peer should be down");
    let sent_before = p.a.links.counters.tx_datagrams;
    p.run_for(Duration::from_secs(60));
    let attempts = p.a.links.counters.tx_datagrams - sent_before;
    // Backoff caps at 16 s: a handful of attempts a minute, not one per second.
    assert!((3..=12).contains(&attempts), "{attempts} attempts in 60 s");
    p.blackhole = None;
    p.run_for(Duration::from_secs(20));
    assert!(p.up(), "did not relink after the peer came back");
}

#[test]
fn a_peer_that_starts_late_is_reached_within_about_a_second() {
    // A dials B, but B is not there yet (its datagrams go nowhere); B appears 0.3 s later.
    let mut p = Pair::new(None);
    p.blackhole = Some(B_ADDR);
    p.run_for(Duration::from_millis(300));
    p.blackhole = None;
    let start = p.now;
    while !p.up() && p.now < start + Duration::from_secs(5) {
        p.run_for(Duration::from_millis(10));
    }
    assert!(p.up());
    let took = p.now - start;
    assert!(took <= Duration::from_millis(1100), "took {took:?}");
}

#[test]
fn timers_never_spin() {
    // Whatever the state, a handled timeout moves the next one into the future.
    let mut p = Pair::new(None);
    p.b.links.add_peer(uri(A_ADDR, None), p.now);
    let end = p.now + Duration::from_secs(400);
    let mut steps = 0;
    while p.now < end {
        p.step(end);
        steps += 1;
        for links in [&p.a.links, &p.b.links] {
            if let Some(t) = links.poll_timeout() {
                assert!(
                    t > p.now || !p.wire.is_empty(),
                    "timer due at once after handling"
                );
            }
        }
    }
    // Idle links: a keepalive every 5 s and a rekey every 2 minutes, not thousands of wake-ups.
    assert!(steps < 2_000, "{steps} steps for 400 s of idle link");
}

#[test]
fn forged_handshake_messages_do_not_kill_a_handshake_in_flight() {
    // An attacker who sees the Init (its index travels in clear) answers first with garbage,
    // and sends B a garbage Final for B's index: the real handshake still completes.
    let mut p = Pair::new(None);
    p.step(p.now + Duration::from_millis(1)); // A sends its Init
    let init = p
        .wire
        .iter()
        .find(|w| w.3[0] == wire::TYPE_INIT)
        .expect("init")
        .3
        .clone();
    let Ok(wire::Message::Init { sender, .. }) = wire::parse(&init) else {
        panic!("init")
    };
    let mut forged = vec![0x5au8; 12 + 200];
    wire::emit_response_header(&mut forged, 77, sender);
    let now = p.now;
    let mut out = vec![0u8; 2048];
    let r = p.a.links.handle_datagram(now, B_ADDR, &forged, &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::Handshake));
    // Let B answer, then forge a Final for B's pending index before A's real one arrives.
    p.run_for(Duration::from_millis(11));
    for idx in p.b.links.responding.keys().copied().collect::<Vec<_>>() {
        let mut f = vec![0x33u8; 8 + 100];
        wire::emit_final_header(&mut f, idx);
        let r = p.b.links.handle_datagram(now, A_ADDR, &f, &mut out);
        assert_eq!(r, Recv::Dropped(DropReason::Handshake));
    }
    p.run_for(Duration::from_millis(100));
    assert!(p.up(), "a forged message killed the handshake");
}

/// Exchanges queued datagrams between two cores until both are quiet.
fn exchange(a: &mut Links, a_addr: Endpoint, b: &mut Links, b_addr: Endpoint, now: Instant) {
    let mut out = vec![0u8; 2048];
    for _ in 0..10 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, a_addr, &t.data, &mut out);
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, b_addr, &t.data, &mut out);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

#[test]
fn inbound_links_beyond_max_peers_are_refused_but_configured_peers_still_link() {
    let now = Instant::now();
    let cfg = LinkConfig {
        max_peers: 1,
        ..LinkConfig::default()
    };
    let mut hub = Links::new(&identity(10), cfg, 10, now);
    let hub_addr = Endpoint::udp("10.0.0.10:7820".parse().expect("literal"));
    let c_addr = Endpoint::udp("10.0.0.3:7820".parse().expect("literal"));
    hub.add_peer(uri(c_addr, None), now); // C is configured on the hub
    let mut a = Links::new(&identity(1), LinkConfig::default(), 1, now);
    let mut b = Links::new(&identity(2), LinkConfig::default(), 2, now);
    let mut c = Links::new(&identity(3), LinkConfig::default(), 3, now);
    for (n, addr) in [(&mut a, A_ADDR), (&mut b, B_ADDR)] {
        n.add_peer(uri(hub_addr, None), now);
        n.handle_timeout(now);
        exchange(n, addr, &mut hub, hub_addr, now);
    }
    assert_eq!(
        hub.peers().count(),
        1,
        "the second unconfigured peer must be refused"
    );
    assert!(hub.counters().dropped.refused >= 1);
    c.add_peer(uri(hub_addr, None), now);
    c.handle_timeout(now);
    exchange(&mut c, c_addr, &mut hub, hub_addr, now);
    assert_eq!(
        hub.peers().count(),
        2,
        "a configured peer links even beyond max_peers"
    );
}

#[test]
fn a_peer_denied_by_the_circle_policy_is_refused_and_told_so() {
    // A dials B; B's policy denies A as a peer. B refuses at the last handshake message and
    // says so on the session A already holds: A drops the link at once and backs off, instead
    // of believing in a link that never carries anything.
    let mut p = Pair::new(None);
    let a_key = identity(1).public_key();
    let text = format!(
        "[circles]\nblocked = [\"{a_key}\"]\n[[rules]]\naction = \"peer\"\ndeny = \"circle:blocked\"\n"
    );
    let policy = acl::Policy::load(&text, "b.toml").expect("policy");
    let now = p.now;
    p.b.links.set_policy(Some(std::sync::Arc::new(policy)), now);
    p.run_for(Duration::from_secs(3));
    assert!(!p.up());
    assert!(
        p.a.links.peers.is_empty(),
        "A must not keep a half link: {:?} {:?} B: {:?}",
        p.a.links.counters,
        p.a.links.dialers()[0].last_error,
        p.b.links.counters
    );
    assert!(p.b.links.counters.policy_refused > 0);
    let d = &p.a.links.dialers()[0];
    assert!(
        d.last_error.as_deref().unwrap_or("").contains("refused"),
        "{:?}",
        d.last_error
    );
    assert!(d.failures > 0, "A backs off");
    let attempts = p.b.links.counters.policy_refused;
    p.run_for(Duration::from_secs(3));
    assert!(
        p.b.links.counters.policy_refused <= attempts + 3,
        "A dials with back-off, not in a loop"
    );
    // Allowed again (live): a later dial links, and an established link of a newly denied
    // peer is closed on both sides.
    let open = acl::Policy::load("", "b.toml").expect("empty policy");
    p.b.links.set_policy(Some(std::sync::Arc::new(open)), p.now);
    p.run_for(Duration::from_secs(20));
    assert!(p.up(), "linked once allowed");
    let policy = acl::Policy::load(&text, "b.toml").expect("policy");
    let now = p.now;
    assert_eq!(
        p.b.links.set_policy(Some(std::sync::Arc::new(policy)), now),
        1
    );
    p.run_for(Duration::from_millis(100));
    assert!(p.b.links.peers.is_empty() && p.a.links.peers.is_empty());
}

#[test]
fn discovered_neighbours_link_and_are_forgotten_when_quiet() {
    let mut p = Pair::new(None);
    assert!(p.a.links.remove_peer(&uri(B_ADDR, None)));
    let (ka, kb) = (identity(1).public_key(), identity(2).public_key());
    let now = p.now;
    assert_eq!(p.a.links.discovered(kb, B_ADDR.addr, now), Discovered::New);
    assert_eq!(p.b.links.discovered(ka, A_ADDR.addr, now), Discovered::New);
    assert_eq!(
        p.a.links.discovered(kb, B_ADDR.addr, now),
        Discovered::Known
    );
    assert_eq!(
        p.a.links.discovered(ka, A_ADDR.addr, now),
        Discovered::Known,
        "own key"
    );
    p.run_for(Duration::from_secs(1));
    assert!(p.a.links.peers.contains_key(&kb) && p.b.links.peers.contains_key(&ka));
    // Announcements stop and the neighbour dies: the link goes down, then it is forgotten.
    p.blackhole = Some(B_ADDR);
    p.run_for(Duration::from_secs(15));
    assert!(!p.a.links.peers.contains_key(&kb));
    assert!(
        p.a.links.dialers().is_empty(),
        "a quiet neighbour is forgotten"
    );
}

#[test]
fn discovery_respects_the_peer_policy_and_the_bound() {
    let mut p = Pair::new(None);
    let kb = identity(2).public_key();
    let text = format!("[[rules]]\naction = \"peer\"\ndeny = \"{kb}\"\n");
    let policy = acl::Policy::load(&text, "a.toml").expect("policy");
    p.a.links
        .set_policy(Some(std::sync::Arc::new(policy)), p.now);
    let other: SocketAddr = "10.0.0.9:7820".parse().expect("addr");
    assert_eq!(p.a.links.discovered(kb, other, p.now), Discovered::Denied);
    let mut n = 0;
    for i in 0..200u8 {
        let key = identity(100u8.wrapping_add(i)).public_key();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), 7820);
        if p.b.links.discovered(key, addr, p.now) == Discovered::New {
            n += 1;
        }
    }
    assert_eq!(n, MAX_DISCOVERED);
}

#[test]
fn a_link_over_a_transport_bound_to_another_key_is_refused() {
    // B's QUIC connection authenticated key 3, but the Noise handshake over it presents B's
    // own key (2): A refuses the link.
    let mut p = Pair::new(None);
    p.a.links.bind_endpoint(B_ADDR, identity(3).public_key());
    p.run_for(Duration::from_secs(2));
    assert!(
        p.a.links.peers.is_empty(),
        "linked over a connection bound to another key"
    );
    // Bound to the right key, it links.
    p.a.links.bind_endpoint(B_ADDR, identity(2).public_key());
    p.run_for(Duration::from_secs(20));
    assert!(p.a.links.peers.contains_key(&identity(2).public_key()));
}

#[test]
fn the_faster_of_two_paths_carries_the_link_and_losing_it_drops_no_session() {
    let mut p = Pair::new(None);
    p.latency = Duration::from_millis(20);
    p.latency2 = Duration::from_millis(2);
    let now = p.now;
    p.a.links.add_peer(uri(B2, None), now);
    p.run_for(Duration::from_secs(6));
    let kb = identity(2).public_key();
    let ka = identity(1).public_key();
    let a_peer = &p.a.links.peers[&kb];
    assert_eq!(a_peer.paths.len(), 2, "{:?}", a_peer.paths);
    assert_eq!(a_peer.endpoint, B2, "A uses the 2 ms path");
    assert_eq!(p.b.links.peers[&ka].endpoint, A2, "B uses the 2 ms path");
    let link = a_peer.link;
    let downs_before = count_link_downs(&mut p);
    // The fast path dies: both move to the slow one within a few seconds, on the same link.
    p.cut2 = true;
    p.run_for(Duration::from_secs(4));
    assert_eq!(p.a.links.peers[&kb].endpoint, B_ADDR);
    assert_eq!(p.b.links.peers[&ka].endpoint, A_ADDR);
    assert_eq!(p.a.links.peers[&kb].link, link, "the same link");
    assert_eq!(count_link_downs(&mut p), downs_before, "no link went down");
    // Traffic flows on the slow path.
    assert!(p.send(A_ADDR, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 100));
    p.run_for(Duration::from_millis(100));
    assert!(!p.b.delivered.is_empty());
    // It heals, and is better again: the link goes back.
    p.cut2 = false;
    p.run_for(Duration::from_secs(6));
    assert_eq!(p.a.links.peers[&kb].endpoint, B2);
}

fn count_link_downs(p: &mut Pair) -> usize {
    let mut n = 0;
    for node in [&mut p.a, &mut p.b] {
        while let Some(e) = node.links.poll_event() {
            if matches!(e, Event::LinkDown { .. }) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_peer_answering_from_another_address_is_not_dialed_in_a_loop() {
    let mut p = Pair::new(None);
    assert!(p.a.links.remove_peer(&uri(B_ADDR, None)));
    let now = p.now;
    p.a.links.add_peer(uri(B_ALIAS, None), now);
    p.run_for(Duration::from_secs(30));
    assert!(p.a.links.peers.contains_key(&identity(2).public_key()));
    let inits = p
        .captured
        .iter()
        .filter(|(from, d)| *from == A_ADDR && d.first() == Some(&wire::TYPE_INIT))
        .count();
    assert!(inits <= 6, "{inits} handshake inits in 30 s");
}

mod cookies;
mod liveness;
