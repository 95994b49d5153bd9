//! The keyspace ring: every node keeps the [`RING_SIDE`] nearest node ids below its own and
//! above it, numerically, wrapping around the id space. Kept by *linearization* over the peer
//! graph, so that a lookup always has a way to finish.
//!
//! **Why.** The Kademlia table ([`crate::dht`]) holds whatever a node's own lookups and the
//! requests it receives happened to bring. On sparse graphs (many nodes of degree one) two
//! neighbours in key space may never meet, and a lookup for one of them then fails everywhere
//! (docs/SIMULATIONS.md, "What the simulations revealed", item 4). The ring adds a structure
//! whose correctness does not depend on luck: once it is sorted, the owner of a target is its
//! successor (the first id at or above it), and a node just below the target names it.
//!
//! **Linearization** (Onus, Richa and Scheideler; Yggdrasil 0.4's keyspace successor and
//! Pinecone's virtual snake are relatives). Every record a node learns is *offered* to its
//! ring. It is kept if it is among the [`RING_SIDE`] nearest on a side. A record that does not
//! fit, or that a closer one pushed out, is *delegated*: sent to the contact we know (ring,
//! lookup table or direct peer) strictly between us and it that is nearest to it. That node
//! offers it in turn, so a record travels towards its place over the lookup table's shortcuts,
//! and the node that keeps it is a new nearest neighbour of it, which its stabilisation soon
//! tells it about. Every direct peer's record is offered (with delegation), so the
//! "who knows whom" graph contains the connected peer graph, which is what linearization needs
//! to converge to the sorted ring. Records from lookup answers are offered without delegation.
//! A delegation can die on the way (sent to a place that changed while the tree formed), which
//! would cut that graph for good and leave the ring sorted in separate arcs: so every
//! stabilisation offers the direct peers' records again, and a delegation is held back only
//! while the same contact, at the same place, got it within the period.
//!
//! **Introductions.** A `RING`'s receiver offers the sender's record too, with delegation: the
//! sender is usually far from it, so that record goes on towards the sender's place, whose
//! node does the same with its own sender's record. This cascade never stops (in the steady
//! state of a 10,000-node Barabási–Albert tree, about one delegation per node per second, most
//! of the ring's bytes), and it does merging work: without it, first-try lookups 60 s after the
//! tree formed fell from 100% to 97.2% and 94.1% on two seeds (docs/SIMULATIONS.md,
//! "Stretches of the ring that formed apart"). A cheaper way to do that work is open.
//!
//! **Stretches that formed apart** are merged by the nodes' own periodic lookups of
//! themselves, which start away from their ring ([`crate::dht`]).
//!
//! **Stabilisation.** Every [`RING_PERIOD`] (first after 1 s, doubling, with jitter; 500 ms
//! after we move or our nearest neighbour changes; back to 1 s, doubling, whenever our ring
//! takes a new entry) a node sends its own record and the part of its ring the receiver should
//! hold to its nearest neighbour on each side: two messages per period once sorted. An entry not heard from for [`RING_EXPIRY`], directly or through a node between us
//! and it, is dropped. The same neighbour gets only the records that changed since our last
//! message to it, and all of them once a period.
//!
//! **Corrections** (Chord's *notify*). The receiver of a stabilisation that holds a node
//! between the sender and itself answers with the one nearest to the sender, at most once per
//! [`CORRECT_INTERVAL`] per sender; only stabilisations (a `RING` says whether it is one) are
//! corrected. A sorted ring has nothing to correct. On a 2,000-node Barabási–Albert tree they
//! took the nodes holding their true predecessor 10 s after the tree formed from 86% to 97.5%
//! (docs/SIMULATIONS.md, "Records of another tree, corrections").
//!
//! **A line, not a circle.** Ids are ordered as numbers and the ends do not wrap: with a wrap,
//! each node would delegate the shorter way round, the nodes opposite a hub split into two
//! sorted arcs that never meet (the unit tests found it). On a line, linearization converges,
//! and lookups never need the wrap: the owner of a target (a node id, or a subnet prefix
//! followed by zeros) is the first id at or above it.
//!
//! **Bounds.** The ring holds at most 2 × [`RING_SIDE`] records. A `RING` message carries at
//! most [`crate::wire::MAX_FOUND`] records, each signature-checked before it is offered; a
//! `RING` that arrives over a link is paid from that link's lookup budget ([`crate::budget`]),
//! like a `FIND`. A node's record is delegated at most once per period by each node to the
//! same contact, and each sender corrected at most once per [`CORRECT_INTERVAL`]
//! ([`MAX_DELEGATED`] of each remembered).
//!
//! This file must not decide where routed messages go (that is [`crate::forward`]); it only
//! chooses which node a record is sent to.

