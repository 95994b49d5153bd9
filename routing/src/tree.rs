//! The spanning tree: root election, parent choice, signed positions, coordinates.
//!
//! * **Root.** The lowest key among the roots our peers offer and our own, counting only keys
//!   allowed to be root ([`RouterConfig::eligible_roots`]) and roots that are alive: the root
//!   re-signs its record every `root_refresh`, and a root whose record has not advanced for
//!   `root_timeout` is presumed gone (its last sequence number is remembered, so its old
//!   records are never believed again).
//! * **Parent.** Among peers in the best root's tree whose chain does not contain us, the one
//!   with the lowest path cost (its announced cost to the root plus our link RTT to it). We
//!   switch only for a cost lower by `switch_fraction` and `switch_min`, so that RTT jitter does
//!   not make the tree flap. A new parent must sign us in ([`crate::record`]) before we use it.
//! * **Chains.** A peer's records are verified (both signatures, sequence numbers never going
//!   back, no loops, no ineligible root) before anything is derived from them. Its coordinates
//!   are the ports along its chain.
//!
//! [`RouterConfig::eligible_roots`]: crate::RouterConfig::eligible_roots

use crate::codec::Key;
use crate::coords::{Coords, MAX_DEPTH};
use crate::record::{NodeRecord, TreeRecord, sign_as_parent};
use crate::router::{Drop, Event, Handled, PeerId, Router, SigRequest};
use crate::wire::{MAX_ANNOUNCE, PeerMsg};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A record of a `RING` or a `FOUND`: the shared copy of one known valid (see
/// [`VerifiedCache::received`]), or one to check.
pub(crate) enum Received {
    Held(Arc<NodeRecord>),
    New(NodeRecord),
}

impl Received {
    pub(crate) fn rec(&self) -> &NodeRecord {
        match self {
            Received::Held(r) => r,
            Received::New(r) => r,
        }
    }
}

/// Records whose signatures were already checked, by a digest of the *whole* record (keying
/// by the signature alone would let a known signature vouch for altered fields).
#[derive(Default)]
pub struct VerifiedCache {
    set: BTreeSet<[u8; 32]>,
    shared: Option<SharedVerified>,
}

/// Records known to carry valid signatures, shared by many routers in one process (the
/// simulator's thousands of nodes): each distinct record is verified once for all of them, and
/// each distinct tree record is held once for all of them (every node of a tree holds its
/// root's record and the records near the root, from each of its peers). Whether a signature
/// is valid depends only on the bytes, and a record is the same value whoever decoded it, so
/// sharing changes no decision; meshd, with one router, has no use for it.
#[derive(Clone, Default)]
pub struct SharedVerified(Arc<Mutex<Shared>>);

#[derive(Default)]
struct Shared {
    /// Valid tree records by digest, while some router holds them ...
    trees: Table<TreeRecord>,
    /// ... and valid node records.
    nodes: Table<NodeRecord>,
}

/// Values known valid, by digest, held weakly: an entry whose value no router holds any more
/// is swept once the table has doubled since the last sweep (until then it still saves a
/// signature check; after, a record seen again is checked again).
struct Table<T> {
    held: HashMap<[u8; 32], Weak<T>>,
    swept: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            held: HashMap::new(),
            swept: 0,
        }
    }
}

impl<T> Table<T> {
    /// The shared copy of a value whose digest this is (`mine`, the caller's copy, checked
    /// with `verify` if the digest is not known valid), or `None` if it is not valid.
    fn share(
        &mut self,
        digest: [u8; 32],
        mine: Arc<T>,
        verify: impl FnOnce() -> bool,
    ) -> Option<Arc<T>> {
        match self.held.get(&digest) {
            Some(w) => {
                if let Some(held) = w.upgrade() {
                    return Some(held);
                }
            }
            None => {
                if !verify() {
                    return None;
                }
                if self.held.len() >= 2 * self.swept.max(1024) {
                    self.held.retain(|_, w| w.strong_count() > 0);
                    self.swept = self.held.len();
                }
            }
        }
        self.held.insert(digest, Arc::downgrade(&mine));
        Some(mine)
    }

