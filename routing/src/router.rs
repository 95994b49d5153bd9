//! The router: one node's routing state and its sans-IO interface.
//!
//! ```text
//!  peer_up / peer_down / peer_rtt ─┐
//!  handle(now, from, message)  ────┼─► Router ──► Handled::{Forward, Deliver, Consumed, Dropped}
//!  send_traffic(now, key, ...)  ───┤              poll_transmit() → (peer, message)
//!  resolve(now, address) / ping ───┤              poll_event()    → lookups done, pongs, …
//!  handle_timeout(now) ────────────┘              poll_timeout()  → when to call again
//! ```
//!
//! The tree ([`crate::tree`]), greedy forwarding ([`crate::forward`]) and lookups
//! ([`crate::dht`]) are `impl Router` blocks in their own files; this file holds the state they
//! share and the public API.

use crate::codec::Key;
use crate::coords::{Coords, Place};
use crate::dht::Dht;
use crate::record::{NodeRecord, TreeRecord};
use crate::vecmap::VecMap;
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A direct peer, as the caller numbers it (for meshd: a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Tunables. Defaults suit meshd; simulations of large networks slow the periodic ones down.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The root re-signs its record this often, so that everyone can tell it is alive.
    pub root_refresh: Duration,
    /// A root not heard from (no newer record) for this long is presumed gone.
    pub root_timeout: Duration,
    /// A parent's consent holds for this many root refreshes (see [`crate::consent`]):
    /// 60 × 2 s = 2 minutes. Children renew it after half of that.
    pub consent_epochs: u64,
    /// Keys that may be root (`None`: any key). Everyone else ignores other roots.
    pub eligible_roots: Option<BTreeSet<Key>>,
    /// Keep the current parent unless another is cheaper by this fraction ...
    pub switch_fraction: f64,
    /// ... and by at least this much.
    pub switch_min: Duration,
    /// How often each link's RTT is probed.
    pub rtt_probe: Duration,
    /// Initial hop limit of routed messages.
    pub hop_limit: u8,
    /// Contacts per bucket of the lookup table.
    pub bucket_size: usize,
    /// Lookup requests in flight at once per lookup.
    pub lookup_parallelism: usize,
    /// A lookup request unanswered for this long counts as failed.
    pub lookup_rpc_timeout: Duration,
    /// How often the node looks itself up to keep its lookup table fresh.
    pub table_refresh: Duration,
    /// How long a lookup result is used before it is looked up again.
    pub route_ttl: Duration,
    /// Direct peers named in our place, so that traffic can reach us through a link off
    /// the tree (see [`crate::Place`]; 0: none) ...
    pub near: usize,
    /// ... and peers' peers (two hops away). At most [`crate::coords::MAX_NEAR`] in all.
    pub near2: usize,
    /// Our name records expire this long after we sign them (re-published every third).
    pub name_ttl: Duration,
    /// A name's resolution is reused this long (at most until its record expires).
    pub name_cache: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            root_refresh: Duration::from_secs(2),
            root_timeout: Duration::from_secs(6),
            consent_epochs: 60,
            eligible_roots: None,
            switch_fraction: 0.2,
            switch_min: Duration::from_millis(2),
            rtt_probe: Duration::from_secs(10),
            hop_limit: 64,
            bucket_size: 4,
            lookup_parallelism: 3,
            lookup_rpc_timeout: Duration::from_millis(1500),
            table_refresh: Duration::from_secs(60),
            route_ttl: Duration::from_secs(300),
            near: 4,
            near2: 8,
            name_ttl: Duration::from_secs(3600),
            name_cache: Duration::from_secs(30),
        }
    }
}