use crate::codec::Key;
use crate::coords::Place;
use crate::dht::id_of;
use crate::record::{NodeRecord, tree_id};
use crate::router::Router;
use crate::tree::Received;
use crate::vecmap::VecMap;
use crate::wire::{MAX_FOUND, RoutedBody, RoutedHeader};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ring neighbours kept on each side.
pub const RING_SIDE: usize = 4;
/// Steady-state stabilisation interval.
pub const RING_PERIOD: Duration = Duration::from_secs(30);
/// An entry not heard from directly for this long is dropped.
pub const RING_EXPIRY: Duration = Duration::from_secs(120);
/// Delegations (and corrections) remembered, to send each at most once per interval.
pub const MAX_DELEGATED: usize = 4096;
/// First stabilisation after the first contact, and the first interval.
const FIRST_STABILISE: Duration = Duration::from_secs(1);
/// Stabilisation after we moved or our nearest neighbour changed.
const SOON: Duration = Duration::from_millis(500);
/// Least time between two corrections sent to the same node (see [`Router::on_ring`]).
pub const CORRECT_INTERVAL: Duration = Duration::from_millis(7_500);
/// How far above `from` the id `to` lies, if it does (ids are ordered as numbers, on a line:
/// see the module doc for why the ends do not wrap).
pub fn above(from: u128, to: u128) -> Option<u128> {
    to.checked_sub(from).filter(|d| *d > 0)
}

/// How far below `from` the id `to` lies, if it does.
pub fn below(from: u128, to: u128) -> Option<u128> {
    from.checked_sub(to).filter(|d| *d > 0)
}

/// The candidate strictly between `me` and `w` that is nearest to `w`: where a record of `w`
/// is delegated (classic linearization's rule: never past `w`, which would cut `w` off from
/// the part of the line on our side).
pub fn closer(me: u128, w: u128, cands: impl IntoIterator<Item = u128>) -> Option<u128> {
    let (lo, hi) = (me.min(w), me.max(w));
    let between = cands.into_iter().filter(|c| lo < *c && *c < hi);
    if w > me { between.max() } else { between.min() }
}

/// What a ring keeps: anything with a version.
pub trait Versioned: Clone {
    /// Higher is newer.
    fn version(&self) -> u64;
}

impl Versioned for NodeRecord {
    fn version(&self) -> u64 {
        self.seq
    }
}

impl Versioned for Arc<NodeRecord> {
    fn version(&self) -> u64 {
        self.seq
    }
}

impl Versioned for u64 {
    fn version(&self) -> u64 {
        *self
    }
}

/// One ring neighbour.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// Its id.
    pub id: u128,
    /// What we know of it (its newest record).
    pub item: T,
    /// When it last spoke to us itself (or was added).
    pub heard: Instant,
}

/// What [`Ring::offer`] did.
#[derive(Debug)]
pub struct Offered<T> {
    /// It is in the ring (new or refreshed).
    pub kept: bool,
    /// It was not in the ring before.
    pub new: bool,
    /// Our nearest neighbour on a side changed.
    pub nearest_changed: bool,
    /// Entries pushed out (to delegate).
    pub evicted: Vec<(u128, T)>,
}

/// The nearest ids below and above ours, nearest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    me: u128,
    side: usize,
    /// Nearest first going up.
    pub above: Vec<Entry<T>>,
    /// Nearest first going down.
    pub below: Vec<Entry<T>>,
}

impl<T: Versioned> Ring<T> {
    /// An empty ring around `me`, keeping `side` entries per side.
    pub fn new(me: u128, side: usize) -> Self {
        Ring {
            me,
            side: side.max(1),
            above: Vec::new(),
            below: Vec::new(),
        }
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.below.iter().chain(self.above.iter())
    }

    /// Whether `id` is a neighbour.
    pub fn contains(&self, id: u128) -> bool {
        self.entries().any(|e| e.id == id)
    }

    /// Offers `item` (of node `id`); `direct`: the node itself told us (refreshes `heard`).
    pub fn offer(&mut self, id: u128, item: T, now: Instant, direct: bool) -> Offered<T> {
        let mut o = Offered {
            kept: false,
            new: false,
            nearest_changed: false,
            evicted: Vec::new(),
        };
        if id == self.me {
            return o;
        }
        let me = self.me;
        let (list, dist) = if id > me {
            (&mut self.above, above as fn(u128, u128) -> Option<u128>)
        } else {
            (&mut self.below, below as fn(u128, u128) -> Option<u128>)
        };
        if let Some(e) = list.iter_mut().find(|e| e.id == id) {
            if item.version() > e.item.version() {
                e.item = item;
            }
            if direct {
                e.heard = now;
            }
            o.kept = true;
            return o;
        }
        let d = dist(me, id);
        let pos = list.partition_point(|e| dist(me, e.id) < d);
        if pos >= self.side {
            return o;
        }
        // The farthest makes room first (it would go anyway), so that a full side never
        // grows its vector past `side`.
        if list.len() >= self.side
            && let Some(e) = list.pop()
        {
            o.evicted.push((e.id, e.item));
        }
        list.insert(
            pos,
            Entry {
                id,
                item,
                heard: now,
            },
        );
        o.kept = true;
        o.new = true;
        o.nearest_changed = pos == 0;
        o
    }

