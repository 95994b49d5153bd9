//! Two connection managers on a virtual network with a virtual clock (the link core's `Pair`,
//! for connections), optionally with a link core on each side sending through them.
//!
//! A dial is a message to the other side, which accepts it (if it listens and has a slot)
//! and answers; frames and closes travel one latency apart. The QUIC TLS key each side shows
//! can be set, to play a node that authenticates as someone else. As the shell does, a sealed
//! datagram (a link session's) written on a connection marks it authenticated; without link
//! cores every frame counts as sealed. The inbound slot tests are in [`slots`].

use super::*;
use crate::identity::Identity;
use crate::link::{LinkConfig, Links, Recv};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

mod slots;

const IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
];
const TCP_PORT: u16 = 7820;
const QUIC_PORT: u16 = 7821;

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

fn ep(scheme: Scheme, side: usize) -> Endpoint {
    let port = match scheme {
        Scheme::Quic => QUIC_PORT,
        _ => TCP_PORT,
    };
    Endpoint::new(scheme, SocketAddr::new(IPS[side], port))
}

struct Side {
    conns: Conns,
    links: Option<Links>,
    listening: bool,
    /// The key this side's QUIC TLS presents (normally its own).
    tls_key: PublicKey,
    /// Frames received: (endpoint the link core hears them from, bytes).
    received: Vec<(Endpoint, Vec<u8>)>,
    dials: Vec<(Instant, Endpoint)>,
    closed: Vec<(Instant, ConnId, CloseReason)>,
    failed: Vec<(Endpoint, String)>,
    bound: HashMap<Endpoint, PublicKey>,
}

enum Msg {
    Syn {
        from: usize,
        dial: ConnId,
        to: Endpoint,
    },
    Accepted {
        dial: ConnId,
        key: Option<PublicKey>,
    },
    Refused {
        dial: ConnId,
    },
    Frame {
        id: ConnId,
        data: Vec<u8>,
    },
    Fin {
        id: ConnId,
    },
}

struct Net {
    now: Instant,
    sides: [Side; 2],
    latency: Duration,
    /// Dials to this side vanish (a dead host): they time out.
    blackhole: Option<usize>,
    /// Open virtual connections: one end's (side, id) to the other's.
    wires: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// Messages in flight: (arrival, to side, message), in the order sent.
    flight: Vec<(Instant, usize, Msg)>,
    next_port: u16,
}

fn side(n: u8, links: bool, now: Instant) -> Side {
    let id = identity(n);
    Side {
        conns: Conns::new(id.public_key()),
        links: links.then(|| Links::new(&id, LinkConfig::default(), u64::from(n), now)),
        listening: true,
        tls_key: id.public_key(),
        received: vec![],
        dials: vec![],
        closed: vec![],
        failed: vec![],
        bound: HashMap::new(),
    }
}

impl Net {
    fn new(links: bool) -> Net {
        let now = Instant::now();
        Net {
            now,
            sides: [side(1, links, now), side(2, links, now)],
            latency: Duration::from_millis(10),
            blackhole: None,
            wires: HashMap::new(),
            flight: vec![],
            next_port: 40000,
        }
    }

    fn send(&mut self, s: usize, to: Endpoint, frame: &[u8]) -> Send {
        let now = self.now;
        let r = self.sides[s].conns.handle_send(now, to, frame);
        if let Send::Write(id) = r {
            self.write(s, id, frame.to_vec());
        }
        self.collect();
        r
    }

    /// Writes `data` on side `s`'s connection `id`, as the shell does.
    fn write(&mut self, s: usize, id: ConnId, data: Vec<u8>) {
        let side = &mut self.sides[s];
        if side.links.is_none() || data.first() == Some(&crate::wire::TYPE_TRANSPORT) {
            side.conns.handle_authenticated(id);
        }
        self.transmit(s, id, data);
    }

