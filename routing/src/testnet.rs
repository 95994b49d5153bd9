//! A virtual network of routing cores, for tests: quinn's two-endpoint `Pair` generalised to N
//! nodes on a graph. Links have a latency; a virtual clock jumps from event to event (a
//! message arriving, a node's timer), so a minute of network time runs in milliseconds, and
//! the same seed gives the same run. It drives the real [`Router`]; nothing here decides a
//! route. (Large simulations use the `simulations` crate, which is built for scale.)

use crate::wire::{RoutedHeader, kind};
use crate::{Event, Handled, Key, PeerId, Router, RouterConfig};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// A message on a link: arrival, order, from, to, bytes.
type InFlight = (Instant, u64, usize, usize, Vec<u8>);

/// One simulated node.
pub struct Node {
    /// Its router.
    pub router: Router,
    /// Its secret seed.
    pub secret: [u8; 32],
    /// Its key.
    pub key: Key,
    /// Traffic delivered: (source key as the header says, payload, hops taken).
    pub delivered: Vec<(Key, Vec<u8>, u8)>,
    /// Events it reported.
    pub events: Vec<Event>,
}

/// The network.
pub struct Net {
    /// Virtual time.
    pub now: Instant,
    /// When the run started.
    pub start: Instant,
    /// The nodes, sorted by key.
    pub nodes: Vec<Node>,
    /// Undirected links and their one-way latency.
    pub links: BTreeMap<(usize, usize), Duration>,
    /// Links that drop everything (cut by a test).
    pub cut: BTreeSet<(usize, usize)>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// The routers' configuration.
    pub cfg: RouterConfig,
    /// Every message sent on a link: (from, to, bytes), for attack tests.
    pub captured: Vec<(usize, usize, Vec<u8>)>,
    /// Whether to fill `captured`.
    pub capture: bool,
    /// Nodes each traffic payload passed through (filled when `trace` is set).
    pub traces: BTreeMap<Vec<u8>, Vec<usize>>,
    /// Whether to fill `traces`.
    pub trace: bool,
    /// Messages for which this returns true are lost on the link (set by a test).
    pub lose: Option<fn(&[u8]) -> bool>,
}

/// A secret whose public key sorts by `rank` among the test's nodes (so tests know the root).
pub fn secrets(n: usize, seed: u64) -> Vec<[u8; 32]> {
    let mut v: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(seed.wrapping_mul(0x9e37_79b9) ^ i as u64).to_le_bytes());
            s[8] = i as u8;
            s[9] = (i >> 8) as u8;
            s
        })
        .collect();
    v.sort_by_key(|s| {
        ed25519_dalek::SigningKey::from_bytes(s)
            .verifying_key()
            .to_bytes()
    });
    v
}

fn norm(a: usize, b: usize) -> (usize, usize) {
    if a < b { (a, b) } else { (b, a) }
}