    /// Drops `id`.
    pub fn remove(&mut self, id: u128) {
        self.above.retain(|e| e.id != id);
        self.below.retain(|e| e.id != id);
    }

    /// Drops entries not heard from since `cutoff`; true if the nearest one on a side went.
    pub fn expire(&mut self, cutoff: Instant) -> bool {
        let nearest = (
            self.above.first().map(|e| e.id),
            self.below.first().map(|e| e.id),
        );
        self.above.retain(|e| e.heard >= cutoff);
        self.below.retain(|e| e.heard >= cutoff);
        nearest
            != (
                self.above.first().map(|e| e.id),
                self.below.first().map(|e| e.id),
            )
    }
}

/// Up to `n` of `items` nearest to `target` on each side, numerically (the target itself, if
/// present, counts as the first above).
pub fn around<'a, T>(
    target: u128,
    n: usize,
    items: impl IntoIterator<Item = (u128, &'a T)>,
) -> Vec<&'a T> {
    let mut up: Vec<(u128, &T)> = Vec::new();
    let mut down: Vec<(u128, &T)> = Vec::new();
    for (id, t) in items {
        if id >= target {
            up.push((id, t))
        } else {
            down.push((id, t))
        }
    }
    up.sort_by_key(|(id, _)| *id);
    up.dedup_by_key(|(id, _)| *id);
    down.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    down.dedup_by_key(|(id, _)| *id);
    up.into_iter()
        .take(n)
        .chain(down.into_iter().take(n))
        .map(|(_, t)| t)
        .collect()
}

/// What a stabilisation told a neighbour (see [`RingState`]).
#[derive(Debug)]
struct Told {
    /// The neighbour's record then (shared with the ring: only its key and sequence number
    /// count; a neighbour that moved since may not have had our message: it gets everything
    /// again).
    to: Arc<NodeRecord>,
    /// The records told (shared with the ring: only their keys and sequence numbers count).
    recs: Vec<Arc<NodeRecord>>,
    all_at: Instant,
}

/// A delegation remembered (see [`RingState`]): ids and nanoseconds rather than keys and
/// instants, as a hub remembers up to [`MAX_DELEGATED`] of them. An id is a hash of a key
/// (120 bits), and the nanoseconds since the router's creation are as exact as the instant
/// (time never runs backwards to before it), so the decisions are the same as with keys.
#[derive(Debug, Clone, Copy)]
struct Delegated {
    /// The id of the node it was sent to ...
    to: u128,
    /// ... and the sequence number of that node's record then.
    to_seq: u64,
    /// When, in nanoseconds since [`RingState::epoch`].
    at: u64,
}

/// The delegations remembered, sorted by the id of the node whose record it was: 48 bytes an
/// entry where a B-tree took about 75 (a node remembers tens, a hub up to [`MAX_DELEGATED`]),
/// grown by an eighth at a time rather than doubled. The same lookups and the same count as
/// the `BTreeMap` it replaces, so the same decisions.
#[derive(Debug, Default)]
struct Delegations(Vec<(u128, Delegated)>);

impl Delegations {
    fn get(&self, w: u128) -> Option<&Delegated> {
        let i = self.0.binary_search_by(|e| e.0.cmp(&w)).ok()?;
        Some(&self.0[i].1)
    }