    fn len(&self) -> usize {
        self.held.len()
    }
}

impl SharedVerified {
    /// Distinct records known valid (held by some router now, or not yet swept).
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |s| s.trees.len() + s.nodes.len())
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Router {
    /// Shares signature checks with other routers in this process (see [`SharedVerified`]).
    pub fn share_verified(&mut self, shared: SharedVerified) {
        self.verified.shared = Some(shared);
        self.verified.set = BTreeSet::new();
    }
}

fn digest(kind: u8, encode: impl FnOnce(&mut Vec<u8>)) -> [u8; 32] {
    use sha2::{Digest, Sha512_256};
    let mut enc = Vec::with_capacity(220);
    enc.push(kind);
    encode(&mut enc);
    Sha512_256::digest(&enc).into()
}

impl VerifiedCache {
    const MAX: usize = 8192;

    /// A tree record if its signatures check out, shared where a [`SharedVerified`] holds it.
    fn check(&mut self, r: TreeRecord) -> Option<Arc<TreeRecord>> {
        let digest = digest(0, |e| r.encode(e));
        if let Some(s) = &self.shared {
            // The shared table is the only one kept: a copy per router (up to `MAX` digests
            // each) would cost a simulation of many routers more than its routing state.
            let Ok(mut s) = s.0.lock() else {
                return r.verify().then(|| Arc::new(r));
            };
            let r = Arc::new(r);
            let check = Arc::clone(&r);
            return s.trees.share(digest, r, || check.verify());
        }
        self.check_local(digest, || r.verify()).then(|| Arc::new(r))
    }

    /// A node record's signature, checked once per distinct record (lookup answers carry the
    /// same records again and again). Where a [`SharedVerified`] holds the record, this copy
    /// is given its place.
    pub(crate) fn check_node(&mut self, r: &mut NodeRecord) -> bool {
        if self.shared.is_none() {
            let digest = digest(1, |e| r.encode(e));
            return self.check_local(digest, || r.verify());
        }
        match self.check_record(r.clone()) {
            Some(held) => {
                r.place = Arc::clone(&held.place);
                true
            }
            None => false,
        }
    }

    /// Whether a [`SharedVerified`] holds the records checked.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The record whose encoding is `bytes`, if a [`SharedVerified`] holds it (known valid):
    /// what [`VerifiedCache::check_record`] returns for it once decoded, found without
    /// decoding it (the digest is of the encoding; bytes encoded otherwise are not found).
    pub(crate) fn shared_node(&self, bytes: &[u8]) -> Option<Arc<NodeRecord>> {
        use sha2::{Digest, Sha512_256};
        let s = self.shared.as_ref()?;
        let mut h = Sha512_256::new();
        h.update([1u8]);
        h.update(bytes);
        let d: [u8; 32] = h.finalize().into();
        let s = s.0.lock().ok()?;
        s.nodes.held.get(&d)?.upgrade()
    }

    /// The records at `at` in `body`: those a [`SharedVerified`] holds as its shared copies,
    /// found by their bytes and not decoded (a simulation's routers receive the same records
    /// again and again: decoding each place was a tenth of a run's time); the others decoded.
    /// `None` if one does not decode (the caller then decodes the message in full, as before).
    pub(crate) fn received(
        &self,
        body: &[u8],
        at: Vec<std::ops::Range<usize>>,
    ) -> Option<Vec<Received>> {
        let mut nodes = Vec::with_capacity(at.len());
        for range in at {
            let b = body.get(range)?;
            nodes.push(match self.shared_node(b) {
                Some(r) => Received::Held(r),
                None => {
                    let mut r = crate::codec::Reader::new(b);
                    let rec = NodeRecord::decode(&mut r).ok()?;
                    r.finish().ok()?;
                    Received::New(rec)
                }
            });
        }
        Some(nodes)
    }