/// What the router knows about one direct peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub key: Key,
    /// The port we give this peer if it becomes our child.
    pub port: u64,
    /// Smoothed link RTT (our link cost to it).
    pub rtt: Duration,
    pub rtt_measured: bool,
    /// Verified tree records it sent us, by node: its chain is the walk from its own record
    /// up the parents to a root.
    pub records: ByNode,
    /// Its chain (its record first, then up to its root), when complete.
    pub chain: Vec<Arc<TreeRecord>>,
    /// What we sent it: node key → record seq, and our node record's seq.
    pub sent: VecMap<Key, u64>,
    pub sent_node_seq: Option<u64>,
    /// Its root, when its chain is complete.
    pub root: Option<Key>,
    /// Our key is in its chain (it is below us): never our parent.
    pub below_us: bool,
    /// What it may still ask of us in lookup requests (see [`crate::budget`]).
    pub finds: crate::budget::FindBudget,
    /// A consent on its chain is too old or from another root's tree (see
    /// [`crate::consent`]): not used for forwarding or places, never our new parent.
    pub stale: bool,
    /// When we last asked it for a full announcement.
    pub asked_full: Option<Instant>,
    /// When we last answered its request for a full announcement.
    pub answered_full: Option<Instant>,
    /// Its cost to its root, as it announced.
    pub announced_cost: u64,
    /// Digest of its chain as it announced; ours must match before we use it.
    pub digest: u64,
    /// Its coordinates (from its chain), if it has announced.
    pub coords: Option<Coords>,
    /// Its node record (shared: see [`crate::SharedVerified`]).
    pub record: Option<Arc<NodeRecord>>,
    /// The place of its record, if the record is current (see `forward`): the direct peers
    /// it names (`near` at one hop). (The place itself, shared with the record, rather than
    /// a copy of those coordinates.)
    pub ahead: Option<Arc<Place>>,
    /// Outstanding RTT probe: nonce and when sent.
    pub probe: Option<(u64, Instant)>,
    pub next_probe: Instant,
}

/// A peer's tree records by node, sorted by key: a chain is a handful of records, which a
/// sorted vector holds in a fraction of the room of a B-tree node (11 entries inline, and
/// every peer of every simulated node has one).
#[derive(Debug, Default)]
pub(crate) struct ByNode(Vec<Arc<TreeRecord>>);

impl ByNode {
    fn find(&self, node: &Key) -> Result<usize, usize> {
        self.0.binary_search_by(|r| r.node.cmp(node))
    }

    /// The record of `node`.
    pub fn get(&self, node: &Key) -> Option<&Arc<TreeRecord>> {
        self.find(node).ok().map(|i| &self.0[i])
    }

    /// Adds `r`, in place of the record of the same node if any.
    pub fn insert(&mut self, r: Arc<TreeRecord>) {
        match self.find(&r.node) {
            Ok(i) => self.0[i] = r,
            Err(i) => self.0.insert(i, r),
        }
    }

    /// Keeps the records of the nodes `keep` accepts (in key order).
    pub fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        self.0.retain(|r| keep(&r.node));
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Their nodes, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.0.iter().map(|r| &r.node)
    }
}

/// The peers in our tree, sorted for forwarding, so that a node with thousands of peers does
/// not compute each one's distance for every message: a child of ours is nearer only if a
/// position of the destination lies below it (found by port), another peer only if it shares
/// a branch of the root with a position (found by branch) or is shallow (found by depth).
#[derive(Debug, Default)]
pub(crate) struct FwdIndex {
    /// Out of date: rebuild before use.
    pub dirty: bool,
    /// Our children, by the port we gave them (sorted by port; of two with one port, the
    /// later counts) ...
    pub children: Vec<(u64, PeerId)>,
    /// All other peers in our tree, by the branch of the root they are in (the first port
    /// of their coordinates; the root itself is in none), sorted by branch and in peer order
    /// within one ...
    pub by_branch: Vec<(u64, PeerId)>,
    /// ... and by depth, shallowest first. (Sorted vectors, not hash maps: a map and its
    /// table per node, and per branch a vector, cost a simulation hundreds of bytes a node.)
    pub by_depth: Vec<(usize, PeerId)>,
}

impl FwdIndex {
    /// The entries of `v` (sorted by key) with key `k`.
    fn run(v: &[(u64, PeerId)], k: u64) -> &[(u64, PeerId)] {
        let start = v.partition_point(|e| e.0 < k);
        let end = start + v[start..].partition_point(|e| e.0 == k);
        &v[start..end]
    }

