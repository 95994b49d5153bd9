//! Names: claiming a human name for our key, storing others' names, resolving a name to a key.
//!
//! **Where a name lives.** A name's records are stored at the [`REPLICAS`] nodes whose ids are
//! closest (XOR) to the name's target ([`name_target`]), found by the same iterative lookup
//! that finds addresses ([`crate::dht`]). Claiming publishes (`NAME_PUT`) to them; resolving
//! asks them (`NAME_GET`) and decides from what they answer.
//!
//! **Who owns a name** (the rule each storing node applies is in [`crate::name_store`]):
//! 1. a name **pinned** by this node's policy resolves to the pinned key, without asking;
//! 2. else a record **delegated** by an authority this node trusts, if a storing node has one;
//! 3. else the **first claim**: the owner that most of the storing nodes that answered hold
//!    (a tie goes to the one held by the storing node closest to the target).
//!
//! So the first valid claim the storing nodes saw holds a name until it expires unrenewed. That
//! is a property with limits: two parts of a partitioned network can each see a different first
//! claim; when they join, each storing node keeps what it holds, the owners' republications
//! reach the new closest nodes, and resolvers take the majority, which converges once the
//! losing claim expires unrenewed (its owner's republications are refused as `Taken` wherever
//! the other claim is held). Pins and delegations are how a node makes sure a squatter gains
//! nothing where it matters.
//!
//! **Time.** Records expire in unix seconds, so every node must agree on the date: the caller
//! gives the wall clock once ([`Router::set_wall_clock`]) and the router derives it from `now`.
//!
//! **Our claims** are signed with sequence numbers that are milliseconds of wall-clock time
//! (a restart never goes back), expire `name_ttl` after signing, and are re-published every
//! third of that (sooner while the network is young), so storing nodes that joined since get
//! them. A **release** is an expired successor of our last record, re-published on the same
//! schedule until that record would have expired: a storing node that missed it once (the
//! network was young after a restart, a path was down) still frees the name early, and a
//! claim publication still in flight cannot bring it back.

use crate::codec::Key;
use crate::coords::Place;
use crate::dht::id_of;
use crate::name_record::{Delegation, NameError, NameRecord, Service, name_target, validate_name};
use crate::name_store::{NameStore, Stored};
use crate::record::NodeRecord;
use crate::router::{Event, Router};
use crate::wire::{RoutedBody, RoutedHeader};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Storing nodes per name.
pub const REPLICAS: usize = 4;
/// Names this node may claim.
pub const MAX_CLAIMS: usize = 16;
/// Name operations (claims being published, resolutions) running at once.
pub const MAX_NAME_OPS: usize = 128;
/// Answers a resolution keeps (its lookup asks about 2 × `bucket_size` nodes).
const MAX_VALS: usize = 64;
/// Resolutions remembered.
const MAX_CACHE: usize = 1024;
/// "No such name" is remembered this long (a resolution: `name_cache`).
const NEGATIVE_FOR: Duration = Duration::from_secs(2);
/// A claim is re-published this soon at first, doubling up to a third of its lifetime.
const FIRST_REPUBLISH: Duration = Duration::from_secs(5);
/// A claim that fewer than [`REPLICAS`] storing nodes took (the network is young, or small) is
/// re-published this soon, up to [`QUICK_RETRIES`] times, before the usual schedule.
const QUICK_REPUBLISH: Duration = Duration::from_secs(1);
/// Quick re-publications of an under-replicated claim (a network of fewer than `REPLICAS`
/// nodes stays under-replicated: then the usual schedule).
const QUICK_RETRIES: u8 = 5;
/// Expired records are dropped this often.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// Where one of our claims stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimState {
    /// Being published.
    Pending,
    /// Stored by this many storing nodes.
    Held {
        /// Storing nodes that took it.
        storers: usize,
    },
    /// Another key holds it.
    Taken {
        /// The holder.
        by: Key,
    },
    /// No storing node answered (the network may be young): retried.
    NoStorers,
}