    /// A node record if its signature checks out: the one copy a [`SharedVerified`] holds.
    pub(crate) fn check_record(&mut self, r: NodeRecord) -> Option<Arc<NodeRecord>> {
        let digest = digest(1, |e| r.encode(e));
        if let Some(s) = &self.shared {
            let Ok(mut s) = s.0.lock() else {
                return r.verify().then(|| Arc::new(r));
            };
            let r = Arc::new(r);
            let check = Arc::clone(&r);
            return s.nodes.share(digest, r, || check.verify());
        }
        self.check_local(digest, || r.verify()).then(|| Arc::new(r))
    }

    fn check_local(&mut self, digest: [u8; 32], verify: impl FnOnce() -> bool) -> bool {
        if self.set.contains(&digest) {
            return true;
        }
        if !verify() {
            return false;
        }
        if self.set.len() >= Self::MAX {
            self.set.clear();
        }
        self.set.insert(digest);
        true
    }
}

impl Router {
    fn eligible(&self, key: &Key) -> bool {
        self.cfg
            .eligible_roots
            .as_ref()
            .is_none_or(|s| s.contains(key))
            && self.root_filter.as_ref().is_none_or(|f| f(key))
    }

    /// Sets (or clears) the [`RootFilter`](crate::router::RootFilter) and chooses the root
    /// again at once: a root that no longer passes is left now, not at its next record.
    pub fn set_root_filter(&mut self, now: Instant, filter: Option<crate::router::RootFilter>) {
        self.root_filter = filter;
        self.reselect(now);
    }

    fn root_alive(&self, root: &Key, now: Instant) -> bool {
        *root == self.key
            || self
                .root_heard
                .get(root)
                .is_some_and(|t| now < *t + self.cfg.root_timeout)
    }

    /// We are stopping: if we are the root, tell everyone, so the tree re-forms at once.
    pub fn retire(&mut self, _now: Instant) {
        if self.parent.is_some() {
            return;
        }
        self.seq += 1;
        let farewell = TreeRecord::retired(&self.sk, self.seq);
        self.flood(&farewell, None);
    }

    /// Sends a record to every peer but `except`.
    fn flood(&mut self, r: &TreeRecord, except: Option<PeerId>) {
        let digest = crate::wire::chain_digest(&self.our_chain());
        let cost = self.cost_to_root();
        let ids: Vec<PeerId> = self
            .peers
            .keys()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        for id in ids {
            let m = PeerMsg::Announce {
                cost,
                digest,
                records: vec![r.clone()],
                node: None,
            };
            self.send(id, m.encode());
        }
    }

    /// Our chain: our record, then our parent's chain.
    fn our_chain(&self) -> Vec<TreeRecord> {
        let mut chain = vec![self.record.clone()];
        if let Some(p) = self.parent.and_then(|p| self.peers.get(&p)) {
            chain.extend(p.chain.iter().map(|r| TreeRecord::clone(r)));
        }
        chain
    }

    /// Our path cost to the root, in microseconds.
    pub(crate) fn cost_to_root(&self) -> u64 {
        match self.parent.and_then(|p| self.peers.get(&p)) {
            Some(p) => p.announced_cost.saturating_add(p.cost()),
            None => 0,
        }
    }

    /// Sends `peer` the records of our chain it has not seen (all of them if `full`).
    fn announce(&mut self, peer: PeerId, full: bool) {
        let ours = self.our_announcement();
        self.announce_with(peer, full, &ours);
    }

    /// What every announcement carries now: our chain, its digest, our cost to the root.
    fn our_announcement(&self) -> (Vec<TreeRecord>, u64, u64) {
        let chain = self.our_chain();
        let digest = crate::wire::chain_digest(&chain);
        (chain, digest, self.cost_to_root())
    }