    /// Our child at `port`.
    pub fn child(&self, port: u64) -> Option<&PeerId> {
        Self::run(&self.children, port).last().map(|e| &e.1)
    }

    /// The other peers in branch `b`, in peer order.
    pub fn in_branch(&self, b: u64) -> impl Iterator<Item = &PeerId> {
        Self::run(&self.by_branch, b).iter().map(|e| &e.1)
    }
}

/// Our latest attempt to change parent: asked `peer` to sign `seq`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SigRequest {
    pub peer: PeerId,
    pub seq: u64,
    pub sent: Instant,
}

/// Where a node we route to is, as far as we know.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// Shared with the node record it came from, if any.
    pub place: Arc<Place>,
    /// When this was learnt (the oldest entry goes first when the table is full).
    pub at: Instant,
    /// Sequence number of the signed node record it came from (0: from authenticated
    /// traffic), so that an older record replayed by anyone cannot move it back.
    pub seq: u64,
}

/// A cached lookup result.
#[derive(Debug, Clone)]
pub struct Route {
    /// The owner's key.
    pub key: Key,
    /// Where it was.
    pub coords: Coords,
    /// When the entry was made or refreshed.
    pub updated: Instant,
}

/// What happened to a message given to [`Router::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Send the (rewritten) message to this peer.
    Forward(PeerId),
    /// A traffic payload for us: `message[body_at..]`, sent by `src`.
    Deliver {
        /// The sender's key as the header names it (unauthenticated: the payload's own
        /// session says who really sent it).
        src: Key,
        /// Where the payload starts.
        body_at: usize,
    },
    /// Handled inside the router (control message).
    Consumed,
    /// Dropped and counted.
    Dropped(Drop),
}

/// Why a routing message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Could not be decoded.
    Malformed,
    /// A signature or chain did not check out.
    BadSignature,
    /// An older record than one already seen.
    Replay,
    /// A chain that loops, is too deep, or has a root that may not be root.
    BadChain,
    /// Hop limit reached.
    HopLimit,
    /// No peer is closer to the destination.
    NoRoute,
    /// A message from a peer we do not know.
    UnknownPeer,
    /// A lookup request over its peer's budget (see [`crate::budget`]).
    RateLimited,
}

/// Things the caller may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lookup of `addr` finished: the owner's key, or none found.
    Resolved {
        /// The address looked up.
        addr: Ipv6Addr,
        /// The owner, if found.
        key: Option<Key>,
    },
    /// Traffic to `key` could not be delivered on the known path; it is being looked up again.
    PathBroken {
        /// The destination.
        key: Key,
    },
    /// An overlay ping was answered.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// Hops it took one way.
        hops: u8,
        /// Round trip.
        rtt: Duration,
    },
    /// Our position in the tree changed.
    TreeChanged,
    /// Where one of our name claims stands changed.
    NameClaimed {
        /// The name.
        name: String,
        /// Where it stands.
        state: crate::names::ClaimState,
    },
    /// A resolution of a name finished.
    NameResolved {
        /// The name.
        name: String,
        /// Its owner, or `None`: no such name (or no storing node answered).
        result: Option<Box<crate::names::Resolution>>,
    },
}