    fn insert(&mut self, w: u128, d: Delegated) {
        match self.0.binary_search_by(|e| e.0.cmp(&w)) {
            Ok(i) => self.0[i].1 = d,
            Err(i) => {
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact((self.0.len() / 8).max(4));
                }
                self.0.insert(i, (w, d));
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Forgets them all, and gives the room back.
    fn clear(&mut self) {
        self.0 = Vec::new();
    }
}

/// The ring and what the router does with it.
#[derive(Debug)]
pub struct RingState {
    /// (Records shared with the lookup table and other routers: see [`crate::SharedVerified`].)
    pub(crate) ring: Ring<Arc<NodeRecord>>,
    next_stabilise: Option<Instant>,
    every: Duration,
    /// Records delegated lately, by the id of the node whose record it was.
    delegated: Delegations,
    /// Where the times in `delegated` count from: the router's creation.
    epoch: Instant,
    /// Senders of a `RING` we corrected lately (told of a node between them and us): when.
    /// (Sorted in a vector: most nodes correct a few, a hub up to [`MAX_DELEGATED`].)
    corrected: VecMap<Key, Instant>,
    /// What our last stabilisation on each side (above, below) told whom: the neighbour, the
    /// records (key and sequence number) and when it last got all of them.
    told: [Option<Told>; 2],
    /// Messages to send when the current input is handled: destination → (where, records).
    outbox: BTreeMap<Key, (Place, Vec<NodeRecord>, bool)>,
}

impl RingState {
    /// An empty ring for the node with id `id`, created at `now`.
    pub fn new(id: u128, now: Instant) -> Self {
        RingState {
            ring: Ring::new(id, RING_SIDE),
            next_stabilise: None,
            every: FIRST_STABILISE,
            delegated: Delegations::default(),
            epoch: now,
            corrected: VecMap::new(),
            told: [None, None],
            outbox: BTreeMap::new(),
        }
    }

    /// The next stabilisation.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_stabilise
    }
}

impl Router {
    /// Offers a verified record to the ring; `delegate`: pass it on towards its place if we do
    /// not keep it; `direct`: the node itself sent it.
    pub(crate) fn ring_offer(
        &mut self,
        now: Instant,
        rec: Arc<NodeRecord>,
        delegate: bool,
        direct: bool,
    ) {
        if self.ring.next_stabilise.is_none() {
            self.ring.next_stabilise = Some(now + FIRST_STABILISE);
        }
        let id = rec.id();
        let o = self.ring.ring.offer(id, rec.clone(), now, direct);
        if o.nearest_changed {
            self.ring_soon(now);
        }
        if o.new {
            // Our part of the ring is still changing: stabilise often again.
            self.ring.every = FIRST_STABILISE;
            let next = now + FIRST_STABILISE;
            if self.ring.next_stabilise.is_some_and(|t| t > next) {
                self.ring.next_stabilise = Some(next);
            }
        }
        if !o.kept && delegate {
            self.ring_delegate(now, rec);
        }
        for (_, e) in o.evicted {
            self.ring_delegate(now, e);
        }
    }

    /// Stabilise soon (we moved, or a nearest neighbour changed).
    pub(crate) fn ring_soon(&mut self, now: Instant) {
        let soon = now + SOON;
        if self.ring.next_stabilise.is_some_and(|t| t > soon) {
            self.ring.next_stabilise = Some(soon);
        }
    }

    /// Sends `rec` to the contact nearest to it around the ring, if one is nearer than us.
    fn ring_delegate(&mut self, now: Instant, rec: Arc<NodeRecord>) {
        let w = rec.id();
        let me = self.dht_id();
        // The nearest to `w` strictly between us (see [`closer`]), in one pass with no
        // allocation: a hub offers each of its many peers' records again at every
        // stabilisation (see `ring_timers`).
        let (lo, hi) = (me.min(w), me.max(w));
        let best = self
            .known_ids_records()
            .filter(|(id, _)| lo < *id && *id < hi)
            // (The newest copy where we hold several: its place is the freshest.)
            .min_by_key(|(id, r)| (id.abs_diff(w), std::cmp::Reverse(r.seq)))
            .map(|(id, r)| (id, r.clone()));
        let Some((to_id, to)) = best else {
            return;
        };
        let at = now.saturating_duration_since(self.ring.epoch).as_nanos() as u64;
        let period = RING_PERIOD.as_nanos() as u64;
        // Once a period to the same node, whatever its sequence number (the record's place in
        // the ring does not change with it, and its neighbours hear newer ones from the node
        // itself); at once to a nearer one, which we may have learned of since.
        if self
            .ring
            .delegated
            .get(w)
            .is_some_and(|d| d.to == to_id && d.to_seq == to.seq && at < d.at + period)
        {
            return;
        }
        if self.ring.delegated.len() >= MAX_DELEGATED {
            self.ring.delegated.clear();
        }
        self.ring.delegated.insert(
            w,
            Delegated {
                to: to_id,
                to_seq: to.seq,
                at,
            },
        );
        self.stats.ring_delegations += 1;
        self.ring_queue(&to, Some(NodeRecord::clone(&rec)), false);
    }