/// Why a name resolved to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// Pinned by this node's policy.
    Pinned,
    /// Delegated by an authority this node trusts.
    Delegated {
        /// The authority.
        authority: Key,
    },
    /// The first claim the storing nodes hold.
    Claim,
}

/// A name and the key it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The name.
    pub name: String,
    /// Its owner.
    pub key: Key,
    /// The owner's record (none for a pinned name).
    pub record: Option<NameRecord>,
    /// Why.
    pub source: NameSource,
}

#[derive(Debug)]
struct Claim {
    services: Vec<Service>,
    delegation: Option<Delegation>,
    state: ClaimState,
    seq: u64,
    next_publish: Instant,
    backoff: Duration,
    /// When the last record we published expires (unix seconds).
    published_until: u64,
    /// Quick re-publications left while under-replicated.
    quick: u8,
}

/// A name we released: its expired successor, re-published until `until` (unix seconds), when
/// the last record we published for it expires anyway.
#[derive(Debug)]
struct Release {
    record: NameRecord,
    until: u64,
    next_publish: Instant,
    backoff: Duration,
}

#[derive(Debug)]
enum OpKind {
    /// Publishing a record; `ours`: one of our claims (its outcome updates the claim).
    Put {
        record: Box<NameRecord>,
        ours: bool,
    },
    Get {
        name: String,
    },
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    /// Storing nodes asked, by distance to the target; answers as they come.
    asked: Vec<(u128, Key)>,
    acks: Vec<(u128, Stored)>,
    vals: Vec<(u128, Option<NameRecord>, Vec<NameRecord>)>,
    /// When the last request went out (answers are awaited one lookup timeout).
    sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct NameRpc {
    op: u64,
    asked: Key,
    dist: u128,
}

/// The names state of a router.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// `now` and the unix seconds it was.
    wall: Option<(Instant, u64)>,
    pins: BTreeMap<String, Key>,
    authorities: BTreeSet<Key>,
    claims: BTreeMap<String, Claim>,
    releases: BTreeMap<String, Release>,
    store: NameStore,
    ops: BTreeMap<u64, Op>,
    rpcs: BTreeMap<u64, NameRpc>,
    cache: BTreeMap<String, (Instant, Option<Resolution>)>,
    next_op: u64,
    next_purge: Option<Instant>,
}

/// No names state (what a router that never used names reads).
static NO_NAMES: Names = Names {
    wall: None,
    pins: BTreeMap::new(),
    authorities: BTreeSet::new(),
    claims: BTreeMap::new(),
    releases: BTreeMap::new(),
    store: NameStore::new(),
    ops: BTreeMap::new(),
    rpcs: BTreeMap::new(),
    cache: BTreeMap::new(),
    next_op: 0,
    next_purge: None,
};

/// The names state, allocated when first changed: it is 288 bytes, and most routers (all of
/// a simulation's but its names scenarios) never use names. Reads of a router that has none
/// see [`NO_NAMES`], which is what a fresh `Names` holds.
#[derive(Debug, Default)]
pub(crate) struct LazyNames(Option<Box<Names>>);

impl std::ops::Deref for LazyNames {
    type Target = Names;

    fn deref(&self) -> &Names {
        self.0.as_deref().unwrap_or(&NO_NAMES)
    }
}

impl std::ops::DerefMut for LazyNames {
    fn deref_mut(&mut self) -> &mut Names {
        self.0.get_or_insert_with(Default::default)
    }
}

impl Names {
    /// The next instant names have work.
    pub(crate) fn next_deadline(&self, rpc_timeout: Duration) -> Option<Instant> {
        let claims = self.claims.values().map(|c| c.next_publish);
        let releases = self.releases.values().map(|r| r.next_publish);
        let ops = self
            .ops
            .values()
            .filter_map(|o| o.sent.map(|s| s + rpc_timeout));
        claims
            .chain(releases)
            .chain(ops)
            .chain(self.next_purge)
            .min()
    }
}