    fn transmit(&mut self, s: usize, id: ConnId, data: Vec<u8>) {
        if let Some((t, pid)) = self.wires.get(&(s, id)).copied() {
            let at = self.now + self.latency;
            self.flight.push((at, t, Msg::Frame { id: pid, data }));
        }
    }

    /// Carries out what both sides asked for, until nothing is left.
    fn collect(&mut self) {
        let now = self.now;
        let mut busy = true;
        while busy {
            busy = false;
            for s in 0..2 {
                let mut sends = vec![];
                if let Some(l) = self.sides[s].links.as_mut() {
                    while let Some(t) = l.poll_transmit() {
                        sends.push(t);
                    }
                }
                for t in sends {
                    busy = true;
                    if let Send::Write(id) = self.sides[s].conns.handle_send(now, t.to, &t.data) {
                        self.write(s, id, t.data);
                    }
                }
                while let Some(a) = self.sides[s].conns.poll_action() {
                    busy = true;
                    self.act(s, a);
                }
                while let Some(e) = self.sides[s].conns.poll_event() {
                    busy = true;
                    let side = &mut self.sides[s];
                    match e {
                        Event::Bound { endpoint, key } => {
                            side.bound.insert(endpoint, key);
                            if let Some(l) = side.links.as_mut() {
                                l.bind_endpoint(endpoint, key);
                            }
                        }
                        Event::Unbound { endpoint } => {
                            side.bound.remove(&endpoint);
                            if let Some(l) = side.links.as_mut() {
                                l.unbind_endpoint(&endpoint);
                            }
                        }
                        Event::DialFailed { endpoint, why } => {
                            if let Some(l) = side.links.as_mut() {
                                l.transport_failed(&endpoint, why.clone());
                            }
                            side.failed.push((endpoint, why));
                        }
                    }
                }
            }
        }
    }

    fn act(&mut self, s: usize, a: Action) {
        let at = self.now + self.latency;
        match a {
            Action::Dial { id, to } => {
                self.sides[s].dials.push((self.now, to));
                let t = IPS.iter().position(|ip| *ip == to.addr.ip()).unwrap_or(s);
                if self.blackhole != Some(t) {
                    let syn = Msg::Syn {
                        from: s,
                        dial: id,
                        to,
                    };
                    self.flight.push((at, t, syn));
                }
            }
            Action::Write { id, frame } => self.write(s, id, frame),
            Action::Close { id, why } => {
                self.sides[s].closed.push((self.now, id, why));
                if let Some((t, pid)) = self.wires.remove(&(s, id)) {
                    self.wires.remove(&(t, pid));
                    self.flight.push((at, t, Msg::Fin { id: pid }));
                }
            }
        }
    }

    fn arrive(&mut self, t: usize, m: Msg) {
        let now = self.now;
        let at = now + self.latency;
        match m {
            Msg::Syn { from, dial, to } => {
                if !self.sides[t].listening {
                    self.flight.push((at, from, Msg::Refused { dial }));
                    return;
                }
                let source = match to.scheme {
                    Scheme::Quic => ep(Scheme::Quic, from),
                    _ => {
                        self.next_port += 1;
                        Endpoint::new(to.scheme, SocketAddr::new(IPS[from], self.next_port))
                    }
                };
                let Some(id) = self.sides[t].conns.handle_inbound(now, source) else {
                    self.flight.push((at, from, Msg::Refused { dial }));
                    return;
                };
                let quic = to.scheme == Scheme::Quic;
                let their_key = quic.then_some(self.sides[from].tls_key);
                self.sides[t].conns.handle_up(now, id, their_key);
                self.wires.insert((t, id), (from, dial));
                self.wires.insert((from, dial), (t, id));
                let key = quic.then_some(self.sides[t].tls_key);
                self.flight.push((at, from, Msg::Accepted { dial, key }));
            }
            Msg::Accepted { dial, key } => self.sides[t].conns.handle_up(now, dial, key),
            Msg::Refused { dial } => {
                let why = "TCP connect: Connection refused".to_string();
                self.sides[t].conns.handle_dial_failed(now, dial, why);
            }
            Msg::Frame { id, data } => {
                let side = &mut self.sides[t];
                let Some(from) = side.conns.handle_frame(now, id) else {
                    return;
                };
                if let Some(l) = side.links.as_mut() {
                    let mut out = vec![0u8; 2048];
                    if let Recv::Frame { len, .. } = l.handle_datagram(now, from, &data, &mut out) {
                        side.received.push((from, out[..len].to_vec()));
                    }
                } else {
                    side.received.push((from, data));
                }
            }
            Msg::Fin { id } => {
                self.wires.remove(&(t, id));
                self.sides[t].conns.handle_down(now, id);
            }
        }
    }

