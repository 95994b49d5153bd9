//! Finding a destination: from an overlay address to its owner's key and coordinates.
//!
//! **Choice.** A Kademlia-style table over node ids, where a node's id is its overlay address
//! (so an address *is* a lookup target, and a subnet's /64 prefix is a prefix of its owner's
//! id). Each node keeps up to `bucket_size` contacts per bucket of XOR distance: about
//! `bucket_size × log2(n)` signed node records, whatever the size of the network. A lookup is
//! iterative: the source asks the closest contacts it knows for closer ones, at most
//! `lookup_parallelism` requests at a time, each request tree-routed to the contact; it ends
//! when a returned record's key owns the address, or when the closest known nodes have all
//! answered. That is O(log n) requests, each touching the nodes on one tree path.
//!
//! **Why not Bloom filters along the tree** (Yggdrasil 0.5): a filter summarises a whole
//! subtree, so near the root it holds most of the network and saturates; lookups there
//! degrade towards broadcast. Here no node ever summarises more than its own table.
//!
//! **Trust.** Every record is signed by its key, and an answer counts only if the record's key
//! owns the address looked up ([`crate::address::key_owns`]): a node cannot answer for an
//! address not derived from its key. Results are cached for `route_ttl`, and dropped at once
//! when traffic to them is reported broken.

use crate::address::{self, AddrKind};
use crate::codec::Key;
use crate::coords::Place;
use crate::record::{NodeRecord, tree_id};
use crate::router::{Event, Route, Router, RouterConfig};
use crate::tree::Received;
use crate::vecmap::VecMap;
use crate::wire::{MAX_FOUND, RoutedBody, RoutedHeader};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node's id: its node address as a number.
pub fn id_of(key: &Key) -> u128 {
    u128::from_be_bytes(address::node_address(key).octets())
}

/// The id a lookup for `addr` aims at, or `None` outside the overlay. For a subnet address:
/// the owner's id starts with the subnet prefix, so aim at the prefix followed by zeros.
pub fn target_of(addr: &Ipv6Addr) -> Option<u128> {
    let o = addr.octets();
    match address::classify(addr) {
        AddrKind::Node => Some(u128::from_be_bytes(o)),
        AddrKind::Subnet => {
            let mut t = [0u8; 16];
            t[0] = address::NODE_ADDR_BYTE;
            t[1..8].copy_from_slice(&o[1..8]);
            Some(u128::from_be_bytes(t))
        }
        AddrKind::Outside => None,
    }
}

/// First self-lookup after the first contact, and the first interval between them.
const FIRST_REFRESH: Duration = Duration::from_millis(200);
/// Our self-lookups start from this many contacts picked at random in our lookup table (with
/// our direct peers), not from the contacts nearest us: see [`Router::start_lookup_for`].
const SELF_LOOKUP_SEEDS: usize = 3;
/// A self-lookup ends once this many of the candidates closest to us have answered (and the
/// nearest below and above us): it looks for our neighbourhood, not for a node.
const SELF_LOOKUP_K: usize = 2;
/// A lookup with nobody to ask is retried this often ...
const DEFER_STEP: Duration = Duration::from_millis(250);
/// ... for this long, before it counts as not found.
const DEFER_PATIENCE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Contact {
    /// Shared with the ring and other routers' tables (see [`crate::SharedVerified`]); its id
    /// is the record's (16 bytes a contact, where every simulated node holds tens).
    rec: Arc<NodeRecord>,
    fails: u8,
    /// Its bucket: the length of the prefix its id shares with ours (in the padding).
    bucket: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    New,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug)]
struct Lookup {
    target: u128,
    /// The address being resolved (none for table refreshes).
    addr: Option<Ipv6Addr>,
    /// Candidates by XOR distance to the target (records shared with the lookup table, the
    /// ring and, in a simulation, other routers: see [`crate::SharedVerified`]).
    short: Candidates,
    /// The freshest record of the owner seen, and whether we are asking the owner itself.
    owner: Option<Arc<NodeRecord>>,
    confirming: bool,
    /// The owner did not answer at the place this record (sequence number) gives: only a
    /// fresher copy is worth confirming.
    unconfirmed: Option<u64>,
    /// The name operation this lookup finds storing nodes for (see [`crate::names`]).
    name_op: Option<u64>,
    /// When the first attempt for this address began (see [`DEFER_PATIENCE`]).
    first: Instant,
    /// An answer carried the owner's record signed in another tree than ours: the tree is
    /// changing, so "not found" is premature.
    owner_elsewhere: bool,
    /// Our own periodic lookup, started from far contacts (see [`Router::start_lookup_for`]).
    own: bool,
}