impl Router {
    fn unix_now(&self, now: Instant) -> Option<u64> {
        let (at, unix) = self.names.wall?;
        Some(unix + now.saturating_duration_since(at).as_secs())
    }

    fn unix_ms(&self, now: Instant) -> Option<u64> {
        let (at, unix) = self.names.wall?;
        Some(unix * 1000 + now.saturating_duration_since(at).as_millis() as u64)
    }

    /// Tells the router the wall clock: `now` is `unix_secs` seconds after 1970. Needed before
    /// names can be claimed or stored (records expire by the date).
    pub fn set_wall_clock(&mut self, now: Instant, unix_secs: u64) {
        self.names.wall = Some((now, unix_secs));
        self.names.next_purge.get_or_insert(now + PURGE_EVERY);
    }

    /// This node's policy: pinned names, and the authorities whose delegations it trusts.
    pub fn set_name_policy(&mut self, pins: BTreeMap<String, Key>, authorities: BTreeSet<Key>) {
        self.names.pins = pins;
        self.names.authorities = authorities;
        self.names.cache.clear();
    }

    /// Claims `name` for our key. The outcome comes as [`Event::NameClaimed`] (again whenever
    /// it changes); the claim is re-published until released.
    pub fn claim_name(
        &mut self,
        now: Instant,
        name: &str,
        services: Vec<Service>,
        delegation: Option<Delegation>,
    ) -> Result<(), NameError> {
        let name = validate_name(name)?;
        let seq = self.unix_ms(now).ok_or(NameError::NoClock)?;
        if !self.names.claims.contains_key(&name) && self.names.claims.len() >= MAX_CLAIMS {
            return Err(NameError::TooManyClaims);
        }
        // Check what we would sign before keeping it.
        NameRecord::new(
            &self.sk,
            &name,
            seq,
            0,
            services.clone(),
            delegation.clone(),
        )?;
        let seq = self
            .names
            .claims
            .get(&name)
            .map_or(seq, |c| seq.max(c.seq + 1));
        // Claiming a name we released: the claim must outrank the release.
        let seq = self
            .names
            .releases
            .remove(&name)
            .map_or(seq, |r| seq.max(r.record.seq + 1));
        let published_until = self
            .names
            .claims
            .get(&name)
            .map_or(0, |c| c.published_until);
        self.names.claims.insert(
            name.clone(),
            Claim {
                services,
                delegation,
                state: ClaimState::Pending,
                seq,
                next_publish: now,
                backoff: FIRST_REPUBLISH,
                published_until,
                quick: QUICK_RETRIES,
            },
        );
        self.publish_claim(now, &name);
        Ok(())
    }

    /// Stops claiming `name` and publishes an expired successor, so that the storing nodes
    /// free it at once; it is re-published until our last record would have expired, so that
    /// those that miss it the first time free it early too. False if we did not claim it.
    pub fn release_name(&mut self, now: Instant, name: &str) -> bool {
        let Ok(name) = validate_name(name) else {
            return false;
        };
        let Some(c) = self.names.claims.remove(&name) else {
            return false;
        };
        self.names.cache.remove(&name);
        // A publication of the claim still under way must not bring it back.
        self.names.ops.retain(
            |_, o| !matches!(&o.kind, OpKind::Put { record, ours: true } if record.name == name),
        );
        let (Some(ms), Some(unix)) = (self.unix_ms(now), self.unix_now(now)) else {
            return true;
        };
        let Ok(record) = NameRecord::new(
            &self.sk,
            &name,
            ms.max(c.seq + 1),
            unix,
            c.services,
            c.delegation,
        ) else {
            return true;
        };
        if c.published_until <= unix {
            return true; // nothing we published still holds it
        }
        if self.names.releases.len() >= MAX_CLAIMS
            && let Some(first) = self
                .names
                .releases
                .iter()
                .min_by_key(|(_, r)| r.until)
                .map(|(n, _)| n.clone())
        {
            self.names.releases.remove(&first);
        }
        self.names.releases.insert(
            name.clone(),
            Release {
                record,
                until: c.published_until,
                next_publish: now,
                backoff: FIRST_REPUBLISH,
            },
        );
        self.publish_release(now, &name);
        true
    }