    /// Advances to the next arrival or timeout, not past `limit`, and handles it.
    fn step(&mut self, limit: Instant) {
        self.collect();
        let timers = self.sides.iter().flat_map(|s| {
            [
                s.conns.poll_timeout(),
                s.links.as_ref().and_then(|l| l.poll_timeout()),
            ]
        });
        let next = self
            .flight
            .iter()
            .map(|f| f.0)
            .chain(timers.flatten())
            .min()
            .unwrap_or(limit);
        self.now = self.now.max(next.min(limit));
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = later;
        for (_, t, m) in due {
            self.arrive(t, m);
            self.collect();
        }
        for s in &mut self.sides {
            s.conns.handle_timeout(now);
            if let Some(l) = s.links.as_mut() {
                l.handle_timeout(now);
            }
        }
        self.collect();
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end);
        }
    }

    /// The connection carrying `to` at side `s`, if one is up.
    fn carrier(&self, s: usize, to: Endpoint) -> Option<ConnId> {
        self.sides[s].conns.current.get(&to).copied()
    }
}

#[test]
fn the_first_send_dials_and_what_waited_is_written_once_up() {
    let mut n = Net::new(false);
    let b = ep(Scheme::Tcp, 1);
    assert_eq!(n.send(0, b, b"one"), Send::Queued);
    assert_eq!(n.send(0, b, b"two"), Send::Queued);
    assert_eq!(n.sides[0].dials.len(), 1, "one dial for both frames");
    n.run_for(Duration::from_millis(100));
    let got: Vec<&[u8]> = n.sides[1].received.iter().map(|r| &r.1[..]).collect();
    assert_eq!(got, [&b"one"[..], b"two"], "in order, once up");
    let id = n.carrier(0, b).expect("up");
    assert_eq!(n.send(0, b, b"three"), Send::Write(id));
    // B hears A from the connection's ephemeral source port, and answers over it.
    let from_a = n.sides[1].received[0].0;
    assert_eq!(from_a.addr.ip(), IPS[0]);
    assert!(matches!(n.send(1, from_a, b"back"), Send::Write(_)));
    n.run_for(Duration::from_millis(100));
    assert_eq!(n.sides[0].received.last().map(|r| r.0), Some(b));
    assert_eq!(n.sides[0].dials.len() + n.sides[1].dials.len(), 1);
}

#[test]
fn a_failed_endpoint_is_redialed_with_backoff_on_the_virtual_clock() {
    let mut n = Net::new(false);
    n.sides[1].listening = false;
    let b = ep(Scheme::Tcp, 1);
    let start = n.now;
    // The link core sends to it every 100 ms for 30 s.
    while n.now < start + Duration::from_secs(30) {
        n.send(0, b, b"init");
        n.run_for(Duration::from_millis(100));
    }
    let gaps: Vec<u64> = n.sides[0]
        .dials
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis() as u64)
        .collect();
    // Each refusal arrives one round trip (20 ms) after its dial; the next dial is the first
    // send after the backoff: 1, 2, 4 s, then 8 s at most.
    assert_eq!(gaps[..3], [1100, 2100, 4100], "{gaps:?}");
    assert!(gaps[3..].iter().all(|g| *g == 8100), "{gaps:?}");
    assert_eq!(n.sides[0].failed.len(), n.sides[0].dials.len());
    assert!(n.sides[0].failed[0].1.contains("refused"));
    let c = n.sides[0].conns.counters();
    assert!(c.dropped_backoff > 250, "{c:?}");
    assert_eq!(c.dropped_connection_lost, c.dial_failures);
    // It listens again: the next dial after the backoff links, and the backoff starts over.
    n.sides[1].listening = true;
    n.run_for(Duration::from_secs(8));
    n.send(0, b, b"again");
    n.run_for(Duration::from_millis(100));
    assert!(n.carrier(0, b).is_some());
}