/// A lookup's candidates by XOR distance to its target: what a `BTreeMap` from distance to
/// (record, state) held, in the same order, as a sorted vector of 16 bytes an entry (a lookup
/// has tens of candidates, and a simulation runs a lookup or two on each of its nodes at
/// once). A candidate's distance is its record's id XOR the target, so it is not stored:
/// ids are computed once per record ([`NodeRecord::id`]).
#[derive(Debug)]
struct Candidates {
    target: u128,
    v: Vec<(Arc<NodeRecord>, Ask)>,
}

impl Candidates {
    fn new(target: u128) -> Self {
        Candidates {
            target,
            v: Vec::new(),
        }
    }

    fn find(&self, d: u128) -> Result<usize, usize> {
        self.v
            .binary_search_by(|(r, _)| (r.id() ^ self.target).cmp(&d))
    }

    /// The candidate at distance `d`.
    fn get_mut(&mut self, d: u128) -> Option<&mut (Arc<NodeRecord>, Ask)> {
        self.find(d).ok().map(|i| &mut self.v[i])
    }

    /// The candidate at the distance of `e`'s record, `e` if there was none.
    fn get_or_insert(&mut self, e: (Arc<NodeRecord>, Ask)) -> &mut (Arc<NodeRecord>, Ask) {
        let i = match self.find(e.0.id() ^ self.target) {
            Ok(i) => i,
            Err(i) => {
                // (Grown by a quarter: a lookup gathers tens of candidates.)
                if self.v.len() == self.v.capacity() {
                    self.v.reserve_exact((self.v.len() / 4).max(4));
                }
                self.v.insert(i, e);
                i
            }
        };
        &mut self.v[i]
    }

    fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// Distances and candidates, nearest first.
    fn iter(&self) -> impl Iterator<Item = (u128, &(Arc<NodeRecord>, Ask))> {
        self.v.iter().map(|e| (e.0.id() ^ self.target, e))
    }

    /// Candidates, nearest first.
    fn values(&self) -> impl Iterator<Item = &(Arc<NodeRecord>, Ask)> {
        self.v.iter()
    }

    /// Distances and candidates, nearest first.
    fn into_iter(self) -> impl Iterator<Item = (u128, (Arc<NodeRecord>, Ask))> {
        let t = self.target;
        self.v.into_iter().map(move |e| (e.0.id() ^ t, e))
    }
}

#[derive(Debug, Clone, Copy)]
struct Rpc {
    lookup: u64,
    dist: u128,
    sent: Instant,
    /// How long the answer may take (see [`Router::rpc_wait`]).
    wait: Duration,
    /// The key asked.
    asked: Key,
    /// Asked the owner itself, to confirm a record others gave us.
    confirm: bool,
}

/// The lookup table and the lookups in progress.
#[derive(Debug)]
pub struct Dht {
    id: u128,
    k: usize,
    /// The buckets (by the length of the prefix shared with our id, 0..=128) one after the
    /// other, in one vector sorted by bucket, each in the order of a bucket of its own: a
    /// vector per bucket cost an allocation each (a node has about log2(n) buckets of a few
    /// contacts), and a simulation holds one table per node.
    contacts: Vec<Contact>,
    /// Boxed, as the requests below, in sorted vectors (in key order, as the `BTreeMap`s
    /// these were): most nodes have one or two lookups running, or none, and a B-tree node
    /// held 11 entries.
    lookups: VecMap<u64, Box<Lookup>>,
    rpcs: VecMap<u64, Box<Rpc>>,
    next_lookup: u64,
    next_refresh: Option<Instant>,
    /// We moved since the last self-lookup started.
    moved: bool,
    /// Lookups with nobody to ask yet: (retry at, address, first tried).
    deferred: Vec<(Instant, Ipv6Addr, Instant)>,
    /// The interval of the next self-lookup: short at first (the table is empty and every
    /// round fills it), doubling up to the configured refresh.
    refresh_every: Duration,
}

impl Dht {
    /// An empty table for the node with id `id`.
    pub fn new(id: u128, k: usize) -> Self {
        Dht {
            id,
            k,
            contacts: Vec::new(),
            lookups: VecMap::new(),
            rpcs: VecMap::new(),
            next_lookup: 1,
            next_refresh: None,
            moved: false,
            deferred: Vec::new(),
            refresh_every: FIRST_REFRESH,
        }
    }