    fn publish_release(&mut self, now: Instant, name: &str) {
        let ttl = self.cfg.name_ttl;
        let unix = self.unix_now(now).unwrap_or(u64::MAX);
        let Some(r) = self.names.releases.get_mut(name) else {
            return;
        };
        if unix >= r.until {
            self.names.releases.remove(name);
            return;
        }
        r.next_publish = now + r.backoff.min(ttl / 3);
        r.backoff = (r.backoff * 2).min(ttl / 3);
        let record = Box::new(r.record.clone());
        self.start_name_op(
            now,
            OpKind::Put {
                record,
                ours: false,
            },
        );
    }

    /// Publishes a record signed elsewhere, as it is: the storing nodes check it.
    pub fn publish_name_record(&mut self, now: Instant, record: NameRecord) {
        self.start_name_op(
            now,
            OpKind::Put {
                record: Box::new(record),
                ours: false,
            },
        );
    }

    /// The key `name` resolves to, at once if pinned or resolved lately; else `None`, and a
    /// lookup runs whose answer comes as [`Event::NameResolved`].
    pub fn resolve_name(
        &mut self,
        now: Instant,
        name: &str,
    ) -> Result<Option<Resolution>, NameError> {
        let name = validate_name(name)?;
        if let Some(key) = self.names.pins.get(&name) {
            return Ok(Some(Resolution {
                name,
                key: *key,
                record: None,
                source: NameSource::Pinned,
            }));
        }
        if let Some((until, res)) = self.names.cache.get(&name) {
            if now < *until {
                if let Some(r) = res {
                    return Ok(Some(r.clone()));
                }
            } else {
                self.names.cache.remove(&name);
            }
        }
        if self
            .names
            .ops
            .values()
            .any(|o| matches!(&o.kind, OpKind::Get { name: n } if *n == name))
        {
            return Ok(None);
        }
        self.stats.name_lookups += 1;
        self.start_name_op(now, OpKind::Get { name });
        Ok(None)
    }

    /// Our claims and where they stand.
    pub fn claims(&self) -> impl Iterator<Item = (&str, &ClaimState)> {
        self.names
            .claims
            .iter()
            .map(|(n, c)| (n.as_str(), &c.state))
    }

    /// Records this node stores for others.
    pub fn stored_names(&self) -> usize {
        self.names.store.len()
    }

    fn publish_claim(&mut self, now: Instant, name: &str) {
        let (Some(ms), Some(unix)) = (self.unix_ms(now), self.unix_now(now)) else {
            return;
        };
        let ttl = self.cfg.name_ttl;
        let Some(c) = self.names.claims.get_mut(name) else {
            return;
        };
        c.seq = ms.max(c.seq + 1);
        c.next_publish = now + c.backoff.min(ttl / 3);
        c.backoff = (c.backoff * 2).min(ttl / 3);
        let expires = unix + ttl.as_secs().max(1);
        let Ok(rec) = NameRecord::new(
            &self.sk,
            name,
            c.seq,
            expires,
            c.services.clone(),
            c.delegation.clone(),
        ) else {
            return;
        };
        c.published_until = c.published_until.max(expires);
        self.start_name_op(
            now,
            OpKind::Put {
                record: Box::new(rec),
                ours: true,
            },
        );
    }