#[test]
fn a_dial_that_hears_nothing_times_out_and_counts_as_failed() {
    let mut n = Net::new(false);
    n.blackhole = Some(1);
    let b = ep(Scheme::Quic, 1);
    let start = n.now;
    n.send(0, b, b"init");
    n.run_for(Duration::from_secs(6));
    assert_eq!(n.sides[0].closed.len(), 1);
    let (at, _, why) = n.sides[0].closed[0];
    assert_eq!((at - start, why), (CONNECT_TIMEOUT, CloseReason::TimedOut));
    assert_eq!(n.sides[0].failed.len(), 1, "reported to the link core");
    assert_eq!(n.sides[0].conns.len(), (0, 0));
}

#[test]
fn crossing_quic_connections_keep_the_one_the_lower_key_dialed_on_both_sides() {
    let lower = usize::from(identity(2).public_key() < identity(1).public_key());
    for first in [0, 1] {
        let mut n = Net::new(false);
        let (a, b) = (ep(Scheme::Quic, 0), ep(Scheme::Quic, 1));
        // Both dial at once (one 1 ms after the other).
        n.send(first, ep(Scheme::Quic, 1 - first), b"x");
        n.run_for(Duration::from_millis(1));
        n.send(1 - first, ep(Scheme::Quic, first), b"y");
        n.run_for(Duration::from_millis(200));
        let (ia, ib) = (
            n.carrier(0, b).expect("A up"),
            n.carrier(1, a).expect("B up"),
        );
        assert_eq!(n.wires.get(&(0, ia)), Some(&(1, ib)), "the same connection");
        assert_eq!(n.wires.len(), 2, "the other one is closed");
        let inbound = |s: usize, id: ConnId| n.sides[s].conns.conns[&id].inbound;
        let kept = [ia, ib];
        assert!(
            !inbound(lower, kept[lower]) && inbound(1 - lower, kept[1 - lower]),
            "kept the lower key's dial (first: {first})"
        );
        let crossing = |s: usize| n.sides[s].conns.counters().crossing_closed;
        assert_eq!(crossing(0) + crossing(1), 2, "each side closed one");
        // The link cores hear each other on the listening endpoints, and frames flow on the
        // connection kept.
        assert!(n.send(0, b, b"after").eq(&Send::Write(ia)));
        assert!(n.send(1, a, b"after").eq(&Send::Write(ib)));
        n.run_for(Duration::from_millis(100));
        for (s, from) in [(0, b), (1, a)] {
            let got = &n.sides[s].received;
            assert!(got.iter().all(|r| r.0 == from), "{:?}", got);
            assert_eq!(got.last().map(|r| &r.1[..]), Some(&b"after"[..]));
        }
    }
}

#[test]
fn a_newer_connection_replaces_an_old_one_from_a_restarted_peer() {
    let mut n = Net::new(false);
    let (a, b) = (ep(Scheme::Quic, 0), ep(Scheme::Quic, 1));
    n.send(0, b, b"x");
    n.run_for(Duration::from_secs(6));
    let old = n.carrier(1, a).expect("up");
    // A restarts: B does not hear its old connection end; A dials again.
    n.sides[0] = side(1, false, n.now);
    n.wires.retain(|k, _| k.0 != 0);
    n.send(0, b, b"y");
    n.run_for(Duration::from_millis(100));
    let new = n.carrier(1, a).expect("up");
    assert_ne!(old, new);
    let closed = &n.sides[1].closed;
    assert!(
        closed
            .iter()
            .any(|c| (c.1, c.2) == (old, CloseReason::Replaced)),
        "{closed:?}"
    );
    assert_eq!(n.sides[1].conns.counters().replaced, 1);
    assert_eq!(n.sides[1].bound.get(&a), Some(&identity(1).public_key()));
}