/// Counters.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Routed messages forwarded for others.
    pub forwarded: u64,
    /// Traffic delivered to us.
    pub delivered: u64,
    /// Drops by reason (in a vector sorted by reason: a router counts a few, and a
    /// simulation holds one table per node).
    pub dropped: VecMap<&'static str, u64>,
    /// Announcements sent.
    pub announcements_sent: u64,
    /// Lookups started.
    pub lookups: u64,
    /// Lookup requests sent (each is a routed message).
    pub lookup_requests: u64,
    /// Control messages sent (all kinds).
    pub control_sent: u64,
    /// Control bytes sent.
    pub control_bytes: u64,
    /// Control bytes sent by message kind (the first byte of the message, modulo 32; the
    /// simulator breaks control traffic down with it).
    pub control_bytes_by_kind: [u64; 32],
    /// Renewals of our parent's consent asked for.
    pub consent_renewals: u64,
    /// Lookups not started: [`crate::budget::MAX_LOOKUPS`] were running.
    pub lookups_refused: u64,
    /// `BROKEN` notices that started no lookup (one for that destination was recent).
    pub broken_ignored: u64,
    /// Name records this node took for storage (new, renewed or released).
    pub names_stored: u64,
    /// Name records offered again unchanged.
    pub names_renewed: u64,
    /// Name records refused: another key holds the name.
    pub names_taken: u64,
    /// Name records refused: no room (for the owner, or at all).
    pub names_full: u64,
    /// Name records dropped: a signature did not verify.
    pub names_bad_sig: u64,
    /// Name records dropped: not newer than what the owner stored before.
    pub names_old_seq: u64,
    /// Name records dropped: expired, or expiring too far ahead.
    pub names_expired: u64,
    /// Name resolutions that asked the network.
    pub name_lookups: u64,
    /// Requests name operations sent: lookup requests towards a name's storing nodes, and
    /// `NAME_PUT`s and `NAME_GET`s.
    pub name_requests: u64,
    /// `RING` messages sent (keyspace ring upkeep, see [`crate::ring`]).
    pub ring_messages: u64,
    /// Corrections sent: a `RING`'s sender told of a node between it and us.
    pub ring_corrections: u64,
    /// `RING` messages that were stabilisations (the rest carry delegations and corrections).
    pub ring_stabilisations: u64,
    /// Records delegated: sent towards their place in the ring.
    pub ring_delegations: u64,
    /// Node records ignored because they were signed in another tree than ours (their
    /// coordinates lead nowhere here).
    pub other_tree: u64,
}

/// A test a root must pass besides [`RouterConfig::eligible_roots`]: `meshd` puts the `root`
/// rules of its circle policy here. It must be pure and cheap (it runs for every record chain).
pub type RootFilter = std::sync::Arc<dyn Fn(&Key) -> bool + Send + Sync>;

/// Messages to send the transmit queue keeps room for once drained (see
/// [`Router::poll_transmit`]).
const KEEP_TRANSMIT_ROOM: usize = 4;