    fn start_name_op(&mut self, now: Instant, kind: OpKind) {
        let name = match &kind {
            OpKind::Put { record, .. } => record.name.clone(),
            OpKind::Get { name } => name.clone(),
        };
        if self.names.ops.len() >= MAX_NAME_OPS {
            self.end_name_op(now, Op::new(kind));
            return;
        }
        let op = self.names.next_op;
        self.names.next_op += 1;
        self.names.ops.insert(op, Op::new(kind));
        self.start_name_lookup(now, name_target(&name), op);
    }

    /// The request a name resolution's lookup sends (`NAME_GET`, which doubles as `FIND`);
    /// `None` for other operations (a plain `FIND`).
    pub(crate) fn name_lookup_request(&self, op: u64, nonce: u64) -> Option<RoutedBody> {
        match &self.names.ops.get(&op)?.kind {
            OpKind::Get { name } => Some(RoutedBody::NameGet {
                nonce,
                name: name.clone(),
                authorities: self.asked_authorities(),
            }),
            OpKind::Put { .. } => None,
        }
    }

    /// Whether a resolution can end before its closest nodes have all answered: more than
    /// half of `REPLICAS` among `top` (its closest known nodes, by distance) answered with the
    /// same first claim, so the rest cannot overturn it. Not with trusted
    /// authorities: a delegated record held by the one that has not answered would win.
    pub(crate) fn name_agreed(&self, op: u64, top: &[u128]) -> bool {
        let Some(o) = self.names.ops.get(&op) else {
            return false;
        };
        if !self.names.authorities.is_empty() || !matches!(o.kind, OpKind::Get { .. }) {
            return false;
        }
        // Only on a claim: nodes that hold nothing may just not be the storing nodes yet
        // (closer ones not found), so "no such name" waits for the lookup's end.
        let mut votes: BTreeMap<Key, usize> = BTreeMap::new();
        for (d, claim, _) in &o.vals {
            if let Some(c) = claim
                && top.contains(d)
            {
                *votes.entry(c.key).or_default() += 1;
            }
        }
        votes.values().any(|n| *n > REPLICAS / 2)
    }

    fn asked_authorities(&self) -> Vec<Key> {
        self.names
            .authorities
            .iter()
            .take(crate::name_store::MAX_DELEGATED_PER_GET)
            .copied()
            .collect()
    }