    /// Adds a record (or just our own, `None`) to the next message for `to`; `stabilise`: the
    /// message is our stabilisation (see [`RoutedBody::Ring`]).
    fn ring_queue(&mut self, to: &NodeRecord, rec: Option<NodeRecord>, stabilise: bool) {
        let e = self
            .ring
            .outbox
            .entry(to.key)
            .or_insert_with(|| (Place::from(to.place.at.clone()), Vec::new(), false));
        e.2 |= stabilise;
        if let Some(r) = rec
            && r.key != to.key
            && !e.1.iter().any(|x| x.key == r.key)
        {
            e.1.push(r);
        }
    }

    /// Sends what the handling of one input queued: our record first, then up to
    /// `MAX_FOUND - 1` others per message.
    pub(crate) fn ring_flush(&mut self, now: Instant) {
        if self.ring.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.ring.outbox);
        for (key, (place, recs, stabilise)) in outbox {
            let mut chunks: Vec<&[NodeRecord]> = recs.chunks(MAX_FOUND - 1).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for chunk in chunks {
                let mut nodes = Vec::with_capacity(chunk.len() + 1);
                nodes.push(self.node_record.clone());
                nodes.extend_from_slice(chunk);
                self.stats.ring_messages += 1;
                self.stats.ring_stabilisations += u64::from(stabilise);
                self.send_control(now, &key, &place, RoutedBody::Ring { stabilise, nodes });
            }
        }
    }

    /// A `RING` message: offer every record whose signature checks out.
    ///
    /// An entry counts as heard from if the node itself sent it, or a node between us and it
    /// (which holds it, being nearer): freshness flows only from nearer to farther, so the
    /// record of a node that died expires at its nearest neighbours first, then further out,
    /// and no two nodes can keep each other's copy alive.
    ///
    /// And a correction (Chord's *notify*): a sender that stabilises towards us takes us for
    /// its nearest neighbour on our side. If we hold a node between it and us, we send it the
    /// one nearest to it, at most once per [`CORRECT_INTERVAL`] per sender. A sorted ring
    /// has nothing between, so it costs nothing once sorted; while the ring forms, it moves
    /// each node to its place a period sooner than delegation alone. Delegations (`stabilise`
    /// false) are not corrected: their sender does not take us for its neighbour.
    pub(crate) fn on_ring(
        &mut self,
        now: Instant,
        h: &RoutedHeader,
        stabilise: bool,
        nodes: Vec<Received>,
    ) {
        let (me, from) = (self.dht_id(), id_of(&h.src_key));
        if stabilise
            && let Some(sender) = nodes.iter().find(|r| {
                let r = r.rec();
                r.key == h.src_key && r.tree == tree_id(&self.root)
            })
        {
            // (Signature checked first: the answer goes to the place the record names, and an
            // unchecked one would let anyone aim our corrections at any place. A shared copy
            // is the one `check_node` would give.)
            let checked = match sender {
                Received::Held(r) => Some(NodeRecord::clone(r)),
                Received::New(r) => {
                    let mut r = r.clone();
                    self.verified.check_node(&mut r).then_some(r)
                }
            };
            if let Some(sender) = checked {
                self.ring_correct(now, me, from, sender);
            }
        }
        for rec in nodes {
            let w = rec.rec().id();
            let direct = w == from || (me.min(w) < from && from < me.max(w));
            match rec {
                Received::Held(r) => self.learn_checked(now, r, true, direct),
                Received::New(r) => self.learn(now, r, true, direct),
            }
        }
    }

    /// A `RING` body's records, those a [`crate::SharedVerified`] holds as its shared copies
    /// found by their bytes, not decoded (a simulation's routers receive the same records
    /// again and again: decoding each place was a tenth of a run's time). `None` without a
    /// shared table, or if the body does not read: then it is decoded in full, as before.
    pub(crate) fn ring_shared(&self, body: &[u8]) -> Option<(bool, Vec<Received>)> {
        if !self.verified.is_shared() {
            return None;
        }
        let (stabilise, at) = crate::wire::ring_records(body)?;
        Some((stabilise, self.verified.received(body, at)?))
    }

    /// Sends `sender` (id `from`) the node we hold between it and us nearest to it, if any.
    fn ring_correct(&mut self, now: Instant, me: u128, from: u128, sender: NodeRecord) {
        let (lo, hi) = (me.min(from), me.max(from));
        let Some(between) = self
            .ring
            .ring
            .entries()
            .filter(|e| lo < e.id && e.id < hi)
            .min_by_key(|e| e.id.abs_diff(from))
            .map(|e| e.item.clone())
        else {
            return;
        };
        if self
            .ring
            .corrected
            .get(&sender.key)
            .is_some_and(|t| now < *t + CORRECT_INTERVAL)
        {
            return;
        }
        if self.ring.corrected.len() >= MAX_DELEGATED {
            self.ring
                .corrected
                .retain(|_, t| now < *t + CORRECT_INTERVAL);
            if self.ring.corrected.len() >= MAX_DELEGATED {
                self.ring.corrected.clear();
            }
        }
        self.ring.corrected.insert(sender.key, now);
        self.stats.ring_corrections += 1;
        self.ring_queue(&sender, Some(NodeRecord::clone(&between)), false);
    }