    fn announce_with(&mut self, peer: PeerId, full: bool, ours: &(Vec<TreeRecord>, u64, u64)) {
        let (chain, digest, cost) = (&ours.0, ours.1, ours.2);
        let node = self.node_record.clone();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if full {
            p.sent.clear();
            p.sent_node_seq = None;
        }
        let fresh: Vec<TreeRecord> = chain
            .iter()
            .filter(|r| p.sent.get(&r.node) != Some(&r.seq))
            .cloned()
            .collect();
        let node = (p.sent_node_seq != Some(node.seq)).then_some(node);
        if fresh.is_empty() && node.is_none() {
            return;
        }
        for r in &fresh {
            p.sent.insert(r.node, r.seq);
        }
        if let Some(n) = &node {
            p.sent_node_seq = Some(n.seq);
        }
        // Parents before children, so that the receiver can complete the chain as it goes.
        let mut fresh = fresh;
        fresh.reverse();
        let mut msgs: Vec<Vec<u8>> = fresh
            .chunks(MAX_ANNOUNCE)
            .map(|c| {
                PeerMsg::Announce {
                    cost,
                    digest,
                    records: c.to_vec(),
                    node: None,
                }
                .encode()
            })
            .collect();
        let last = PeerMsg::Announce {
            cost,
            digest,
            records: vec![],
            node,
        }
        .encode();
        msgs.push(last);
        for m in msgs {
            self.stats.announcements_sent += 1;
            self.send(peer, m);
        }
    }

    pub(crate) fn announce_to(&mut self, peer: PeerId) {
        self.announce(peer, false);
    }