    /// The lookup towards a name's target ended: `answered` holds the nodes that answered, by
    /// distance. A resolution decides from what the closest of them (and we, if we are among
    /// them) hold; a publication sends its record to them.
    pub(crate) fn name_lookup_done(
        &mut self,
        now: Instant,
        op: u64,
        answered: Vec<(u128, Arc<NodeRecord>)>,
    ) {
        let Some(o) = self.names.ops.get(&op) else {
            return;
        };
        if let OpKind::Get { name } = &o.kind {
            let target = name_target(name);
            let own = id_of(&self.key) ^ target;
            let mut closest: Vec<u128> = answered
                .iter()
                .filter(|(_, r)| r.key != self.key)
                .map(|(d, _)| *d)
                .chain([own])
                .collect();
            closest.sort_unstable();
            closest.truncate(REPLICAS);
            let held = match self.unix_now(now) {
                Some(unix) if closest.contains(&own) => {
                    Some(self.names.store.get(name, &self.asked_authorities(), unix))
                }
                _ => None,
            };
            let Some(mut o) = self.names.ops.remove(&op) else {
                return;
            };
            o.vals.retain(|(d, _, _)| closest.contains(d));
            if let Some((claim, delegated)) = held {
                o.vals.push((own, claim, delegated));
            }
            self.end_name_op(now, o);
            return;
        }
        let target = match &o.kind {
            OpKind::Put { record, .. } => name_target(&record.name),
            OpKind::Get { name } => name_target(name),
        };
        let mut storers: Vec<(u128, Key, Option<Place>)> = answered
            .into_iter()
            .filter(|(_, r)| r.key != self.key)
            .map(|(d, r)| (d, r.key, Some(Place::from(r.place.at.clone()))))
            .collect();
        storers.push((id_of(&self.key) ^ target, self.key, None));
        storers.sort_by_key(|s| s.0);
        storers.dedup_by_key(|s| s.1);
        storers.truncate(REPLICAS);
        let body = |nonce: u64, o: &Op, authorities: &BTreeSet<Key>| match &o.kind {
            OpKind::Put { record, .. } => RoutedBody::NamePut {
                nonce,
                record: (**record).clone(),
            },
            OpKind::Get { name } => RoutedBody::NameGet {
                nonce,
                name: name.clone(),
                authorities: authorities
                    .iter()
                    .take(crate::name_store::MAX_DELEGATED_PER_GET)
                    .copied()
                    .collect(),
            },
        };
        // Every request is recorded before any goes out: our own copy is answered at once,
        // and the operation must not end on that answer before the others are asked.
        let mut out = Vec::with_capacity(storers.len());
        for (dist, key, place) in storers {
            let nonce = self.next_random();
            let names = &mut *self.names;
            let Some(o) = names.ops.get_mut(&op) else {
                return;
            };
            o.asked.push((dist, key));
            o.sent = Some(now);
            out.push((key, place, body(nonce, o, &names.authorities)));
            self.names.rpcs.insert(
                nonce,
                NameRpc {
                    op,
                    asked: key,
                    dist,
                },
            );
        }
        for (key, place, msg) in out {
            let place = place.unwrap_or_else(|| Place::clone(&self.node_record.place));
            self.stats.name_requests += 1;
            self.send_control(now, &key, &place, msg);
        }
        self.maybe_end_name_op(now, op);
    }

    /// A storing node's part: a record offered.
    pub(crate) fn on_name_put(
        &mut self,
        now: Instant,
        h: &RoutedHeader,
        nonce: u64,
        record: NameRecord,
        msg: &[u8],
    ) {
        let outcome = match self.unix_now(now) {
            Some(unix) => self.names.store.put(record, unix, |r| r.verify()),
            None => Stored::Full,
        };
        let counter = match outcome {
            Stored::Stored | Stored::Released => &mut self.stats.names_stored,
            Stored::Same => &mut self.stats.names_renewed,
            Stored::Taken(_) => &mut self.stats.names_taken,
            Stored::Full => &mut self.stats.names_full,
            Stored::BadSig => &mut self.stats.names_bad_sig,
            Stored::OldSeq => &mut self.stats.names_old_seq,
            Stored::Expired => &mut self.stats.names_expired,
        };
        *counter += 1;
        self.reply(now, h, msg, RoutedBody::NameAck { nonce, outcome });
    }

    /// A storing node's part: what it holds for a name.
    pub(crate) fn on_name_get(
        &mut self,
        now: Instant,
        h: &RoutedHeader,
        nonce: u64,
        name: String,
        authorities: Vec<Key>,
        msg: &[u8],
    ) {
        let (claim, delegated) = match self.unix_now(now) {
            Some(unix) => self.names.store.get(&name, &authorities, unix),
            None => (None, Vec::new()),
        };
        let body = RoutedBody::NameVal {
            nonce,
            claim,
            delegated,
            nodes: self.answer_nodes(name_target(&name)),
        };
        self.reply(now, h, msg, body);
    }

    fn reply(&mut self, now: Instant, h: &RoutedHeader, msg: &[u8], body: RoutedBody) {
        let Ok(src) = h.src.to_place(msg) else {
            return;
        };
        self.send_control(now, &h.src_key, &src, body);
    }