#[test]
fn a_connection_that_hears_nothing_is_closed_after_idle() {
    let mut n = Net::new(false);
    let b = ep(Scheme::Tcp, 1);
    n.send(0, b, b"x");
    n.run_for(Duration::from_millis(100));
    let id = n.carrier(0, b).expect("up");
    // A sends every second for 12 s; B answers for 5 s, then falls silent.
    let from_a = n.sides[1].received[0].0;
    let mut last_rx = n.now;
    for i in 0..12 {
        n.send(0, b, b"data");
        if i < 5 {
            n.send(1, from_a, b"keepalive");
            last_rx = n.now + n.latency;
        }
        n.run_for(Duration::from_secs(1));
    }
    n.run_for(Duration::from_secs(20));
    let closed = &n.sides[0].closed;
    assert_eq!(closed[..], [(last_rx + IDLE, id, CloseReason::Idle)]);
    assert_eq!(n.carrier(0, b), None);
    assert_eq!(n.sides[0].conns.counters().idle_closed, 1);
    // B heard the close: its side is gone too, and its inbound slot is free.
    assert_eq!(n.sides[1].conns.len(), (0, 0));
    assert_eq!(n.sides[1].conns.inbound_slots(), 0);
}

#[test]
fn frames_kept_for_a_dial_are_bounded_per_endpoint_and_in_all() {
    let mut n = Net::new(false);
    n.blackhole = Some(1);
    let b = ep(Scheme::Tcp, 1);
    let sent: Vec<Send> = (0..40).map(|_| n.send(0, b, b"frame")).collect();
    let queued = sent.iter().filter(|s| **s == Send::Queued).count();
    assert_eq!(queued, MAX_PENDING_PER_ENDPOINT);
    assert_eq!(n.sides[0].conns.counters().dropped_pending_full, 8);
    // Across endpoints, big frames fill the byte bound.
    let big = vec![0u8; 60_000];
    let mut kept = 0;
    for port in 1..=10 {
        let to = Endpoint::new(Scheme::Tcp, SocketAddr::new(IPS[1], port));
        kept += usize::from(n.send(0, to, &big) == Send::Queued);
    }
    assert_eq!(
        kept,
        (MAX_PENDING_BYTES - 5 * MAX_PENDING_PER_ENDPOINT) / big.len()
    );
    assert_eq!(
        n.send(0, b, &vec![0; MAX_FRAME + 1]),
        Send::Dropped(DropReason::TooLong)
    );
    // They time out: everything kept is dropped and counted, the bytes are free again.
    n.run_for(Duration::from_secs(6));
    let c = n.sides[0].conns.counters().clone();
    assert_eq!(c.dropped_connection_lost, (queued + kept) as u64);
    assert_eq!(n.sides[0].conns.pending_bytes, 0);
}

#[test]
fn frames_kept_for_a_dial_leave_on_the_connection_the_other_side_made_first() {
    let mut c = Conns::new(identity(1).public_key());
    let now = Instant::now();
    let b = ep(Scheme::Quic, 1);
    assert_eq!(c.handle_send(now, b, b"one"), Send::Queued);
    let Some(Action::Dial { id: dial, .. }) = c.poll_action() else {
        panic!("no dial");
    };
    // B's own connection to us comes up first, while ours is still being set up.
    let inbound = c.handle_inbound(now, b).expect("slot");
    c.handle_up(now, inbound, Some(identity(2).public_key()));
    let frame = b"one".to_vec();
    assert_eq!(c.poll_action(), Some(Action::Write { id: inbound, frame }));
    assert_eq!(c.handle_send(now, b, b"two"), Send::Write(inbound));
    // Our dial completes and wins or loses the tie-break; nothing kept is lost either way.
    c.handle_up(now, dial, Some(identity(2).public_key()));
    assert_eq!(c.counters().dropped(), 0);
    assert_eq!(c.len(), (1, 0));
    assert_eq!(c.pending_bytes, 0);
}