/// The routing state of one node.
pub struct Router {
    /// Shared by the routers of a simulation (one copy, not one per node).
    pub(crate) cfg: Arc<RouterConfig>,
    pub(crate) root_filter: Option<RootFilter>,
    pub(crate) sk: SigningKey,
    pub(crate) key: Key,
    pub(crate) rng: u64,
    /// Key of the nonce generator: nonces are a keyed hash of a counter, so that one nonce
    /// seen on the wire tells nothing about the next.
    pub(crate) nonce_key: [u8; 32],
    /// Boxed: a map node holds up to 11 values, and most nodes have a few peers.
    pub(crate) peers: BTreeMap<PeerId, Box<Peer>>,
    /// Peers by key (a destination that is a direct peer gets its messages at once).
    pub(crate) peer_by_key: VecMap<Key, PeerId>,
    /// Peers sorted for forwarding (see `forward`).
    pub(crate) fwd: FwdIndex,
    pub(crate) next_port: u64,
    /// The earliest of the peers' `next_probe` (none without peers), so that neither
    /// `poll_timeout` nor a wake-up walks every peer of a hub.
    pub(crate) next_probe: Option<Instant>,
    // --- tree ---
    pub(crate) seq: u64,
    pub(crate) record: TreeRecord,
    pub(crate) parent: Option<PeerId>,
    pub(crate) coords: Coords,
    pub(crate) root: Key,
    /// Highest sequence number seen per key (replay protection, also for forgotten keys).
    /// (A sorted vector: most nodes see the few keys of their peers' chains, which a B-tree
    /// held in a node of 11 entries or three of them.)
    pub(crate) seqs: VecMap<Key, u64>,
    /// When each known root's record last advanced.
    pub(crate) root_heard: VecMap<Key, Instant>,
    /// When the root refreshes its record next (or, below a root, when it would time out).
    pub(crate) next_root_refresh: Instant,
    pub(crate) sig_request: Option<SigRequest>,
    /// When we last asked our parent to renew its consent, and when a renewal put off is due.
    pub(crate) renewed_at: Option<Instant>,
    pub(crate) renew_due: Option<Instant>,
    pub(crate) node_record: NodeRecord,
    pub(crate) node_seq: u64,
    /// When to reconsider our place (peers moved), if at all.
    pub(crate) place_due: Option<Instant>,
    /// Records whose signatures were verified already (hash of the encoding).
    pub(crate) verified: crate::tree::VerifiedCache,
    // --- lookups and routes ---
    pub(crate) dht: Dht,
    /// The lookup budget lent to links beyond their own share (see [`crate::budget`]).
    pub(crate) find_pool: crate::budget::FindPool,
    pub(crate) names: crate::names::LazyNames,
    /// The keyspace ring (see [`crate::ring`]).
    pub(crate) ring: crate::ring::RingState,
    pub(crate) routes: BTreeMap<Ipv6Addr, Route>,
    pub(crate) coords_of: BTreeMap<Key, Located>,
    pub(crate) pings: BTreeMap<u64, Instant>,
    pub(crate) broken_sent: BTreeMap<Key, Instant>,
    /// When a `BROKEN` last made us look a destination up again (see [`crate::broken`]).
    pub(crate) relooked: BTreeMap<Key, Instant>,
    /// Nodes we exchanged traffic with recently (told when we move).
    pub(crate) talked_to: BTreeMap<Key, Instant>,
    /// Which of our node sequence numbers traffic to a node carried our whole place for
    /// first, and when.
    pub(crate) place_sent: BTreeMap<Key, (u64, Instant)>,
    // --- output ---
    pub(crate) transmits: VecDeque<(PeerId, Vec<u8>)>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

impl Router {
    /// A router for the node with this ed25519 secret seed. `seq` must exceed any sequence
    /// number this node used before (meshd passes milliseconds of wall-clock time); `seed`
    /// drives nonces and jitter. `cfg` may be shared (`Arc<RouterConfig>`) by many routers.
    pub fn new(
        secret: &[u8; 32],
        cfg: impl Into<Arc<RouterConfig>>,
        seq: u64,
        seed: u64,
        now: Instant,
    ) -> Self {
        let cfg = cfg.into();
        let sk = SigningKey::from_bytes(secret);
        let key = sk.verifying_key().to_bytes();
        let record = TreeRecord::root(&sk, seq);
        let node_record = NodeRecord::new(&sk, seq, &key, Coords::root().into());
        let dht = Dht::new(crate::dht::id_of(&key), cfg.bucket_size);
        let mut root_heard = VecMap::new();
        root_heard.insert(key, now);
        Router {
            cfg,
            root_filter: None,
            key,
            rng: seed ^ 0x2545_f491_4f6c_dd1d,
            nonce_key: {
                use sha2::{Digest, Sha512_256};
                let mut h = Sha512_256::new();
                h.update(b"planetary-lan routing nonces v1");
                h.update(secret);
                h.update(seed.to_le_bytes());
                h.finalize().into()
            },
            peers: BTreeMap::new(),
            peer_by_key: VecMap::new(),
            fwd: FwdIndex::default(),
            next_port: 1,
            next_probe: None,
            seq,
            record,
            parent: None,
            coords: Coords::root(),
            root: key,
            seqs: VecMap::new(),
            root_heard,
            next_root_refresh: now,
            sig_request: None,
            renewed_at: None,
            renew_due: None,
            node_record,
            node_seq: seq,
            place_due: None,
            verified: Default::default(),
            dht,
            find_pool: crate::budget::FindPool::new(now),
            names: Default::default(),
            ring: crate::ring::RingState::new(crate::dht::id_of(&key), now),
            routes: BTreeMap::new(),
            coords_of: BTreeMap::new(),
            pings: BTreeMap::new(),
            broken_sent: BTreeMap::new(),
            relooked: BTreeMap::new(),
            talked_to: BTreeMap::new(),
            place_sent: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            sk,
        }
    }

    /// This node's key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// This node's coordinates.
    pub fn coords(&self) -> &Coords {
        &self.coords
    }

    /// Where we can be reached: our coordinates and the positions around us we name.
    pub fn place(&self) -> &Place {
        &self.node_record.place
    }