    /// An answer from a storing node we asked.
    pub(crate) fn on_name_answer(&mut self, now: Instant, from: &Key, body: RoutedBody) {
        let nonce = match &body {
            RoutedBody::NameAck { nonce, .. } | RoutedBody::NameVal { nonce, .. } => *nonce,
            _ => return,
        };
        // An answer to a resolution's lookup request: what the node holds, and closer nodes.
        if let RoutedBody::NameVal {
            claim,
            delegated,
            nodes,
            ..
        } = body
        {
            if self.dht_asked(nonce) == Some(*from)
                && let Some((op, dist)) = self.name_rpc(nonce)
                && let Some(o) = self.names.ops.get_mut(&op)
                && matches!(o.kind, OpKind::Get { .. })
                && o.vals.len() < MAX_VALS
            {
                o.vals.push((dist, claim, delegated));
                let nodes = nodes.into_iter().map(crate::tree::Received::New).collect();
                self.on_found(now, from, nonce, nodes);
            }
            return;
        }
        if self.names.rpcs.get(&nonce).is_none_or(|r| r.asked != *from) {
            return;
        }
        let Some(rpc) = self.names.rpcs.remove(&nonce) else {
            return;
        };
        let Some(o) = self.names.ops.get_mut(&rpc.op) else {
            return;
        };
        match (body, &o.kind) {
            (RoutedBody::NameAck { outcome, .. }, OpKind::Put { .. }) => {
                o.acks.push((rpc.dist, outcome))
            }
            (
                RoutedBody::NameVal {
                    claim, delegated, ..
                },
                OpKind::Get { .. },
            ) => o.vals.push((rpc.dist, claim, delegated)),
            _ => return,
        }
        self.maybe_end_name_op(now, rpc.op);
    }

    fn maybe_end_name_op(&mut self, now: Instant, op: u64) {
        let done = self
            .names
            .ops
            .get(&op)
            .is_some_and(|o| o.acks.len() + o.vals.len() >= o.asked.len());
        if done && let Some(o) = self.names.ops.remove(&op) {
            self.end_name_op(now, o);
        }
    }