    /// The contacts' keys (for tools and simulations).
    pub fn contact_keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.contacts.iter().map(|c| c.rec.key)
    }

    /// The contacts' ids and records (the ids as computed when they were added).
    pub(crate) fn ids_records(&self) -> impl Iterator<Item = (u128, &Arc<NodeRecord>)> {
        self.contacts.iter().map(|c| (c.rec.id(), &c.rec))
    }

    /// Contacts held.
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// No contacts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, id: u128) -> u8 {
        (self.id ^ id).leading_zeros() as u8
    }

    /// Where bucket `b` lies in `contacts`.
    fn range(&self, b: u8) -> std::ops::Range<usize> {
        let start = self.contacts.partition_point(|c| c.bucket < b);
        let end = start + self.contacts[start..].partition_point(|c| c.bucket == b);
        start..end
    }

    /// Adds or refreshes a verified contact. Returns false if there was no room.
    fn insert(&mut self, rec: Arc<NodeRecord>) -> bool {
        let id = rec.id();
        if id == self.id {
            return false;
        }
        let k = self.k;
        let b = self.bucket(id);
        let r = self.range(b);
        let bucket = &mut self.contacts[r.clone()];
        if let Some(c) = bucket.iter_mut().find(|c| c.rec.key == rec.key) {
            if rec.seq >= c.rec.seq {
                c.rec = rec;
            }
            c.fails = 0;
            return true;
        }
        if bucket.len() < k {
            // (Grown by a quarter: a table holds tens of contacts.)
            if self.contacts.len() == self.contacts.capacity() {
                self.contacts
                    .reserve_exact((self.contacts.len() / 4).max(4));
            }
            self.contacts.insert(
                r.end,
                Contact {
                    rec,
                    fails: 0,
                    bucket: b,
                },
            );
            return true;
        }
        // Full: replace a contact that failed to answer, else keep the old ones (Kademlia's
        // preference for long-lived contacts).
        if let Some(c) = bucket.iter_mut().find(|c| c.fails > 0) {
            *c = Contact {
                rec,
                fails: 0,
                bucket: b,
            };
            return true;
        }
        false
    }

    fn failed(&mut self, key: &Key) {
        let r = self.range(self.bucket(id_of(key)));
        if let Some(i) = self.contacts[r.clone()]
            .iter()
            .position(|c| c.rec.key == *key)
        {
            let i = r.start + i;
            self.contacts[i].fails += 1;
            if self.contacts[i].fails >= 2 {
                self.contacts.remove(i);
            }
        }
    }

    /// The `n` known records closest to `target`.
    fn closest(&self, target: u128, n: usize) -> Vec<Arc<NodeRecord>> {
        let mut all: Vec<(u128, &Arc<NodeRecord>)> = self
            .contacts
            .iter()
            .map(|c| (c.rec.id() ^ target, &c.rec))
            .collect();
        all.sort_by_key(|(d, _)| *d);
        all.into_iter()
            .take(n)
            .map(|(_, r)| Arc::clone(r))
            .collect()
    }

    /// The next instant a request times out or a refresh is due.
    pub fn next_deadline(&self, _cfg: &RouterConfig) -> Option<Instant> {
        let rpc = self.rpcs.values().map(|r| r.sent + r.wait).min();
        let deferred = self.deferred.iter().map(|d| d.0).min();
        [rpc, self.next_refresh, deferred]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Router {
    /// Learns a node record (checks its signature).
    pub(crate) fn dht_learn(&mut self, now: Instant, rec: NodeRecord) {
        self.learn(now, rec, false, false);
    }

    /// [`Router::dht_learn`] for a record whose signature was checked already.
    fn dht_learn_checked(&mut self, now: Instant, rec: Arc<NodeRecord>) {
        self.learn_checked(now, rec, false, false);
    }

    /// Our id.
    pub(crate) fn dht_id(&self) -> u128 {
        self.dht.id
    }

    /// Learns a node record (checks its signature), and offers it to the ring
    /// ([`crate::ring`]): `delegate`, pass it on towards its place if it does not belong in
    /// ours; `direct`, the node itself sent it.
    ///
    /// A record signed in another tree than ours is ignored (and counted): its coordinates
    /// count ports from another root, so whatever we sent there would die on the way, and
    /// passing it on would spread the dead end. Its owner's record of our tree comes soon
    /// enough (the tree's root announcement reaches it about when it reached us).
    pub(crate) fn learn(&mut self, now: Instant, rec: NodeRecord, delegate: bool, direct: bool) {
        if !self.learnable(&rec) {
            return;
        }
        let Some(rec) = self.verified.check_record(rec) else {
            return;
        };
        self.learn_verified(now, rec, delegate, direct);
    }

    /// [`Router::learn`] for a record whose signature was checked already.
    pub(crate) fn learn_checked(
        &mut self,
        now: Instant,
        rec: Arc<NodeRecord>,
        delegate: bool,
        direct: bool,
    ) {
        if self.learnable(&rec) {
            self.learn_verified(now, rec, delegate, direct);
        }
    }

    /// Not our own record, and one of our tree (counted if not).
    fn learnable(&mut self, rec: &NodeRecord) -> bool {
        if rec.key == self.key {
            return false;
        }
        if rec.tree != tree_id(&self.root) {
            self.stats.other_tree += 1;
            return false;
        }
        true
    }

    fn learn_verified(&mut self, now: Instant, rec: Arc<NodeRecord>, delegate: bool, direct: bool) {
        if self.dht.next_refresh.is_none() {
            // First contact: look ourselves up soon, to find our neighbourhood.
            self.dht.next_refresh = Some(now + FIRST_REFRESH);
        }
        self.record_coords(now, &rec, false);
        self.dht.insert(rec.clone());
        self.ring_offer(now, rec, delegate, direct);
    }

    /// Our coordinates changed: tell our neighbourhood soon.
    pub(crate) fn dht_position_changed(&mut self, now: Instant) {
        self.dht.moved = true;
        self.ring_soon(now);
        let soon = now + Duration::from_millis(500);
        if self.dht.next_refresh.is_some_and(|t| t > soon) {
            self.dht.next_refresh = Some(soon);
        }
    }

    /// The owner of `addr` if known; otherwise starts a lookup (reported by
    /// [`Event::Resolved`]) and returns `None`.
    pub fn resolve(&mut self, now: Instant, addr: &Ipv6Addr) -> Option<Key> {
        let owner = address::owner_id(addr)?;
        if let Some(r) = self.routes.get(&owner)
            && now < r.updated + self.cfg.route_ttl
        {
            return Some(r.key);
        }
        // A direct peer needs no lookup.
        if let Some(p) = self
            .peers
            .values()
            .find(|p| address::key_owns(&p.key, &owner))
        {
            let (key, coords) = (p.key, p.coords.clone().unwrap_or_default());
            let place = match &p.record {
                Some(r) if r.place.at == coords => r.place.clone(),
                _ => Arc::new(coords.clone().into()),
            };
            let seq = self.coords_of.get(&key).map_or(0, |l| l.seq);
            self.set_coords(now, key, place, seq);
            self.routes.insert(
                owner,
                Route {
                    key,
                    coords,
                    updated: now,
                },
            );
            return Some(key);
        }
        let target = target_of(&owner)?;
        if self.dht.lookups.values().any(|l| l.addr == Some(owner))
            || self.dht.deferred.iter().any(|d| d.1 == owner)
        {
            return None;
        }
        if self.dht.lookups.len() + self.dht.deferred.len() >= crate::budget::MAX_LOOKUPS {
            // Too many at once: this one ends now, not found (the caller may ask again).
            self.stats.lookups_refused += 1;
            self.events.push_back(Event::Resolved {
                addr: owner,
                key: None,
            });
            return None;
        }
        self.start_lookup(now, target, Some(owner), None);
        None
    }

    /// Looks `addr` up again although we may know its owner (a `BROKEN` said the path is
    /// gone): unless a lookup for it is running already. What we know stays until a newer
    /// record replaces it.
    pub(crate) fn lookup_again(&mut self, now: Instant, addr: Ipv6Addr) {
        let Some(target) = target_of(&addr) else {
            return;
        };
        if self.dht.lookups.values().any(|l| l.addr == Some(addr))
            || self.dht.deferred.iter().any(|d| d.1 == addr)
            || self.dht.lookups.len() + self.dht.deferred.len() >= crate::budget::MAX_LOOKUPS
        {
            return;
        }
        self.start_lookup(now, target, Some(addr), None);
    }

    /// Forgets the route to `addr` (and the coordinates of its owner).
    pub fn forget(&mut self, addr: &Ipv6Addr) {
        if let Some(owner) = address::owner_id(addr)
            && let Some(r) = self.routes.remove(&owner)
        {
            self.coords_of.remove(&r.key);
        }
    }

    /// Starts a lookup of the nodes closest to `target`, for a name operation: when it ends,
    /// [`Router::name_lookup_done`] gets the nodes that answered.
    pub(crate) fn start_name_lookup(&mut self, now: Instant, target: u128, op: u64) {
        self.start_lookup_for(now, target, None, None, Some(op));
    }

    /// Starts a lookup; `first` is when an earlier, deferred attempt for it began.
    fn start_lookup(
        &mut self,
        now: Instant,
        target: u128,
        addr: Option<Ipv6Addr>,
        first: Option<Instant>,
    ) {
        self.start_lookup_for(now, target, addr, first, None);
    }

    fn start_lookup_for(
        &mut self,
        now: Instant,
        target: u128,
        addr: Option<Ipv6Addr>,
        first: Option<Instant>,
        name_op: Option<u64>,
    ) {
        self.stats.lookups += 1;
        let lid = self.dht.next_lookup;
        self.dht.next_lookup += 1;
        let mut short = Candidates::new(target);
        // Our own periodic lookup (no address, no name) starts far from us: from a few
        // contacts picked at random in our table and from our direct peers, not from the
        // contacts nearest us. Those may all belong to a stretch of the ring that formed
        // apart, sorted in itself but passing over the nodes between (a node's contacts near
        // it are the ones it met while the tree formed, and they answer with each other).
        // A walk from elsewhere ends where other nodes' lookups for us end, at the nodes just
        // below and above us; our request introduces us to them, and the ring merges there
        // (docs/SIMULATIONS.md, "Stretches of the ring that formed apart").
        let own = addr.is_none() && name_op.is_none();
        let mut seeds = if own {
            let n = self
                .dht
                .ids_records()
                .filter(|(id, _)| !self.ring.ring.contains(*id))
                .count() as u64;
            let picks: Vec<usize> = (0..SELF_LOOKUP_SEEDS)
                .filter(|_| n > 0)
                .map(|_| (self.next_random() % n.max(1)) as usize)
                .collect();
            self.dht
                .ids_records()
                .filter(|(id, _)| !self.ring.ring.contains(*id))
                .enumerate()
                .filter(|(i, _)| picks.contains(i))
                .map(|(_, (_, r))| Arc::clone(r))
                .collect()
        } else {
            let mut v = self.dht.closest(target, self.cfg.bucket_size * 2);
            v.extend(self.ring_around(target, 2));
            v
        };
        seeds.extend(self.peers.values().filter_map(|p| p.record.clone()));
        for r in seeds {
            let seq = r.seq;
            let e = short.get_or_insert((Arc::clone(&r), Ask::New));
            if seq > e.0.seq {
                e.0 = r;
            }
        }
        // We might be the answer ourselves.
        if let Some(a) = addr
            && address::key_owns(&self.key, &a)
        {
            let own = self.node_record.clone();
            self.finish_found(now, a, &own);
            return;
        }
        // Nobody to ask yet (no peer has announced itself): try again shortly rather than
        // report "not found" for an address that may well exist.
        if short.is_empty()
            && let Some(a) = addr
        {
            let first = first.unwrap_or(now);
            if now < first + DEFER_PATIENCE {
                self.dht.deferred.push((now + DEFER_STEP, a, first));
                return;
            }
        }
        self.dht.lookups.insert(
            lid,
            Box::new(Lookup {
                target,
                addr,
                short,
                owner: None,
                confirming: false,
                unconfirmed: None,
                name_op,
                first: first.unwrap_or(now),
                owner_elsewhere: false,
                own,
            }),
        );
        self.lookup_step(now, lid);
    }

    /// Sends requests until `lookup_parallelism` are in flight, or ends the lookup.
    fn lookup_step(&mut self, now: Instant, lid: u64) {
        // Ask among the 2k closest candidates: tables are sparse while a network is young, and
        // a slightly wider search finds the owner where a strict k would give up.
        loop {
            let Some(l) = self.dht.lookups.get(&lid) else {
                return;
            };
            // A name's storing nodes are its REPLICAS closest: the lookup ends once they are known.
            let k = match l.name_op {
                Some(_) => crate::names::REPLICAS,
                None if l.own => SELF_LOOKUP_K,
                None => self.cfg.bucket_size * 2,
            };
            let in_flight = l
                .short
                .values()
                .filter(|(_, a)| *a == Ask::InFlight)
                .count();
            // Only the k closest candidates that have not failed matter, and the nearest one
            // on each side of the target around the ring: once the ring is sorted, the
            // node just below the target names it (or its successor), so walking the ring
            // always ends the lookup (see `ring`).
            let live = || l.short.iter().filter(|(_, (_, a))| *a != Ask::Failed);
            let t = l.target;
            let pred = live()
                .filter_map(|e| Some((crate::ring::below(t, e.0 ^ t)?, e)))
                .min_by_key(|(d, _)| *d)
                .map(|(_, e)| e);
            let succ = live()
                .filter_map(|e| Some((crate::ring::above(t, e.0 ^ t)?, e)))
                .min_by_key(|(d, _)| *d)
                .map(|(_, e)| e);
            // A name's lookup ends as soon as the k closest have answered: stragglers farther
            // away cannot change which nodes store the name.
            // Or once a majority of them agree, which the others cannot overturn.
            let top: Vec<u128> = live().take(k).map(|(d, _)| d).collect();
            let names_done = l.name_op.is_some_and(|op| {
                (top.len() >= k && live().take(k).all(|(_, (_, a))| *a == Ask::Answered))
                    || self.name_agreed(op, &top)
            });
            let next = live()
                .take(k)
                .chain(pred)
                .chain(succ)
                .find(|(_, (_, a))| *a == Ask::New)
                .map(|(d, (r, _))| (d, r.clone()))
                .filter(|_| !names_done);
            match next {
                Some((d, rec)) if in_flight < self.cfg.lookup_parallelism => {
                    let target = l.target;
                    if l.name_op.is_some() {
                        self.stats.name_requests += 1;
                    }
                    let name_op = l.name_op;
                    let nonce = self.next_random();
                    // A name's resolution asks each node what it holds for the name, and for
                    // closer nodes, in one request.
                    let body = name_op
                        .and_then(|op| self.name_lookup_request(op, nonce))
                        .unwrap_or_else(|| RoutedBody::Find {
                            nonce,
                            target,
                            requester: self.node_record.clone(),
                        });
                    self.stats.lookup_requests += 1;
                    // To its coordinates only: a copy of its record may name positions around
                    // it that are gone, and the owner's answer is what refreshes them.
                    let sent =
                        self.send_control(now, &rec.key, &Place::from(rec.place.at.clone()), body);
                    let Some(l) = self.dht.lookups.get_mut(&lid) else {
                        return;
                    };
                    if let Some(e) = l.short.get_mut(d) {
                        e.1 = if sent { Ask::InFlight } else { Ask::Failed };
                    }
                    if sent {
                        let wait = self.rpc_wait(&rec);
                        self.dht.rpcs.insert(
                            nonce,
                            Box::new(Rpc {
                                lookup: lid,
                                dist: d,
                                sent: now,
                                wait,
                                asked: rec.key,
                                confirm: false,
                            }),
                        );
                    }
                }
                Some(_) => return, // enough in flight
                None if in_flight > 0 && !names_done => return,
                None if l.confirming => return, // the owner's own answer decides
                None => {
                    // Nothing left to ask: the freshest copy of the owner's record if any (it
                    // could not be confirmed), else not found.
                    let Some(l) = self.dht.lookups.remove(&lid) else {
                        return;
                    };
                    if let Some(op) = l.name_op {
                        let answered = l
                            .short
                            .into_iter()
                            .filter(|(_, (_, a))| *a == Ask::Answered)
                            .map(|(d, (r, _))| (d, r))
                            .collect();
                        self.name_lookup_done(now, op, answered);
                    } else if let Some(addr) = l.addr {
                        match l.owner {
                            Some(best) => self.finish_found(now, addr, &best),
                            // The owner exists but signed its place in another tree: ours or
                            // its own is about to change. Look again shortly, within the same
                            // patience as a lookup that had nobody to ask.
                            None if l.owner_elsewhere && now < l.first + DEFER_PATIENCE => {
                                self.dht.deferred.push((now + DEFER_STEP, addr, l.first));
                            }
                            None => self.events.push_back(Event::Resolved { addr, key: None }),
                        }
                    }
                    return;
                }
            }
        }
    }

    fn finish_found(&mut self, now: Instant, addr: Ipv6Addr, rec: &NodeRecord) {
        self.record_coords(now, rec, true);
        self.routes.insert(
            addr,
            Route {
                key: rec.key,
                coords: rec.place.at.clone(),
                updated: now,
            },
        );
        self.events.push_back(Event::Resolved {
            addr,
            key: Some(rec.key),
        });
    }

    pub(crate) fn on_find(
        &mut self,
        now: Instant,
        h: &RoutedHeader,
        nonce: u64,
        target: u128,
        mut requester: NodeRecord,
        msg: &[u8],
    ) {
        let reply_to: Place =
            if requester.key == h.src_key && self.verified.check_node(&mut requester) {
                let c = Place::clone(&requester.place);
                self.learn(now, requester, false, true);
                c
            } else {
                match h.src.to_place(msg) {
                    Ok(p) => p,
                    Err(_) => return,
                }
            };
        let nodes = self.answer(target, &h.src_key);
        let body = RoutedBody::Found { nonce, nodes };
        self.send_control(now, &h.src_key, &reply_to, body);
    }

    /// The lookup request `nonce` is in flight for: its name operation and the distance of
    /// the node asked to the target.
    pub(crate) fn name_rpc(&self, nonce: u64) -> Option<(u64, u128)> {
        let rpc = self.dht.rpcs.get(&nonce)?;
        let op = self.dht.lookups.get(&rpc.lookup)?.name_op?;
        Some((op, rpc.dist))
    }

    /// The node the lookup request `nonce` went to.
    pub(crate) fn dht_asked(&self, nonce: u64) -> Option<Key> {
        self.dht.rpcs.get(&nonce).map(|r| r.asked)
    }

    /// The closest nodes to `target` we can name in an answer, and ourselves.
    pub(crate) fn answer_nodes(&self, target: u128) -> Vec<NodeRecord> {
        let mut nodes: Vec<NodeRecord> = self
            .dht
            .closest(target, self.cfg.bucket_size.min(MAX_FOUND - 1))
            .iter()
            .map(|r| NodeRecord::clone(r))
            .collect();
        nodes.push(self.node_record.clone());
        nodes
    }

    /// A `FOUND` body's nonce and records, those a [`crate::SharedVerified`] holds not
    /// decoded (see [`crate::tree::VerifiedCache::received`]); `None` without a shared table,
    /// or if the body does not read: then it is decoded in full, as before.
    pub(crate) fn found_shared(&self, body: &[u8]) -> Option<(u64, Vec<Received>)> {
        if !self.verified.is_shared() {
            return None;
        }
        let (nonce, at) = crate::wire::found_records(body)?;
        Some((nonce, self.verified.received(body, at)?))
    }

    pub(crate) fn on_found(&mut self, now: Instant, from: &Key, nonce: u64, nodes: Vec<Received>) {
        // The answer must come from the node asked (by the header: not proof, but with
        // unpredictable nonces, only a node on the request's path could answer instead).
        if self.dht.rpcs.get(&nonce).is_none_or(|r| r.asked != *from) {
            return;
        }
        let Some(rpc) = self.dht.rpcs.remove(&nonce) else {
            return;
        };
        let lid = rpc.lookup;
        let Some(target) = self.dht.lookups.get(&lid).map(|l| (l.target, l.addr)) else {
            return;
        };
        if let Some(l) = self.dht.lookups.get_mut(&lid)
            && let Some(e) = l.short.get_mut(rpc.dist)
        {
            e.1 = Ask::Answered;
        }
        for rec in nodes {
            let r = rec.rec();
            if r.key == self.key {
                continue;
            }
            // A place in another tree leads nowhere here (see `learn`). If it is the owner's,
            // the tree is changing under us: remember it, to look again rather than give up.
            if r.tree != tree_id(&self.root) {
                self.stats.other_tree += 1;
                if let Some(addr) = target.1
                    && address::key_owns(&r.key, &addr)
                    && let Some(l) = self.dht.lookups.get_mut(&lid)
                {
                    l.owner_elsewhere = true;
                }
                continue;
            }
            // (A shared copy is the one `check_record` gives.)
            let rec = match rec {
                Received::Held(r) => r,
                Received::New(r) => match self.verified.check_record(r) {
                    Some(r) => r,
                    None => continue,
                },
            };
            if let Some(addr) = target.1
                && address::key_owns(&rec.key, &addr)
            {
                self.dht_learn_checked(now, Arc::clone(&rec));
                let Some(l) = self.dht.lookups.get_mut(&lid) else {
                    return;
                };
                let newer = l.owner.as_ref().is_none_or(|o| rec.seq > o.seq);
                if newer {
                    l.owner = Some(rec.clone());
                }
                if rpc.asked == rec.key {
                    // The owner answered for itself: as fresh as it gets.
                    if let Some(best) = self.dht.lookups.remove(&lid).and_then(|l| l.owner) {
                        self.finish_found(now, addr, &best);
                    }
                    return;
                }
                // Someone else's copy may predate a move of the owner: ask the owner itself,
                // at the freshest place known (again, if a fresher copy turns up meanwhile).
                // Other answers never end the lookup while the owner is being asked.
                let fresher = l.unconfirmed.is_none_or(|u| rec.seq > u);
                if fresher && (!l.confirming || newer) {
                    l.confirming = true;
                    self.confirm_owner(now, lid, rec);
                    return;
                }
                if l.confirming {
                    return;
                }
                continue;
            }
            if let Some(l) = self.dht.lookups.get_mut(&lid) {
                let e = l.short.get_or_insert((Arc::clone(&rec), Ask::New));
                // A fresher copy of a candidate not asked yet: ask it where it is now.
                if e.1 == Ask::New && rec.seq > e.0.seq {
                    e.0 = Arc::clone(&rec);
                }
            }
            self.dht_learn_checked(now, rec);
        }
        self.lookup_step(now, lid);
    }

    /// Asks the owner found in someone else's answer for its own, current record.
    fn confirm_owner(&mut self, now: Instant, lid: u64, rec: Arc<NodeRecord>) {
        let Some(target) = self.dht.lookups.get(&lid).map(|l| l.target) else {
            return;
        };
        let nonce = self.next_random();
        let body = RoutedBody::Find {
            nonce,
            target,
            requester: self.node_record.clone(),
        };
        self.stats.lookup_requests += 1;
        if self.send_control(now, &rec.key, &Place::from(rec.place.at.clone()), body) {
            let asked = rec.key;
            let wait = self.rpc_wait(&rec);
            self.dht.rpcs.insert(
                nonce,
                Box::new(Rpc {
                    lookup: lid,
                    dist: 0,
                    sent: now,
                    wait,
                    asked,
                    confirm: true,
                }),
            );
        } else if let Some(l) = self.dht.lookups.remove(&lid)
            && let (Some(addr), Some(best)) = (l.addr, l.owner)
        {
            self.finish_found(now, addr, &best);
        }
    }

    /// Request timeouts, deferred lookups and periodic self-lookups.
    pub(crate) fn dht_timers(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.dht.deferred.drain(..).partition(|d| now >= d.0);
        self.dht.deferred = later;
        for (_, addr, first) in due {
            let Some(target) = target_of(&addr) else {
                continue;
            };
            if now >= first + DEFER_PATIENCE {
                self.events.push_back(Event::Resolved { addr, key: None });
            } else {
                self.start_lookup(now, target, Some(addr), Some(first));
            }
        }
        let expired: Vec<(u64, Rpc)> = self
            .dht
            .rpcs
            .iter()
            .filter(|(_, r)| now >= r.sent + r.wait)
            .map(|(n, r)| (*n, **r))
            .collect();
        for (nonce, rpc) in expired {
            self.dht.rpcs.remove(&nonce);
            if rpc.confirm {
                // The owner did not answer at the place we had: that copy is stale. Go on
                // with the lookup, towards the owner's neighbourhood, for a fresher one.
                if let Some(l) = self.dht.lookups.get_mut(&rpc.lookup) {
                    l.confirming = false;
                    l.unconfirmed = l.owner.as_ref().map(|o| o.seq);
                }
                self.lookup_step(now, rpc.lookup);
                continue;
            }
            let failed_key = self.dht.lookups.get_mut(&rpc.lookup).and_then(|l| {
                let e = l.short.get_mut(rpc.dist)?;
                e.1 = Ask::Failed;
                Some(e.0.key)
            });
            if let Some(k) = failed_key {
                self.dht.failed(&k);
            }
            self.lookup_step(now, rpc.lookup);
        }
        if self.dht.next_refresh.is_some_and(|t| now >= t) {
            let own = self.dht.id;
            self.dht.refresh_every = (self.dht.refresh_every * 2).min(self.cfg.table_refresh);
            if self
                .dht
                .lookups
                .values()
                .any(|l| l.addr.is_none() && l.target == own)
            {
                // One is still running, with the record we had when it started: if we moved
                // since, run another once it is done, so the move reaches our neighbourhood.
                self.dht.next_refresh = Some(if self.dht.moved {
                    now + Duration::from_millis(500)
                } else {
                    now + self.dht.refresh_every
                });
            } else {
                self.dht.moved = false;
                self.dht.next_refresh = Some(now + self.dht.refresh_every);
                self.start_lookup(now, own, None, None);
            }
        }
    }
}

/// A lookup request may take this long per tree hop between us and the node asked, both ways
/// (on top of nothing: the configured timeout is the floor). On a deep tree (a Barabási–Albert
/// graph with m = 1 has paths of 30 hops and more) a request and its answer cross 60 links.
const PER_HOP_WAIT: Duration = Duration::from_millis(100);

impl Router {
    /// How long a request to `rec` may take: the configured timeout, or more if the node is
    /// far in the tree.
    fn rpc_wait(&self, rec: &NodeRecord) -> Duration {
        let hops = crate::coords::dist(&self.coords.0, &rec.place.at.0);
        self.cfg
            .lookup_rpc_timeout
            .max(PER_HOP_WAIT * hops.min(1000) as u32)
    }

    /// The records an answer to a request for `target` carries: the `bucket_size` closest by
    /// XOR among everything we know (lookup table, ring, direct peers, so that a hub answers
    /// for its leaves), the two nearest on each side of the target around the ring, and
    /// ourselves; never the asker; at most [`MAX_FOUND`].
    fn answer(&self, target: u128, asker: &Key) -> Vec<NodeRecord> {
        // By XOR: the lookup table and the direct peers (ring entries are left out here:
        // right after the whole tree moved, those nearest the target are the ones most
        // likely to be stale, and each costs the asker a timeout; the lookup reaches them
        // through the two below).
        let mut xor: Vec<(u128, &NodeRecord)> = self
            .dht
            .ids_records()
            .chain(self.peers.values().filter_map(|p| p.id_record()))
            .filter(|(_, r)| r.key != *asker)
            .map(|(id, r)| (id ^ target, &**r))
            .collect();
        xor.sort_by_key(|(d, r)| (*d, std::cmp::Reverse(r.seq)));
        xor.dedup_by_key(|(d, _)| *d);
        let mut nodes: Vec<NodeRecord> = xor
            .iter()
            .take(self.cfg.bucket_size.min(MAX_FOUND - 5))
            .map(|(_, r)| (*r).clone())
            .collect();
        // (Never the asker's own record: in its lookup of itself, that would take the place
        // of its successor, and leave the nodes above a target less known than those below.)
        let mut all: Vec<(u128, &NodeRecord)> = self
            .known_ids_records()
            .map(|(id, r)| (id, &**r))
            .filter(|(_, r)| r.key != *asker)
            .collect();
        all.sort_by_key(|(id, r)| (*id, std::cmp::Reverse(r.seq)));
        all.dedup_by_key(|(id, _)| *id);
        for r in crate::ring::around(target, 2, all) {
            if nodes.len() < MAX_FOUND - 1 && !nodes.iter().any(|n| n.key == r.key) {
                nodes.push(r.clone());
            }
        }
        nodes.push(self.node_record.clone());
        nodes
    }
}