    /// Expiry and stabilisation.
    pub(crate) fn ring_timers(&mut self, now: Instant) {
        if let Some(cutoff) = now.checked_sub(RING_EXPIRY)
            && self.ring.ring.expire(cutoff)
        {
            self.ring_soon(now);
        }
        if self.ring.next_stabilise.is_none_or(|t| now < t) {
            return;
        }
        self.ring.every = (self.ring.every * 2).min(RING_PERIOD);
        // Up to an eighth of the interval of jitter, so that neighbours do not stay in step.
        let jitter = self
            .ring
            .every
            .mul_f64((self.next_random() % 1000) as f64 / 8000.0);
        self.ring.next_stabilise = Some(now + self.ring.every + jitter);
        // Our direct peers again, with delegation: a delegation lost on the way (sent to a
        // place that changed while the tree formed) would otherwise leave the "who knows
        // whom" graph cut for good, and the ring sorted in separate arcs.
        let peers: Vec<Arc<NodeRecord>> = self
            .peers
            .values()
            .filter_map(|p| p.record.clone())
            .filter(|r| r.tree == tree_id(&self.root))
            .collect();
        for rec in peers {
            self.ring_offer(now, rec, true, false);
        }
        // To our nearest neighbour above: what it should keep of ours (our own record, our
        // nearest below but the farthest, our above but itself); likewise below. A sorted ring
        // therefore delegates nothing. The same neighbour gets only what changed since the
        // last time, and everything again once a period (what it holds through us counts as
        // heard from us, and must not expire): a forming ring stabilises often (500 ms after
        // each change of nearest neighbour), and each full message is up to 8 signed records.
        let r = &self.ring.ring;
        let side = RING_SIDE.saturating_sub(1);
        let mut sends: Vec<(NodeRecord, Vec<NodeRecord>)> = Vec::new();
        for (i, (near, same, other)) in [
            (&r.above, &r.above, &r.below),
            (&r.below, &r.below, &r.above),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(n) = near.first() else {
                self.ring.told[i] = None;
                continue;
            };
            let told: Vec<Arc<NodeRecord>> = other
                .iter()
                .take(side)
                .chain(same.iter().skip(1))
                .map(|e| Arc::clone(&e.item))
                .collect();
            let recs: Vec<NodeRecord> = told.iter().map(|r| NodeRecord::clone(r)).collect();
            let send = match &self.ring.told[i] {
                Some(t)
                    if t.to.key == n.item.key
                        && t.to.seq == n.item.seq
                        && now < t.all_at + RING_PERIOD =>
                {
                    let new: Vec<NodeRecord> = recs
                        .into_iter()
                        .filter(|r| !t.recs.iter().any(|x| (x.key, x.seq) == (r.key, r.seq)))
                        .collect();
                    self.ring.told[i] = Some(Told {
                        to: Arc::clone(&n.item),
                        recs: told,
                        all_at: t.all_at,
                    });
                    new
                }
                _ => {
                    self.ring.told[i] = Some(Told {
                        to: Arc::clone(&n.item),
                        recs: told,
                        all_at: now,
                    });
                    recs
                }
            };
            sends.push((NodeRecord::clone(&n.item), send));
        }
        for (to, recs) in sends {
            self.ring_queue(&to, None, true);
            for rec in recs {
                self.ring_queue(&to, Some(rec), true);
            }
        }
        self.ring_flush(now);
    }

    /// The known nodes nearest to `target` around the ring, up to `n` on each side: from the
    /// ring, the lookup table and the direct peers. A lookup that ran out of candidates walks
    /// towards these; names (stored at the nodes nearest to a hash) can use them too.
    pub fn ring_around(&self, target: u128, n: usize) -> Vec<Arc<NodeRecord>> {
        around(target, n, self.known_ids_records())
            .into_iter()
            .cloned()
            .collect()
    }

    /// Every record we hold, with its node's id: ring, lookup table, direct peers (possibly
    /// repeated). The ring and the table keep the ids they computed when they took the
    /// records (an id is a SHA-512 of the key: computing them again here, for every record
    /// delegated, was a fifth of a simulation's time).
    pub(crate) fn known_ids_records(&self) -> impl Iterator<Item = (u128, &Arc<NodeRecord>)> {
        self.ring
            .ring
            .entries()
            .map(|e| (e.id, &e.item))
            .chain(self.dht.ids_records())
            .chain(self.peers.values().filter_map(|p| p.id_record()))
    }