#[test]
fn an_inbound_tcp_source_port_is_never_dialed() {
    let mut n = Net::new(false);
    n.send(0, ep(Scheme::Tcp, 1), b"x");
    n.run_for(Duration::from_millis(100));
    let from_a = n.sides[1].received[0].0;
    // A closes it; B still has frames for A's ephemeral port: they are dropped, not dialed.
    let id = n.carrier(0, ep(Scheme::Tcp, 1)).expect("up");
    n.sides[0].conns.close(id, CloseReason::Idle);
    n.run_for(Duration::from_millis(100));
    assert_eq!(
        n.send(1, from_a, b"y"),
        Send::Dropped(DropReason::InboundOnly)
    );
    assert!(n.sides[1].dials.is_empty());
}

#[test]
fn a_connection_authenticated_as_another_key_never_carries_this_link() {
    // B's QUIC TLS shows key 3; the Noise handshake over it presents B's own key 2: A
    // refuses the link, however long it tries.
    let mut n = Net::new(true);
    n.sides[1].tls_key = identity(3).public_key();
    let b = ep(Scheme::Quic, 1);
    let uri: crate::uri::PeerUri = format!("{b}").parse().expect("uri");
    let now = n.now;
    n.sides[0]
        .links
        .as_mut()
        .expect("links")
        .add_peer(uri.clone(), now);
    n.run_for(Duration::from_secs(10));
    assert_eq!(n.sides[0].bound.get(&b), Some(&identity(3).public_key()));
    let a_links = n.sides[0].links.as_ref().expect("links");
    assert_eq!(
        a_links.peers().count(),
        0,
        "linked over a connection bound to key 3"
    );
    // An honest B links over the same kind of connection, and the link stays up: its
    // keepalives keep the connection from being idle.
    let mut n = Net::new(true);
    n.sides[0].links.as_mut().expect("links").add_peer(uri, now);
    n.run_for(Duration::from_secs(30));
    let a_links = n.sides[0].links.as_ref().expect("links");
    assert_eq!(a_links.peers().count(), 1);
    assert_eq!(n.sides[0].bound.get(&b), Some(&identity(2).public_key()));
    assert!(
        n.sides
            .iter()
            .all(|s| s.closed.iter().all(|c| c.2 != CloseReason::Idle))
    );
    assert_eq!(n.sides[0].dials.len() + n.sides[1].dials.len(), 1);
    // The connection ends: the binding goes with it.
    let id = n.carrier(0, b).expect("up");
    n.sides[0].conns.handle_down(n.now, id);
    n.collect();
    assert_eq!(n.sides[0].bound.get(&b), None);
}

#[test]
fn tables_stay_bounded_under_many_failing_endpoints() {
    let mut c = Conns::new(identity(1).public_key());
    let mut now = Instant::now();
    for round in 0..8u16 {
        for i in 0..400u16 {
            let to = Endpoint::new(Scheme::Tcp, SocketAddr::new(IPS[1], round * 400 + i));
            if c.handle_send(now, to, b"x") == Send::Queued {
                while let Some(a) = c.poll_action() {
                    if let Action::Dial { id, .. } = a {
                        c.handle_dial_failed(now, id, "refused".into());
                    }
                }
            }
        }
        now += Duration::from_millis(10);
    }
    assert!(c.redial.len().0 <= MAX_BACKOFFS);
    assert!(c.dialing.len() <= MAX_DIALING && c.is_empty());
    while c.poll_event().is_some() {}
}