    /// The root of our tree.
    pub fn root(&self) -> Key {
        self.root
    }

    /// Our parent's key (ourselves if we are the root).
    pub fn parent_key(&self) -> Key {
        self.record.parent
    }

    /// Keys in our lookup table.
    pub fn contact_keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.dht.contact_keys()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Cached lookup results, with the owners' current coordinates.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv6Addr, Route)> + '_ {
        self.routes.iter().map(|(a, r)| {
            let mut r = r.clone();
            if let Some(Located { place, .. }) = self.coords_of.get(&r.key) {
                r.coords = place.at.clone();
            }
            (*a, r)
        })
    }

    /// Direct peers: key, coordinates (if announced, and not stale: see [`crate::consent`]),
    /// link RTT.
    pub fn peer_info(&self) -> impl Iterator<Item = (PeerId, Key, Option<&Coords>, Duration)> {
        self.peers
            .iter()
            .map(|(id, p)| (*id, p.key, p.coords.as_ref().filter(|_| !p.stale), p.rtt))
    }

    /// Routing state held: entries (peer chain records, lookup contacts, routes, coordinates)
    /// and an estimate of their bytes.
    pub fn state_size(&self) -> (usize, usize) {
        let chain_records: usize = self.peers.values().map(|p| p.chain.len()).sum();
        let contacts = self.dht.len();
        let entries = chain_records
            + contacts
            + self.routes.len()
            + self.coords_of.len()
            + self.seqs.len()
            + self.peers.len();
        let bytes = chain_records * 210
            + contacts * 140
            + self.routes.len() * 96
            + self.coords_of.len() * 64
            + self.seqs.len() * 40
            + self.peers.len() * 200;
        (entries, bytes)
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        use sha2::{Digest, Sha512_256};
        self.rng = self.rng.wrapping_add(1);
        let mut h = Sha512_256::new();
        h.update(self.nonce_key);
        h.update(self.rng.to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b)
    }

    pub(crate) fn send(&mut self, peer: PeerId, msg: Vec<u8>) {
        self.stats.control_sent += 1;
        self.stats.control_bytes += msg.len() as u64;
        if let Some(k) = msg.first() {
            self.stats.control_bytes_by_kind[(*k % 32) as usize] += msg.len() as u64;
        }
        self.transmits.push_back((peer, msg));
    }

    pub(crate) fn drop_count(&mut self, d: Drop) -> Handled {
        let name = match d {
            Drop::Malformed => "malformed",
            Drop::BadSignature => "bad_signature",
            Drop::Replay => "stale_or_replayed",
            Drop::BadChain => "bad_chain",
            Drop::HopLimit => "hop_limit",
            Drop::NoRoute => "no_route",
            Drop::UnknownPeer => "unknown_peer",
            Drop::RateLimited => "rate_limited",
        };
        *self.stats.dropped.get_or_insert(name, 0) += 1;
        Handled::Dropped(d)
    }

    /// The next message to send to a peer, if any.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Vec<u8>)> {
        let next = self.transmits.pop_front();
        // Drained after a burst (an announcement to each of a hub's peers): give the room
        // back, as a simulation holds one queue per node.
        if self.transmits.is_empty() && self.transmits.capacity() > KEEP_TRANSMIT_ROOM {
            self.transmits = VecDeque::new();
        }
        next
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A new direct peer with this key (its link is up).
    pub fn peer_up(&mut self, now: Instant, peer: PeerId, key: Key, rtt: Option<Duration>) {
        // The lowest port no current peer holds, so that ports (and coordinates) stay short.
        let used: BTreeSet<u64> = self.peers.values().map(|p| p.port).collect();
        let port = (1..).find(|p| !used.contains(p)).unwrap_or(self.next_port);
        self.next_port = self.next_port.max(port + 1);
        self.peer_by_key.get_or_insert(key, peer);
        self.fwd.dirty = true;
        self.peers.insert(
            peer,
            Box::new(Peer {
                key,
                port,
                rtt: rtt.unwrap_or(Duration::from_millis(10)),
                rtt_measured: rtt.is_some(),
                records: ByNode::default(),
                chain: Vec::new(),
                sent: VecMap::new(),
                sent_node_seq: None,
                root: None,
                below_us: false,
                stale: false,
                finds: crate::budget::FindBudget::new(now),
                asked_full: None,
                answered_full: None,
                announced_cost: 0,
                digest: 0,
                coords: None,
                record: None,
                ahead: None,
                probe: None,
                next_probe: now,
            }),
        );
        self.next_probe = self.peers.values().map(|p| p.next_probe).min();
        self.find_pool.resize(self.peers.len(), now);
        self.announce_to(peer);
    }

