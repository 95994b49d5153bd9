//! The discrete-event engine: N real [`Router`]s on a graph, a virtual clock that jumps from
//! event to event, links with latency (and optional loss) that can fail and come back.
//!
//! Every routing decision is the router's: the engine only carries its messages to the peer it
//! named, after the link's latency, and calls `handle_timeout` when the router asked to be
//! woken. A node's timer is kept in the event queue once, at the instant `poll_timeout` gave;
//! a later instant replaces it lazily (stale entries are skipped when they come up).

use crate::inflight::{InFlight, Records};
use crate::rng::Rng;
use crate::topology::Graph;
use routing::wire::{RoutedBody, RoutedHeader, kind};
use routing::{Event, Handled, Key, PeerId, Router, RouterConfig};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// One simulated node.
pub struct SimNode {
    /// The routing core, exactly as meshd runs it.
    pub router: Router,
    /// False once failed.
    pub alive: bool,
    /// Whether `timer_at` holds the instant of its timer in the queue (a flag and a `u64`, not
    /// an `Option<u64>`: 8 bytes less a node, with the router's alignment).
    has_timer: bool,
    timer_at: u64,
}

impl SimNode {
    /// The instant of its timer in the queue, if any.
    fn timer(&self) -> Option<u64> {
        self.has_timer.then_some(self.timer_at)
    }

    fn set_timer(&mut self, t: Option<u64>) {
        self.has_timer = t.is_some();
        self.timer_at = t.unwrap_or_default();
    }
}

/// Link state.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// One-way latency, nanoseconds.
    pub latency_ns: u64,
    /// False while failed.
    pub up: bool,
}

enum What {
    /// A message on its way, with the link it crosses (a large network has millions in
    /// flight: see [`crate::inflight`]).
    Msg(InFlight),
    Timer {
        node: u32,
    },
}

struct Ev {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    // Reversed: BinaryHeap pops the earliest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters of what crossed the links.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Carried {
    /// Messages delivered to a live node over a live link.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Lost on purpose (link loss).
    pub lost: u64,
    /// Dropped because the link or the node was down on arrival.
    pub on_dead: u64,
    /// Lookup messages (FIND and FOUND) carried, each hop counted.
    pub lookup_hops: u64,
}

/// The simulated network.
pub struct Sim {
    /// The nodes, indexed like the graph's.
    pub nodes: Vec<SimNode>,
    /// Their keys.
    pub keys: Vec<Key>,
    /// Key → node.
    pub index: HashMap<Key, u32>,
    /// Links by `(a, b)`, `a < b`.
    pub links: HashMap<(u32, u32), Link>,
    /// Neighbours of each node (whatever the link state).
    pub adj: Vec<Vec<u32>>,
    queue: BinaryHeap<Ev>,
    /// The records the messages in the queue carry.
    in_flight: Records,
    seq: u64,
    start: Instant,
    /// Virtual nanoseconds since the start.
    pub now_ns: u64,
    loss: f64,
    rng: Rng,
    /// What the links carried.
    pub carried: Carried,
    /// Lookups finished: (node, address) → (when, owner found).
    pub resolved: HashMap<(u32, Ipv6Addr), (u64, Option<Key>)>,
    /// Events handled so far (a guard against runaway runs).
    pub events: u64,
    /// Lookup answers (FOUND) that reached each node, for diagnostics.
    pub found_received: Vec<u32>,
    /// Lookups being measured: (source key, target). Their requests, and the answers to them
    /// (by nonce), are counted hop by hop in `tracked_hops`.
    pub tracked: std::collections::HashSet<(Key, u128)>,
    tracked_nonces: std::collections::HashSet<u64>,
    /// Link hops of the measured lookups' messages.
    pub tracked_hops: u64,
    /// Name events: (node, when, event), drained by [`crate::names`].
    pub name_events: Vec<(u32, u64, Event)>,
}