    fn end_name_op(&mut self, now: Instant, o: Op) {
        let names = &mut *self.names;
        names.rpcs.retain(|_, r| names.ops.contains_key(&r.op));
        match o.kind {
            OpKind::Put { record, ours: true } => {
                let held = o
                    .acks
                    .iter()
                    .filter(|(_, s)| matches!(s, Stored::Stored | Stored::Same))
                    .count();
                let mut takers: BTreeMap<Key, (usize, u128)> = BTreeMap::new();
                for (d, s) in &o.acks {
                    if let Stored::Taken(k) = s {
                        let e = takers.entry(*k).or_insert((0, *d));
                        e.0 += 1;
                        e.1 = e.1.min(*d);
                    }
                }
                let taken = takers
                    .into_iter()
                    .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)));
                let state = match taken {
                    Some((by, (n, _))) if n > held => ClaimState::Taken { by },
                    _ if held > 0 => ClaimState::Held { storers: held },
                    _ => ClaimState::NoStorers,
                };
                let Some(c) = self.names.claims.get_mut(&record.name) else {
                    return;
                };
                if record.seq != c.seq {
                    return; // a newer publication is under way
                }
                match state {
                    ClaimState::NoStorers => {
                        c.next_publish = c.next_publish.min(now + FIRST_REPUBLISH);
                    }
                    ClaimState::Held { storers } if storers < REPLICAS && c.quick > 0 => {
                        c.quick -= 1;
                        c.next_publish = c.next_publish.min(now + QUICK_REPUBLISH);
                    }
                    _ => {}
                }
                if c.state != state {
                    c.state = state.clone();
                    self.events.push_back(Event::NameClaimed {
                        name: record.name,
                        state,
                    });
                }
            }
            OpKind::Put { ours: false, .. } => {}
            OpKind::Get { name } => {
                let result = self.decide(now, &name, o.vals);
                let until = match &result {
                    Some(r) => {
                        let cache_for = self.cfg.name_cache;
                        let left = r.record.as_ref().map_or(cache_for, |rec| {
                            let unix = self.unix_now(now).unwrap_or(0);
                            Duration::from_secs(rec.expires.saturating_sub(unix))
                        });
                        now + left.min(cache_for)
                    }
                    None => now + NEGATIVE_FOR,
                };
                if self.names.cache.len() >= MAX_CACHE {
                    self.names.cache.retain(|_, (t, _)| now < *t);
                    if self.names.cache.len() >= MAX_CACHE {
                        self.names.cache.pop_first();
                    }
                }
                self.names
                    .cache
                    .insert(name.clone(), (until, result.clone()));
                self.events.push_back(Event::NameResolved {
                    name,
                    result: result.map(Box::new),
                });
            }
        }
    }

    /// Decides a name from the storing nodes' answers (see the module doc for the order).
    fn decide(
        &mut self,
        now: Instant,
        name: &str,
        vals: Vec<(u128, Option<NameRecord>, Vec<NameRecord>)>,
    ) -> Option<Resolution> {
        let unix = self.unix_now(now)?;
        let valid = |r: &NameRecord| r.name == name && r.expires > unix && r.verify();
        let mut delegated: Option<(u64, NameRecord)> = None;
        let mut claims: BTreeMap<Key, (usize, u128, NameRecord)> = BTreeMap::new();
        for (d, claim, dels) in vals {
            for r in dels {
                let Some(a) = r.delegated_by(unix) else {
                    continue;
                };
                let exp = r.delegation.as_ref().map_or(0, |x| x.expires);
                if self.names.authorities.contains(&a)
                    && delegated.as_ref().is_none_or(|(e, _)| exp > *e)
                    && valid(&r)
                {
                    delegated = Some((exp, r));
                }
            }
            if let Some(r) = claim
                && valid(&r)
            {
                let e = claims.entry(r.key).or_insert((0, d, r.clone()));
                e.0 += 1;
                e.1 = e.1.min(d);
                if r.seq > e.2.seq {
                    e.2 = r;
                }
            }
        }
        if let Some((_, r)) = delegated {
            let authority = r.delegated_by(unix).unwrap_or_default();
            return Some(Resolution {
                name: name.to_string(),
                key: r.key,
                record: Some(r),
                source: NameSource::Delegated { authority },
            });
        }
        let (_, (_, _, r)) = claims
            .into_iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))?;
        Some(Resolution {
            name: name.to_string(),
            key: r.key,
            record: Some(r),
            source: NameSource::Claim,
        })
    }

    /// Republications, answers that never came, and the store's expiry.
    pub(crate) fn name_timers(&mut self, now: Instant) {
        for n in due(&self.names.claims, now, |c| c.next_publish) {
            self.publish_claim(now, &n);
        }
        for n in due(&self.names.releases, now, |r| r.next_publish) {
            self.publish_release(now, &n);
        }
        let timeout = self.cfg.lookup_rpc_timeout;
        let late: Vec<u64> = self
            .names
            .ops
            .iter()
            .filter(|(_, o)| o.sent.is_some_and(|s| now >= s + timeout))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(o) = self.names.ops.remove(&id) {
                self.end_name_op(now, o);
            }
        }
        if self.names.next_purge.is_some_and(|t| now >= t) {
            self.names.next_purge = Some(now + PURGE_EVERY);
            if let Some(unix) = self.unix_now(now) {
                self.names.store.purge(unix);
            }
        }
    }
}

/// The names whose next publication is due.
fn due<T>(m: &BTreeMap<String, T>, now: Instant, next: impl Fn(&T) -> Instant) -> Vec<String> {
    m.iter()
        .filter(|(_, v)| now >= next(v))
        .map(|(n, _)| n.clone())
        .collect()
}

impl Op {
    fn new(kind: OpKind) -> Self {
        Op {
            kind,
            asked: Vec::new(),
            acks: Vec::new(),
            vals: Vec::new(),
            sent: None,
        }
    }
}