    /// A direct peer went away.
    pub fn peer_down(&mut self, now: Instant, peer: PeerId) {
        let Some(gone) = self.peers.remove(&peer) else {
            return;
        };
        self.next_probe = self.peers.values().map(|p| p.next_probe).min();
        self.find_pool.resize(self.peers.len(), now);
        self.fwd.dirty = true;
        if self.peer_by_key.get(&gone.key) == Some(&peer) {
            self.peer_by_key.remove(&gone.key);
            // Another link to the same node, if any, takes over.
            if let Some((id, _)) = self.peers.iter().find(|(_, p)| p.key == gone.key) {
                self.peer_by_key.insert(gone.key, *id);
            }
        }
        if self.sig_request.is_some_and(|r| r.peer == peer) {
            self.sig_request = None;
        }
        if self.parent == Some(peer) {
            self.parent = None;
        }
        self.reselect(now);
        self.place_changed_soon(now);
    }

    /// The caller measured this peer's RTT (e.g. a handshake).
    pub fn peer_rtt(&mut self, peer: PeerId, rtt: Duration) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.update_rtt(rtt);
        }
    }

    /// Handles one routing message from a peer. Routed messages may be rewritten in place
    /// (hop limit, watermark) for forwarding.
    pub fn handle(&mut self, now: Instant, from: PeerId, msg: &mut [u8]) -> Handled {
        let Some(&t) = msg.first() else {
            return self.drop_count(Drop::Malformed);
        };
        if !self.peers.contains_key(&from) {
            return self.drop_count(Drop::UnknownPeer);
        }
        let handled = if crate::wire::is_routed(t) {
            self.handle_routed(now, Some(from), msg)
        } else {
            self.handle_peer_msg(now, from, msg)
        };
        self.ring_flush(now);
        handled
    }

    /// The next instant [`Router::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_root_refresh;
        if let Some(r) = &self.sig_request {
            t = t.min(r.sent + self.cfg.lookup_rpc_timeout);
        }
        if let Some(p) = self.next_probe {
            t = t.min(p);
        }
        if let Some(d) = self.dht.next_deadline(&self.cfg) {
            t = t.min(d);
        }
        if let Some(d) = self.names.next_deadline(self.cfg.lookup_rpc_timeout) {
            t = t.min(d);
        }
        if let Some(d) = self.ring.next_deadline() {
            t = t.min(d);
        }
        if let Some(d) = self.place_due {
            t = t.min(d);
        }
        if let Some(d) = self.renew_due {
            t = t.min(d);
        }
        Some(t)
    }

    /// Runs everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tree_timers(now);
        self.renew_timer(now);
        self.place_timer(now);
        self.probe_links(now);
        self.dht_timers(now);
        self.name_timers(now);
        self.ring_timers(now);
        self.ring_flush(now);
    }
}

impl Peer {
    /// Its node record, with its id.
    pub(crate) fn id_record(&self) -> Option<(u128, &Arc<NodeRecord>)> {
        self.record.as_ref().map(|r| (r.id(), r))
    }

    pub(crate) fn update_rtt(&mut self, rtt: Duration) {
        if self.rtt_measured {
            // Smoothed like TCP's SRTT: 7/8 old, 1/8 new.
            self.rtt = (self.rtt * 7 + rtt) / 8;
        } else {
            self.rtt = rtt;
            self.rtt_measured = true;
        }
    }

    /// Link cost in microseconds (at least 1).
    pub(crate) fn cost(&self) -> u64 {
        (self.rtt.as_micros() as u64).max(1)
    }
}