    fn announce_all(&mut self) {
        // (One chain and digest for all of them: a hub has thousands of peers.)
        let ours = self.our_announcement();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.announce_with(id, false, &ours);
        }
    }

    pub(crate) fn handle_peer_msg(&mut self, now: Instant, from: PeerId, msg: &[u8]) -> Handled {
        let Ok(m) = PeerMsg::decode(msg) else {
            return self.drop_count(Drop::Malformed);
        };
        match m {
            PeerMsg::Announce {
                cost,
                digest,
                records,
                node,
            } => self.on_announce(now, from, cost, digest, records, node),
            PeerMsg::AnnounceReq => {
                // A full announcement is our whole chain: at most one every 500 ms per peer
                // (it asks at most once a second when it is behind).
                let Some(p) = self.peers.get_mut(&from) else {
                    return Handled::Consumed;
                };
                if p.answered_full
                    .is_some_and(|t| now < t + Duration::from_millis(500))
                {
                    return self.drop_count(Drop::Replay);
                }
                p.answered_full = Some(now);
                self.announce(from, true);
                Handled::Consumed
            }
            PeerMsg::SigReq { seq } => {
                let Some(p) = self.peers.get(&from) else {
                    return Handled::Consumed;
                };
                let (key, port) = (p.key, p.port);
                // Never sign in our own parent (a two-node loop), nor a peer we are asking to
                // sign us in at the same moment, unless our key breaks the tie: of two peers
                // asking each other, only the higher key signs.
                let asking_it = self.sig_request.is_some_and(|r| r.peer == from);
                if self.parent == Some(from) || (asking_it && self.key < key) {
                    return self.drop_count(Drop::BadChain);
                }
                if asking_it {
                    // It will refuse ours (the lower key does): stop waiting for it. Its next
                    // announcement puts it below us, and we look elsewhere.
                    self.sig_request = None;
                    self.renew_due = Some(now);
                }
                let consent = self.consent_for(port);
                let sig = sign_as_parent(&self.sk, &key, seq, &consent);
                self.send(from, PeerMsg::SigRes { seq, consent, sig }.encode());
                Handled::Consumed
            }
            PeerMsg::SigRes { seq, consent, sig } => self.on_sig_res(now, from, seq, consent, sig),
            PeerMsg::PeerPing { nonce } => {
                self.send(from, PeerMsg::PeerPong { nonce }.encode());
                Handled::Consumed
            }
            PeerMsg::PeerPong { nonce } => {
                if let Some(p) = self.peers.get_mut(&from)
                    && let Some((n, sent)) = p.probe
                    && n == nonce
                {
                    p.probe = None;
                    p.update_rtt(now.saturating_duration_since(sent));
                }
                Handled::Consumed
            }
        }
    }

    fn on_announce(
        &mut self,
        now: Instant,
        from: PeerId,
        cost: u64,
        digest: u64,
        records: Vec<TreeRecord>,
        node: Option<NodeRecord>,
    ) -> Handled {
        // Records older than ones already seen are skipped (the sender may simply be behind;
        // the digest check below asks it for the rest), forged ones void the message.
        let mut replayed = 0;
        let records: Vec<TreeRecord> = records
            .into_iter()
            .filter(|r| {
                let stale = self.seqs.get(&r.node).is_some_and(|s| r.seq < *s);
                replayed += stale as usize;
                !stale
            })
            .collect();
        for _ in 0..replayed {
            self.drop_count(Drop::Replay);
        }
        let mut checked = Vec::with_capacity(records.len());
        for r in records {
            let Some(r) = self.verified.check(r) else {
                return self.drop_count(Drop::BadSignature);
            };
            if r.is_root() && !self.eligible(&r.node) {
                return self.drop_count(Drop::BadChain);
            }
            checked.push(r);
        }
        let records = checked;
        let Some(peer_key) = self.peers.get(&from).map(|p| p.key) else {
            return Handled::Consumed;
        };
        let node = match node {
            Some(n) if n.key != peer_key => return self.drop_count(Drop::BadSignature),
            Some(n) => match self.verified.check_record(n) {
                Some(n) => Some(n),
                None => return self.drop_count(Drop::BadSignature),
            },
            None => None,
        };
        let mut farewells = Vec::new();
        let mut epoch_advanced = false;
        for r in &records {
            let prev = self.seqs.insert(r.node, r.seq);
            let newer = prev.is_none_or(|s| r.seq > s);
            if r.is_retired() {
                // Only a root we know to be alive may retire, and only once: a farewell from
                // an unknown key (anyone can mint one) is neither kept nor passed on.
                if newer && r.node != self.key && self.root_alive(&r.node, now) {
                    self.root_heard.remove(&r.node);
                    farewells.push(r.clone());
                }
            } else if r.is_root() && newer {
                self.root_heard.insert(r.node, now);
                epoch_advanced = true;
            }
        }
        for f in &farewells {
            // Pass it on once, then look for another root if it was ours.
            self.flood(f, Some(from));
        }
        let records: Vec<Arc<TreeRecord>> =
            records.into_iter().filter(|r| !r.is_retired()).collect();
        if !farewells.is_empty() {
            if farewells.iter().any(|f| f.node == self.root) {
                self.parent = None;
            }
            self.reselect(now);
        }
        let Some(p) = self.peers.get_mut(&from) else {
            return Handled::Consumed;
        };
        p.announced_cost = cost;
        p.digest = digest;
        for r in records {
            if p.records.get(&r.node).is_none_or(|old| old.seq <= r.seq) {
                p.records.insert(r);
            }
        }
        let mut place_changed = false;
        if let Some(n) = node
            && p.record.as_ref().is_none_or(|r| r.seq < n.seq)
        {
            place_changed = p.record.as_ref().is_none_or(|r| r.place != n.place);
            p.record = Some(n.clone());
            // A peer's record also goes to the ring, and on towards its place if it does not
            // belong here: the peer graph is what the ring is linearized over.
            self.learn_checked(now, n, true, true);
        }
        self.rebuild_chain(now, from);
        if place_changed {
            // What this peer names around it is part of where we can be reached.
            self.update_ahead(from);
            self.place_changed_soon(now);
        }
        if epoch_advanced {
            // A root's clock moved: consents may have expired, ours may be due.
            self.recheck_consents(now);
        }
        Handled::Consumed
    }

    /// Walks the peer's records from its own up to a root. Incomplete: ask for everything
    /// (at most once a second). Complete: derive its coordinates and reconsider our parent.
    fn rebuild_chain(&mut self, now: Instant, from: PeerId) {
        let our_key = self.key;
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let mut chain: Vec<Arc<TreeRecord>> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = p.key;
        // Our key anywhere on its chain, complete or not, means it is below us (or claims to
        // be): it must never be our parent.
        let mut below_us = false;
        let complete = loop {
            let Some(r) = p.records.get(&at) else {
                break false;
            };
            below_us |= r.node == our_key || r.parent == our_key;
            if !seen.insert(at) || chain.len() > MAX_DEPTH {
                break false; // a loop or an absurd depth: wait for better records
            }
            chain.push(r.clone());
            if r.is_root() {
                break true;
            }
            at = r.parent;
        };
        if p.records.len() > 2 * (MAX_DEPTH + 1) {
            // More records than any chain needs: keep only those on its chain so far.
            p.records.retain(|k| seen.contains(k));
        }
        if below_us && !p.below_us {
            p.below_us = true;
            if self.parent == Some(from) {
                // Our parent now hangs below us (both of us chose the other after a common
                // ancestor left): leave it.
                self.parent = None;
                self.reselect(now);
            }
        }
        let fresh = complete && self.chain_fresh(&chain);
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        if !complete || crate::wire::chain_digest(&chain) != p.digest {
            if p.asked_full
                .is_none_or(|t| now >= t + Duration::from_secs(1))
            {
                p.asked_full = Some(now);
                self.send(from, PeerMsg::AnnounceReq.encode());
            }
            return;
        }
        // Forget records no longer on its chain.
        p.records.retain(|k| seen.contains(k));
        let coords = Coords(
            chain[..chain.len() - 1]
                .iter()
                .rev()
                .map(|r| r.port)
                .collect(),
        );
        let root = chain[chain.len() - 1].node;
        let changed =
            p.coords.as_ref() != Some(&coords) || p.root != Some(root) || p.stale == fresh;
        p.stale = !fresh;
        self.fwd.dirty |= changed;
        p.below_us = below_us;
        p.root = Some(root);
        p.coords = Some(coords);
        let chain_changed = p.chain != chain;
        p.chain = chain;
        if self.parent == Some(from) && chain_changed {
            // Our parent moved (or its root re-signed): so do our chain and maybe coordinates.
            self.update_position(now);
        }
        if changed {
            // A neighbour moved: so may have where we can be reached.
            self.update_ahead(from);
            self.place_changed_soon(now);
        }
        if changed || self.parent.is_none() || self.parent == Some(from) {
            self.reselect(now);
        }
    }

    /// Recomputes our root and coordinates from our parent's chain, and tells the peers.
    fn update_position(&mut self, now: Instant) {
        let (root, coords) = match self.parent.and_then(|p| self.peers.get(&p)) {
            Some(p) => match (&p.root, &p.coords) {
                (Some(r), Some(c)) if c.depth() < MAX_DEPTH => {
                    let mut c = c.clone();
                    c.0.push(self.record.port);
                    (*r, c)
                }
                (Some(_), Some(_)) => {
                    // Our parent sank to the deepest depth allowed: we cannot hang below it.
                    self.parent = None;
                    self.reselect(now);
                    return;
                }
                _ => return,
            },
            None => (self.key, Coords::root()),
        };
        let moved = coords != self.coords || root != self.root;
        self.fwd.dirty |= moved;
        // (`root_heard` is not touched: only a root's own fresh record makes it alive, so a
        // stale chain cannot bring back a root that retired or timed out.)
        self.root = root;
        if coords != self.coords {
            self.coords = coords;
        }
        self.refresh_place(now);
        if moved {
            self.events.push_back(Event::TreeChanged);
            self.dht_position_changed(now);
            self.notify_moved(now);
        }
        self.announce_all();
        self.maybe_renew(now);
    }

    /// Chooses the root and parent again (see the module doc).
    pub(crate) fn reselect(&mut self, now: Instant) {
        let mut best_root: Option<Key> = self.eligible(&self.key).then_some(self.key);
        for p in self.peers.values() {
            let (Some(r), Some(c)) = (p.root, &p.coords) else {
                continue;
            };
            if p.below_us
                || c.depth() >= MAX_DEPTH
                || !self.eligible(&r)
                || !self.root_alive(&r, now)
            {
                continue;
            }
            if best_root.is_none_or(|b| r < b) {
                best_root = Some(r);
            }
        }
        let Some(best_root) = best_root.filter(|r| *r != self.key) else {
            // We are the best root, or no eligible root is in reach: be our own root.
            if self.parent.is_some() || self.root != self.key || self.record.parent != self.key {
                self.become_root(now);
            }
            return;
        };
        let path_cost = |p: &crate::router::Peer| p.announced_cost.saturating_add(p.cost());
        let candidates = self.peers.iter().filter(|(_, p)| {
            p.root == Some(best_root)
                && !p.below_us
                && !p.stale
                && p.coords.as_ref().is_some_and(|c| c.depth() < MAX_DEPTH)
        });
        let Some((&best, best_peer)) = candidates.min_by_key(|(id, p)| (path_cost(p), **id)) else {
            return;
        };
        let best_cost = path_cost(best_peer);
        if let Some(cur) = self.parent
            && let Some(cp) = self.peers.get(&cur)
            && cp.root == Some(best_root)
            && !cp.below_us
            && !cp.stale
        {
            let cur_cost = path_cost(cp);
            let margin = ((cur_cost as f64 * self.cfg.switch_fraction) as u64)
                .max(self.cfg.switch_min.as_micros() as u64);
            if best == cur || best_cost.saturating_add(margin) >= cur_cost {
                return; // keep the parent we have
            }
        }
        if self.sig_request.is_some_and(|r| r.peer == best) {
            return; // already asking it
        }
        self.seq = self.seq.max(self.seqs.get(&self.key).copied().unwrap_or(0)) + 1;
        self.sig_request = Some(SigRequest {
            peer: best,
            seq: self.seq,
            sent: now,
        });
        self.send(best, PeerMsg::SigReq { seq: self.seq }.encode());
    }

    fn on_sig_res(
        &mut self,
        now: Instant,
        from: PeerId,
        seq: u64,
        consent: crate::record::Consent,
        sig: [u8; 64],
    ) -> Handled {
        let Some(req) = self.sig_request.filter(|r| r.peer == from && r.seq == seq) else {
            return Handled::Consumed; // stale or unsolicited
        };
        let Some(parent_key) = self.peers.get(&from).filter(|p| !p.below_us).map(|p| p.key) else {
            // Gone, or it moved below us while we were asking.
            self.sig_request = None;
            self.reselect(now);
            return Handled::Consumed;
        };
        let record = TreeRecord::new(&self.sk, parent_key, req.seq, consent, sig);
        if !record.verify() {
            self.sig_request = None;
            return self.drop_count(Drop::BadSignature);
        }
        self.sig_request = None;
        if self.seqs.get(&self.key).is_some_and(|s| *s > record.seq) {
            // We signed a newer record of our own meanwhile: peers would take this one for a
            // replay. Ask again with a fresh number.
            self.reselect(now);
            return Handled::Consumed;
        }
        self.seqs.insert(self.key, record.seq);
        self.record = record;
        self.parent = Some(from);
        self.update_position(now);
        Handled::Consumed
    }

    fn become_root(&mut self, now: Instant) {
        self.seq = self.seq.max(self.seqs.get(&self.key).copied().unwrap_or(0)) + 1;
        self.record = TreeRecord::root(&self.sk, self.seq);
        self.seqs.insert(self.key, self.seq);
        self.parent = None;
        self.sig_request = None;
        self.root_heard.insert(self.key, now);
        self.next_root_refresh = now + self.cfg.root_refresh;
        self.update_position(now);
    }

    /// Root refresh (if we are root), dead-root detection, stuck signature requests.
    ///
    /// Three states: *root* (no parent, our own root record), *child* (a parent signed us
    /// in) and *detached* (our parent or root is gone and we are waiting for a new parent's
    /// signature). A detached node signs nothing of its own, so that the record its new
    /// parent signs is never older than one its peers already hold.
    pub(crate) fn tree_timers(&mut self, now: Instant) {
        if let Some(r) = self.sig_request
            && now >= r.sent + self.cfg.lookup_rpc_timeout
        {
            self.sig_request = None;
            self.reselect(now);
        }
        if self.parent.is_some() {
            let deadline = self
                .root_heard
                .get(&self.root)
                .map_or(now, |t| *t + self.cfg.root_timeout);
            if now >= deadline {
                // Our root went quiet: leave it (its old records are never believed again).
                self.root_heard.remove(&self.root);
                self.parent = None;
                self.reselect(now);
            }
        }
        if self.parent.is_none() && self.root != self.key && self.sig_request.is_none() {
            // Detached with nobody to ask: stand alone until a parent turns up.
            self.become_root(now);
        }
        if self.parent.is_none() && self.root == self.key {
            if now >= self.next_root_refresh {
                if self.sig_request.is_some() {
                    // About to hang below another root: a refresh now would outdate the
                    // record being signed. Look again shortly.
                    self.next_root_refresh = now + Duration::from_millis(100);
                } else {
                    self.seq = self.seq.max(self.seqs.get(&self.key).copied().unwrap_or(0)) + 1;
                    self.record = TreeRecord::root(&self.sk, self.seq);
                    self.seqs.insert(self.key, self.seq);
                    self.root_heard.insert(self.key, now);
                    self.next_root_refresh = now + self.cfg.root_refresh;
                    self.announce_all();
                    self.recheck_consents(now);
                }
            }
        } else if self.parent.is_some() {
            self.next_root_refresh = self
                .root_heard
                .get(&self.root)
                .map_or(now + self.cfg.root_refresh, |t| *t + self.cfg.root_timeout)
                .max(now + Duration::from_millis(1));
        } else {
            // Detached: the pending signature request has its own deadline.
            self.next_root_refresh = now + self.cfg.root_refresh;
        }
        self.maybe_renew(now);
        self.prune_tree_state(now);
    }

    /// Bounds what strangers can make us remember: dead roots are forgotten after a while,
    /// and sequence numbers of keys on no peer's chain once there are too many.
    fn prune_tree_state(&mut self, now: Instant) {
        const MAX_ROOTS: usize = 256;
        const MAX_SEQS: usize = 16_384;
        let keep_dead = self.cfg.root_timeout * 10;
        if self.root_heard.len() > MAX_ROOTS {
            let (key, root) = (self.key, self.root);
            self.root_heard
                .retain(|k, t| *k == key || *k == root || now < *t + keep_dead);
        }
        if self.seqs.len() > MAX_SEQS {
            let mut live: BTreeSet<Key> = self.root_heard.keys().copied().collect();
            live.insert(self.key);
            for p in self.peers.values() {
                live.extend(p.records.keys().copied());
            }
            self.seqs.retain(|k, _| live.contains(k));
        }
    }

    /// Sends RTT probes to peers that are due.
    pub(crate) fn probe_links(&mut self, now: Instant) {
        if self.next_probe.is_none_or(|t| now < t) {
            return;
        }
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| now >= p.next_probe)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let nonce = self.next_random();
            let every = self.cfg.rtt_probe;
            if let Some(p) = self.peers.get_mut(&id) {
                p.probe = Some((nonce, now));
                p.next_probe = now + every;
            }
            self.send(id, PeerMsg::PeerPing { nonce }.encode());
        }
        self.next_probe = self.peers.values().map(|p| p.next_probe).min();
    }
}