    /// Our ring neighbours' records, below (nearest first) then above (for tools and tests).
    pub fn ring_records(&self) -> (Vec<&NodeRecord>, Vec<&NodeRecord>) {
        (
            self.ring.ring.below.iter().map(|e| &*e.item).collect(),
            self.ring.ring.above.iter().map(|e| &*e.item).collect(),
        )
    }

    /// Our ring neighbours' keys, below (nearest first) then above (for tools and tests).
    pub fn ring_keys(&self) -> (Vec<Key>, Vec<Key>) {
        (
            self.ring.ring.below.iter().map(|e| e.item.key).collect(),
            self.ring.ring.above.iter().map(|e| e.item.key).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pure model of the protocol over ids alone: each node knows its peers (fixed) and its
    /// ring; offers, delegations and introductions travel as messages, one round at a time.
    struct Model {
        ids: Vec<u128>,
        peers: Vec<Vec<usize>>,
        rings: Vec<Ring<u64>>,
        by_id: BTreeMap<u128, usize>,
    }

    impl Model {
        fn new(ids: Vec<u128>, edges: &[(usize, usize)]) -> Model {
            let n = ids.len();
            let mut peers = vec![Vec::new(); n];
            for &(a, b) in edges {
                peers[a].push(b);
                peers[b].push(a);
            }
            let rings = ids.iter().map(|id| Ring::new(*id, RING_SIDE)).collect();
            let by_id = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            Model {
                ids,
                peers,
                rings,
                by_id,
            }
        }

        /// Node `at` offers `w` (delegating if it does not keep it); messages go to `out`.
        fn offer(&mut self, at: usize, w: usize, t: Instant, out: &mut Vec<(usize, usize)>) {
            let o = self.rings[at].offer(self.ids[w], 0, t, true);
            let mut to_delegate: Vec<u128> = o.evicted.iter().map(|(id, _)| *id).collect();
            if !o.kept {
                to_delegate.push(self.ids[w]);
            }
            for x in to_delegate {
                let cands = self.rings[at]
                    .entries()
                    .map(|e| e.id)
                    .chain(self.peers[at].iter().map(|p| self.ids[*p]))
                    .collect::<Vec<_>>();
                if let Some(c) = closer(self.ids[at], x, cands) {
                    out.push((self.by_id[&c], self.by_id[&x]));
                }
            }
        }

        /// Rounds until sorted (at most `max`): in each, every node offers its peers and
        /// stabilises as the router does (tells its nearest neighbour on each side about
        /// itself and what that neighbour should keep of its ring, and hears back of a node
        /// between them); messages are delivered until none is left.
        fn run(&mut self, max: usize) -> Option<usize> {
            let t = Instant::now();
            for round in 1..=max {
                let mut out = Vec::new();
                for a in 0..self.ids.len() {
                    for p in self.peers[a].clone() {
                        self.offer(a, p, t, &mut out);
                    }
                    let r = &self.rings[a];
                    let side = RING_SIDE - 1;
                    for (near, same, other) in [
                        (&r.above, &r.above, &r.below),
                        (&r.below, &r.below, &r.above),
                    ] {
                        if let Some(n) = near.first() {
                            let to = self.by_id[&n.id];
                            out.push((to, a));
                            // The receiver's correction: the node it holds between us and
                            // it, nearest to us.
                            let (me, them) = (self.ids[a], n.id);
                            let (lo, hi) = (me.min(them), me.max(them));
                            if let Some(b) = self.rings[to]
                                .entries()
                                .filter(|e| lo < e.id && e.id < hi)
                                .min_by_key(|e| e.id.abs_diff(me))
                            {
                                out.push((a, self.by_id[&b.id]));
                            }
                            for e in other.iter().take(side).chain(same.iter().skip(1)) {
                                out.push((to, self.by_id[&e.id]));
                            }
                        }
                    }
                }
                let mut steps = 0;
                while let Some((to, w)) = out.pop() {
                    steps += 1;
                    assert!(steps < 10_000_000, "messages do not die out");
                    if to != w {
                        self.offer(to, w, t, &mut out);
                    }
                }
                if self.sorted() {
                    return Some(round);
                }
            }
            None
        }

        fn wrong(&self) -> usize {
            let mut order: Vec<usize> = (0..self.ids.len()).collect();
            order.sort_by_key(|i| self.ids[*i]);
            let n = order.len();
            (0..n)
                .filter(|&k| {
                    let r = &self.rings[order[k]];
                    let want_above: Vec<u128> = order[k + 1..]
                        .iter()
                        .take(RING_SIDE)
                        .map(|i| self.ids[*i])
                        .collect();
                    let want_below: Vec<u128> = order[..k]
                        .iter()
                        .rev()
                        .take(RING_SIDE)
                        .map(|i| self.ids[*i])
                        .collect();
                    r.above.iter().map(|e| e.id).collect::<Vec<_>>() != want_above
                        || r.below.iter().map(|e| e.id).collect::<Vec<_>>() != want_below
                })
                .count()
        }

        fn sorted(&self) -> bool {
            self.wrong() == 0
        }
    }

    fn ids(n: usize, seed: u64) -> Vec<u128> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                let mut v = 0u128;
                for _ in 0..2 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v = (v << 64) | u128::from(x);
                }
                (0x06u128 << 120) | (v >> 8)
            })
            .collect()
    }

    #[test]
    fn delegation_goes_towards_the_record_never_past_it() {
        let lo = 0x06u128 << 120;
        assert_eq!(above(lo, lo + 3), Some(3));
        assert_eq!(above(lo + 3, lo), None);
        assert_eq!(below(lo + 3, lo), Some(3));
        // Between us and the record, nearest to it; never past it.
        assert_eq!(
            closer(lo + 10, lo + 20, [lo + 15, lo + 30, lo + 21]),
            Some(lo + 15)
        );
        assert_eq!(closer(lo + 10, lo + 20, [lo + 21, lo]), None);
        assert_eq!(
            closer(lo + 10, lo + 5, [lo + 6, lo + 4, lo + 9]),
            Some(lo + 6)
        );
    }

    #[test]
    fn offer_keeps_the_nearest_and_evicts_the_farthest() {
        let me = 0x06u128 << 120 | 1000;
        let t = Instant::now();
        let mut r: Ring<u64> = Ring::new(me, 2);
        assert!(r.offer(me - 1, 1, t, false).new);
        assert!(r.offer(me - 2, 1, t, false).new);
        assert!(r.offer(me + 10, 1, t, false).new);
        assert!(r.offer(me + 20, 1, t, false).new);
        let o = r.offer(me + 5, 1, t, false);
        assert!(o.kept && o.nearest_changed);
        assert!(!r.offer(me + 30, 1, t, false).kept);
        assert_eq!(
            r.above.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![me + 5, me + 10]
        );
        assert!(o.evicted.iter().any(|(id, _)| *id == me + 20));
        // A newer version replaces, an older does not.
        r.offer(me + 5, 7, t, false);
        r.offer(me + 5, 3, t, false);
        assert_eq!(r.above[0].item, 7);
    }

    #[test]
    fn around_takes_both_sides() {
        let ids = [10u128, 20, 30, 40, 50];
        let items: Vec<(u128, &u128)> = ids.iter().map(|i| (*i, i)).collect();
        let got: Vec<u128> = around(30, 1, items.clone()).into_iter().copied().collect();
        assert_eq!(got, vec![30, 20]);
        let got: Vec<u128> = around(31, 2, items.clone()).into_iter().copied().collect();
        assert_eq!(got, vec![40, 50, 30, 20]);
        let got: Vec<u128> = around(30, 2, items).into_iter().copied().collect();
        assert_eq!(got, vec![30, 40, 20, 10]);
    }

    #[test]
    fn a_line_sorts_from_peer_knowledge_alone() {
        let n = 100;
        let edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
        let mut m = Model::new(ids(n, 1), &edges);
        let rounds = m.run(40).expect("a line sorts");
        assert!(rounds <= 16, "{rounds} rounds");
    }

    #[test]
    fn a_star_of_200_leaves_sorts() {
        let n = 201;
        let edges: Vec<(usize, usize)> = (1..n).map(|i| (0, i)).collect();
        let mut m = Model::new(ids(n, 2), &edges);
        let rounds = m.run(40).expect("a star sorts");
        assert!(rounds <= 16, "{rounds} rounds");
    }

    #[test]
    fn a_barabasi_albert_tree_sorts() {
        // m = 1: each new node links to one earlier node, chosen by degree.
        let n = 1000;
        let mut x = 7u64;
        let mut rnd = |k: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % k as u64) as usize
        };
        let mut ends = vec![0usize, 1];
        let mut edges = vec![(0, 1)];
        for v in 2..n {
            let t = ends[rnd(ends.len())];
            edges.push((t, v));
            ends.extend([t, v]);
        }
        let mut m = Model::new(ids(n, 3), &edges);
        let rounds = m.run(40).expect("a BA tree sorts");
        // 11 rounds without the receivers' corrections.
        assert!(rounds <= 8, "{rounds} rounds");
    }
}