impl Net {
    /// Nodes sorted by key: node 0 has the lowest key (the natural root).
    pub fn new(n: usize, edges: &[(usize, usize)], cfg: RouterConfig, seed: u64) -> Net {
        let start = Instant::now();
        let nodes = secrets(n, seed)
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let router = Router::new(&s, cfg.clone(), 1_000_000, seed ^ i as u64, start);
                Node {
                    key: router.key(),
                    router,
                    secret: s,
                    delivered: vec![],
                    events: vec![],
                }
            })
            .collect();
        let mut net = Net {
            now: start,
            start,
            nodes,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            cfg,
            captured: vec![],
            capture: false,
            traces: BTreeMap::new(),
            trace: false,
            lose: None,
        };
        for &(a, b) in edges {
            net.connect(a, b, Duration::from_millis(5));
        }
        net
    }

    /// Links `a` and `b` with this one-way latency.
    pub fn connect(&mut self, a: usize, b: usize, latency: Duration) {
        self.links.insert(norm(a, b), latency);
        let (ka, kb) = (self.nodes[a].key, self.nodes[b].key);
        let now = self.now;
        self.nodes[a]
            .router
            .peer_up(now, PeerId(b as u64), kb, Some(latency * 2));
        self.nodes[b]
            .router
            .peer_up(now, PeerId(a as u64), ka, Some(latency * 2));
        self.collect(a);
        self.collect(b);
    }

    /// Takes a link down on both sides (like a link timeout).
    pub fn disconnect(&mut self, a: usize, b: usize) {
        self.links.remove(&norm(a, b));
        let now = self.now;
        self.nodes[a].router.peer_down(now, PeerId(b as u64));
        self.nodes[b].router.peer_down(now, PeerId(a as u64));
        self.collect(a);
        self.collect(b);
    }

    /// Removes a node: all its links go down (its neighbours notice at once).
    pub fn kill(&mut self, n: usize) {
        let ls: Vec<(usize, usize)> = self
            .links
            .keys()
            .copied()
            .filter(|(a, b)| *a == n || *b == n)
            .collect();
        for (a, b) in ls {
            self.disconnect(a, b);
        }
    }

    /// Sends `msg` from `from` to its neighbour `to` (dropped if they are not linked).
    pub fn enqueue(&mut self, from: usize, to: usize, msg: Vec<u8>) {
        let Some(lat) = self.links.get(&norm(from, to)).copied() else {
            return;
        };
        if self.cut.contains(&norm(from, to)) {
            return;
        }
        if self.capture {
            self.captured.push((from, to, msg.clone()));
        }
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + lat, self.seq, from, to, msg)));
    }

    /// Moves what node `i` wants to send onto the links, and its events into `events`.
    pub fn collect(&mut self, i: usize) {
        while let Some((peer, msg)) = self.nodes[i].router.poll_transmit() {
            self.enqueue(i, peer.0 as usize, msg);
        }
        while let Some(e) = self.nodes[i].router.poll_event() {
            self.nodes[i].events.push(e);
        }
    }

    /// Delivers `msg` to node `to` as if it came from `from` over their link.
    pub fn deliver(&mut self, from: usize, to: usize, mut msg: Vec<u8>) {
        let now = self.now;
        if self.lose.is_some_and(|lose| lose(&msg)) {
            return;
        }
        if self.trace
            && let Ok(h) = RoutedHeader::decode(&msg)
            && h.kind == kind::TRAFFIC
        {
            let payload = msg[h.body_at..].to_vec();
            self.traces
                .entry(payload)
                .or_insert_with(|| vec![from])
                .push(to);
        }
        let r = self.nodes[to]
            .router
            .handle(now, PeerId(from as u64), &mut msg);
        match r {
            Handled::Forward(p) => self.enqueue(to, p.0 as usize, msg),
            Handled::Deliver { src, body_at } => {
                let hops = RoutedHeader::decode(&msg)
                    .map(|h| self.cfg.hop_limit - h.hop_limit)
                    .unwrap_or(0);
                self.nodes[to].router.confirm_source(now, &msg);
                self.nodes[to]
                    .delivered
                    .push((src, msg[body_at..].to_vec(), hops));
            }
            _ => {}
        }
        self.collect(to);
    }

    /// Runs the next event (not past `limit`). Returns false if nothing happened before it.
    pub fn step(&mut self, limit: Instant) -> bool {
        let next_msg = self.queue.peek().map(|Reverse(m)| m.0);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.router.poll_timeout())
            .min();
        let t = match (next_msg, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if t > limit {
            self.now = self.now.max(limit);
            return false;
        }
        self.now = self.now.max(t);
        if next_msg == Some(t) {
            if let Some(Reverse((_, _, from, to, msg))) = self.queue.pop() {
                self.deliver(from, to, msg);
            }
        } else {
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .router
                    .poll_timeout()
                    .is_some_and(|d| d <= self.now)
                {
                    let now = self.now;
                    self.nodes[i].router.handle_timeout(now);
                    self.collect(i);
                }
            }
        }
        true
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut guard = 0u64;
        while self.step(end) {
            guard += 1;
            assert!(guard < 50_000_000, "simulation does not settle");
        }
        self.now = end;
    }

    /// All nodes agree on one root and each node's coordinates are its parent's plus a port.
    pub fn converged(&self) -> bool {
        let root = self.nodes[0].router.root();
        let by_key: BTreeMap<Key, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.key, i))
            .collect();
        self.nodes.iter().all(|n| {
            let r = &n.router;
            if r.root() != root {
                return false;
            }
            if r.key() == root {
                return r.coords().depth() == 0;
            }
            let Some(&p) = by_key.get(&r.parent_key()) else {
                return false;
            };
            let pc = self.nodes[p].router.coords();
            r.coords().depth() == pc.depth() + 1 && r.coords().0[..pc.depth()] == pc.0[..]
        })
    }

    /// Like [`Net::converged`], among the nodes `alive` only (the others are gone).
    pub fn converged_among(&self, alive: &[usize]) -> bool {
        let Some(&first) = alive.first() else {
            return true;
        };
        let root = self.nodes[first].router.root();
        let by_key: BTreeMap<Key, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.key, i))
            .collect();
        alive.iter().all(|&i| {
            let r = &self.nodes[i].router;
            if r.root() != root {
                return false;
            }
            if r.key() == root {
                return r.coords().depth() == 0;
            }
            let Some(&p) = by_key.get(&r.parent_key()) else {
                return false;
            };
            let pc = self.nodes[p].router.coords();
            alive.contains(&p)
                && r.coords().depth() == pc.depth() + 1
                && r.coords().0[..pc.depth()] == pc.0[..]
        })
    }

    /// Runs until converged (or `max` passes); returns the time it took.
    pub fn converge(&mut self, max: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now < start + max {
            self.run_for(Duration::from_millis(50));
            if self.converged() {
                return Some(self.now - start);
            }
        }
        None
    }

    /// Resolves `dst`'s address at `src` (running the network until the lookup ends).
    pub fn resolve(&mut self, src: usize, dst: usize) -> Option<Key> {
        let addr = crate::address::node_address(&self.nodes[dst].key);
        let now = self.now;
        if let Some(k) = self.nodes[src].router.resolve(now, &addr) {
            return Some(k);
        }
        self.collect(src);
        for _ in 0..200 {
            self.run_for(Duration::from_millis(20));
            if let Some(k) = self.resolved(src, &addr) {
                return k;
            }
        }
        None
    }

    fn resolved(&mut self, src: usize, addr: &Ipv6Addr) -> Option<Option<Key>> {
        let pos = self.nodes[src]
            .events
            .iter()
            .position(|e| matches!(e, Event::Resolved { addr: a, .. } if a == addr))?;
        match self.nodes[src].events.remove(pos) {
            Event::Resolved { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Sends a payload from `src` to `dst` (resolving first); returns hops taken, or None.
    pub fn send(&mut self, src: usize, dst: usize, payload: &[u8]) -> Option<u8> {
        let key = self.resolve(src, dst)?;
        let before = self.nodes[dst].delivered.len();
        let now = self.now;
        let mut out = Vec::new();
        let peer = self.nodes[src]
            .router
            .send_traffic(now, &key, payload, &mut out)?;
        self.enqueue(src, peer.0 as usize, out);
        self.collect(src);
        for _ in 0..50 {
            self.run_for(Duration::from_millis(10));
            let d = &self.nodes[dst].delivered;
            if let Some(x) = d[before..].iter().find(|(_, p, _)| p == payload) {
                return Some(x.2);
            }
        }
        None
    }

    /// The newest tree record of each node seen on any link (needs `capture`): what an
    /// attacker listening to its own links can replay.
    pub fn captured_records(&self) -> BTreeMap<Key, crate::record::TreeRecord> {
        let mut newest: BTreeMap<Key, crate::record::TreeRecord> = BTreeMap::new();
        for (_, _, m) in &self.captured {
            if let Ok(crate::wire::PeerMsg::Announce { records, .. }) =
                crate::wire::PeerMsg::decode(m)
            {
                for r in records {
                    if newest.get(&r.node).is_none_or(|o| o.seq < r.seq) {
                        newest.insert(r.node, r);
                    }
                }
            }
        }
        newest
    }

    /// Shortest path lengths from `src` (BFS over live links).
    pub fn bfs(&self, src: usize) -> Vec<Option<u32>> {
        let mut dist = vec![None; self.nodes.len()];
        dist[src] = Some(0);
        let mut q = VecDeque::from([src]);
        while let Some(u) = q.pop_front() {
            for &(a, b) in self.links.keys() {
                if self.cut.contains(&(a, b)) {
                    continue;
                }
                let v = if a == u {
                    b
                } else if b == u {
                    a
                } else {
                    continue;
                };
                if dist[v].is_none() {
                    dist[v] = Some(dist[u].unwrap_or(0) + 1);
                    q.push_back(v);
                }
            }
        }
        dist
    }
}

/// Graph generators (edge lists) for tests.
pub mod graphs {
    /// The tests' small graph with cycles: a ring of 5 with two chords and a tail of 2
    /// (0-1-2-3-4-0, 0-2, 1-3, 4-5-6), the topology of the namespace tests too.
    pub fn ring5_chords_tail2() -> Vec<(usize, usize)> {
        vec![
            (0, 1),
            (1, 2),
            (2, 3),
            (3, 4),
            (4, 0),
            (0, 2),
            (1, 3),
            (4, 5),
            (5, 6),
        ]
    }

    /// A path.
    pub fn line(n: usize) -> Vec<(usize, usize)> {
        (1..n).map(|i| (i - 1, i)).collect()
    }
    /// A cycle.
    pub fn ring(n: usize) -> Vec<(usize, usize)> {
        let mut e = line(n);
        e.push((n - 1, 0));
        e
    }
    /// A w × h grid.
    pub fn grid(w: usize, h: usize) -> Vec<(usize, usize)> {
        let mut e = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if x + 1 < w {
                    e.push((i, i + 1));
                }
                if y + 1 < h {
                    e.push((i, i + w));
                }
            }
        }
        e
    }
    /// A connected random graph: a random spanning tree plus `extra` random edges.
    pub fn random(n: usize, extra: usize, seed: u64) -> Vec<(usize, usize)> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        let mut e = Vec::new();
        for i in 1..n {
            e.push((rnd(i), i));
        }
        let mut set: std::collections::BTreeSet<(usize, usize)> = e.iter().copied().collect();
        while set.len() < n - 1 + extra {
            let (a, b) = (rnd(n), rnd(n));
            if a != b {
                set.insert((a.min(b), a.max(b)));
            }
        }
        set.into_iter().collect()
    }
}

/// The type byte of traffic messages, for tests that inspect captures.
pub const TRAFFIC: u8 = kind::TRAFFIC;