fn norm(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

impl Sim {
    /// Builds the network: one router per node (secrets from `seed`), every link up with a
    /// latency drawn uniformly from `latency_ms`, and `loss` per message.
    /// `cfg` gets every node's key (by node number) and returns the routers' configuration
    /// (so that eligible roots can be chosen among the nodes).
    pub fn new(
        g: &Graph,
        cfg: impl FnOnce(&[Key]) -> RouterConfig,
        seed: u64,
        latency_ms: (f64, f64),
        loss: f64,
    ) -> Sim {
        let mut rng = Rng::new(seed);
        let start = Instant::now();
        let secrets: Vec<([u8; 32], u64)> =
            (0..g.n).map(|_| (rng.bytes32(), rng.next_u64())).collect();
        let keys: Vec<Key> = secrets
            .iter()
            .map(|(s, _)| {
                ed25519_dalek::SigningKey::from_bytes(s)
                    .verifying_key()
                    .to_bytes()
            })
            .collect();
        let cfg = std::sync::Arc::new(cfg(&keys));
        let mut nodes = Vec::with_capacity(g.n);
        let mut index = HashMap::with_capacity(g.n);
        let shared = routing::SharedVerified::default();
        for (i, (secret, rseed)) in secrets.iter().enumerate() {
            let mut router = Router::new(secret, cfg.clone(), 1_000_000, *rseed, start);
            router.share_verified(shared.clone());
            index.insert(keys[i], i as u32);
            nodes.push(SimNode {
                router,
                alive: true,
                has_timer: false,
                timer_at: 0,
            });
        }
        let (lo, hi) = (
            latency_ms.0.min(latency_ms.1),
            latency_ms.0.max(latency_ms.1),
        );
        let mut links = HashMap::with_capacity(g.edges.len());
        for &(a, b) in &g.edges {
            let ms = lo + (hi - lo) * rng.unit();
            links.insert(
                (a, b),
                Link {
                    latency_ns: (ms * 1e6) as u64,
                    up: false,
                },
            );
        }
        let mut sim = Sim {
            nodes,
            keys,
            index,
            links,
            adj: g.adjacency(),
            queue: BinaryHeap::new(),
            in_flight: Records::default(),
            seq: 0,
            start,
            now_ns: 0,
            loss,
            rng,
            carried: Carried::default(),
            resolved: HashMap::new(),
            events: 0,
            found_received: vec![0; g.n],
            tracked: Default::default(),
            tracked_nonces: Default::default(),
            tracked_hops: 0,
            name_events: Vec::new(),
        };
        for &(a, b) in &g.edges {
            sim.link_up(a, b);
        }
        sim
    }

    /// The virtual instant.
    pub fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.now_ns)
    }

    /// Virtual seconds since the start.
    pub fn secs(&self) -> f64 {
        self.now_ns as f64 / 1e9
    }

    fn push(&mut self, at: u64, what: What) {
        // Grown by an eighth, not doubled: at its peak the queue of a large network holds
        // millions of events, and a doubled vector would leave up to as many slots unused.
        if self.queue.len() == self.queue.capacity() {
            self.queue.reserve_exact(self.queue.len() / 8 + 1024);
        }
        self.seq += 1;
        self.queue.push(Ev {
            at,
            seq: self.seq,
            what,
        });
    }

    /// Brings a link up (both routers see the peer, with twice the latency as first RTT).
    pub fn link_up(&mut self, a: u32, b: u32) {
        let Some(l) = self.links.get_mut(&norm(a, b)) else {
            return;
        };
        if l.up || !self.nodes[a as usize].alive || !self.nodes[b as usize].alive {
            return;
        }
        l.up = true;
        let rtt = Duration::from_nanos(2 * l.latency_ns);
        let now = self.now();
        let (ka, kb) = (self.keys[a as usize], self.keys[b as usize]);
        self.nodes[a as usize]
            .router
            .peer_up(now, PeerId(b as u64), kb, Some(rtt));
        self.nodes[b as usize]
            .router
            .peer_up(now, PeerId(a as u64), ka, Some(rtt));
        self.collect(a);
        self.collect(b);
    }

    /// Takes a link down; both ends notice at once (meshd's link layer takes about 2 s).
    pub fn link_down(&mut self, a: u32, b: u32) {
        let Some(l) = self.links.get_mut(&norm(a, b)) else {
            return;
        };
        if !l.up {
            return;
        }
        l.up = false;
        let now = self.now();
        for (x, y) in [(a, b), (b, a)] {
            if self.nodes[x as usize].alive {
                self.nodes[x as usize]
                    .router
                    .peer_down(now, PeerId(y as u64));
                self.collect(x);
            }
        }
    }

    /// Fails a node: all its links go down, it does nothing more.
    pub fn fail_node(&mut self, n: u32) {
        let peers = self.adj[n as usize].clone();
        for p in peers {
            self.link_down(n, p);
        }
        self.nodes[n as usize].alive = false;
    }

    /// Drains a node's output: messages onto links, events into the engine's records, and
    /// its timer into the queue.
    pub fn collect(&mut self, i: u32) {
        let now_ns = self.now_ns;
        while let Some((peer, data)) = self.nodes[i as usize].router.poll_transmit() {
            // (Copies of the exact size, not the router's buffer, which may have room to spare.)
            let data = self.in_flight.pack(i, peer.0 as u32, &data);
            self.send(data);
        }
        while let Some(e) = self.nodes[i as usize].router.poll_event() {
            match e {
                Event::Resolved { addr, key } => {
                    self.resolved.insert((i, addr), (now_ns, key));
                }
                Event::NameClaimed { .. } | Event::NameResolved { .. } => {
                    self.name_events.push((i, now_ns, e));
                }
                _ => {}
            }
        }
        let t = self.nodes[i as usize]
            .router
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.start).as_nanos() as u64);
        if let Some(t) = t {
            let n = &mut self.nodes[i as usize];
            if n.timer().is_none_or(|cur| t < cur) {
                n.set_timer(Some(t));
                self.push(t.max(now_ns), What::Timer { node: i });
            }
        }
    }

    fn send(&mut self, data: InFlight) {
        let Some(l) = self.links.get(&norm(data.from(), data.to())).copied() else {
            self.in_flight.release(data);
            return;
        };
        if !l.up {
            self.carried.on_dead += 1;
            self.in_flight.release(data);
            return;
        }
        if self.loss > 0.0 && self.rng.unit() < self.loss {
            self.carried.lost += 1;
            self.in_flight.release(data);
            return;
        }
        self.push(self.now_ns + l.latency_ns, What::Msg(data));
    }

    fn deliver(&mut self, packed: InFlight) {
        let (from, to) = (packed.from(), packed.to());
        let up = self.links.get(&norm(from, to)).is_some_and(|l| l.up);
        if !up || !self.nodes[to as usize].alive {
            self.carried.on_dead += 1;
            self.in_flight.release(packed);
            return;
        }
        let mut data = self.in_flight.bytes(&packed);
        self.carried.messages += 1;
        self.carried.bytes += data.len() as u64;
        if matches!(data.first(), Some(&kind::FIND) | Some(&kind::FOUND)) {
            self.carried.lookup_hops += 1;
            if !self.tracked.is_empty() {
                self.track(&data);
            }
        }
        let now = self.now();
        let r = self.nodes[to as usize]
            .router
            .handle(now, PeerId(from as u64), &mut data);
        match r {
            Handled::Forward(p) => {
                let data = self.in_flight.repack(packed, p.0 as u32, &data);
                self.send(data);
            }
            Handled::Deliver { .. } => {
                self.in_flight.release(packed);
                self.nodes[to as usize].router.confirm_source(now, &data);
            }
            _ => {
                self.in_flight.release(packed);
                if data.first() == Some(&kind::FOUND) {
                    self.found_received[to as usize] += 1;
                }
            }
        }
        self.collect(to);
    }

    fn track(&mut self, msg: &[u8]) {
        let Ok(h) = RoutedHeader::decode(msg) else {
            return;
        };
        match RoutedBody::decode(h.kind, &msg[h.body_at..]) {
            Ok(RoutedBody::Find { nonce, target, .. })
                if self.tracked.contains(&(h.src_key, target)) =>
            {
                self.tracked_nonces.insert(nonce);
                self.tracked_hops += 1;
            }
            Ok(RoutedBody::Found { nonce, .. }) if self.tracked_nonces.contains(&nonce) => {
                self.tracked_hops += 1;
            }
            _ => {}
        }
    }

    /// Runs every event up to `until_ns` (virtual), then sets the clock there.
    pub fn run_until(&mut self, until_ns: u64) {
        while self.queue.peek().is_some_and(|e| e.at <= until_ns) {
            let Some(ev) = self.queue.pop() else { break };
            self.now_ns = self.now_ns.max(ev.at);
            self.events += 1;
            match ev.what {
                What::Msg(data) => self.deliver(data),
                What::Timer { node } => {
                    let n = &mut self.nodes[node as usize];
                    if n.timer() != Some(ev.at) {
                        continue; // replaced by an earlier one, already run
                    }
                    n.set_timer(None);
                    if !n.alive {
                        continue;
                    }
                    let now = self.now();
                    self.nodes[node as usize].router.handle_timeout(now);
                    self.collect(node);
                    // A router that asks to be woken at once, again and again, would stall the
                    // clock: never earlier than 1 ms after a wake-up that changed nothing.
                    let n = &mut self.nodes[node as usize];
                    if n.timer().is_some_and(|t| t <= self.now_ns) {
                        let t = self.now_ns + 1_000_000;
                        n.set_timer(Some(t));
                        self.push(t, What::Timer { node });
                    }
                }
            }
        }
        self.now_ns = self.now_ns.max(until_ns);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now_ns + d.as_nanos() as u64;
        self.run_until(until);
    }

    /// Live nodes reachable from `from` over live links (breadth first): hop distances.
    pub fn distances(&self, from: u32) -> Vec<u32> {
        let mut dist = vec![u32::MAX; self.nodes.len()];
        if !self.nodes[from as usize].alive {
            return dist;
        }
        dist[from as usize] = 0;
        let mut q = std::collections::VecDeque::from([from]);
        while let Some(u) = q.pop_front() {
            for &v in &self.adj[u as usize] {
                if dist[v as usize] == u32::MAX
                    && self.nodes[v as usize].alive
                    && self.links.get(&norm(u, v)).is_some_and(|l| l.up)
                {
                    dist[v as usize] = dist[u as usize] + 1;
                    q.push_back(v);
                }
            }
        }
        dist
    }

    /// Sends one traffic message from `src` to `dst` *now*, walking it hop by hop through the
    /// routers (each hop decided by the router it reaches, as on the wire but without the
    /// latency). Returns the hops taken and the path's one-way latency (ns) if it arrived.
    /// `src` must know `dst`'s place (resolve first); if not, `None`.
    pub fn walk(&mut self, src: u32, dst: u32, payload: &[u8]) -> Option<(u32, u64)> {
        let now = self.now();
        let key = self.keys[dst as usize];
        let mut msg = Vec::with_capacity(200);
        let first = self.nodes[src as usize]
            .router
            .send_traffic(now, &key, payload, &mut msg);
        self.collect(src);
        let mut at = first?.0 as u32;
        let mut prev = src;
        let mut hops = 1;
        let mut latency = 0;
        loop {
            let l = self.links.get(&norm(prev, at)).filter(|l| l.up)?;
            latency += l.latency_ns;
            if !self.nodes[at as usize].alive || hops > 255 {
                return None;
            }
            let r = self.nodes[at as usize]
                .router
                .handle(now, PeerId(prev as u64), &mut msg);
            match r {
                Handled::Forward(p) => {
                    self.collect(at);
                    prev = at;
                    at = p.0 as u32;
                    hops += 1;
                }
                Handled::Deliver { .. } => {
                    self.nodes[at as usize].router.confirm_source(now, &msg);
                    self.collect(at);
                    return (at == dst).then_some((hops, latency));
                }
                _ => {
                    self.collect(at);
                    return None;
                }
            }
        }
    }

    /// All live nodes agree on one root, and each node's coordinates extend its parent's by one
    /// port. Only nodes in `component` (live nodes of one connected piece) are checked.
    pub fn converged(&self, component: &[u32]) -> bool {
        let Some(&first) = component.first() else {
            return true;
        };
        let root = self.nodes[first as usize].router.root();
        component.iter().all(|&i| {
            let r = &self.nodes[i as usize].router;
            if r.root() != root {
                return false;
            }
            if r.key() == root {
                return r.coords().depth() == 0;
            }
            let Some(&p) = self.index.get(&r.parent_key()) else {
                return false;
            };
            let p = &self.nodes[p as usize];
            let pc = p.router.coords();
            p.alive
                && r.coords().depth() == pc.depth() + 1
                && r.coords().0[..pc.depth()] == pc.0[..]
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_adds_16_bytes_to_its_router() {
        assert_eq!(
            std::mem::size_of::<super::SimNode>(),
            std::mem::size_of::<routing::Router>() + 16
        );
    }

    #[test]
    fn an_event_in_the_queue_is_32_bytes() {
        // A message's link and records live in its one allocation (see `inflight`).
        assert_eq!(std::mem::size_of::<super::Ev>(), 32);
    }
}
