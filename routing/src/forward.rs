//! Greedy forwarding by tree distance over all peers.
//!
//! A routed message names its destination's key and coordinates. Each node sends it to the
//! peer (any peer, not only tree neighbours: links off the tree are shortcuts) whose
//! coordinates are closest to the destination's, and only if that peer is **strictly closer**
//! than both this node and the message's **watermark**, the smallest distance any node on its
//! way has reached so far; the node then lowers the watermark to the peer's distance. The
//! distance carried in the message therefore strictly decreases at every hop, which makes a
//! loop impossible even while the tree is changing under the message. A direct peer that is
//! the destination gets the message at once. When no peer qualifies, the message is dropped
//! and the source is told (`BROKEN`), so it looks the destination up again (keeping the place
//! it has meanwhile: see [`crate::broken`]).

use crate::codec::Key;
use crate::coords::{MAX_NEAR, Place};
use crate::record::tree_id;
use crate::router::{Drop, Event, Handled, PeerId, Router};
use crate::wire::{self, NO_WATERMARK, PlaceBuf, RoutedBody, RoutedHeader, kind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long traffic to a destination carries our whole place after it changed.
const PLACE_RESEND: Duration = Duration::from_secs(2);

/// Least time between two BROKEN notices to the same source.
const BROKEN_INTERVAL: Duration = Duration::from_millis(500);

impl Router {
    /// The peer to send a message for `dest_key` at `dest` to, and its distance to `dest`.
    ///
    /// Only peers whose own (verified) coordinates are strictly closer qualify, and the
    /// watermark is kept in that distance: what makes loops impossible rests on signed
    /// chains alone. Among those peers, one whose place (its signed claim of its own
    /// neighbours) is nearer still is preferred: a one-hop look-ahead that a lying peer can
    /// use only to win among peers that are real progress anyway.
    pub(crate) fn next_hop(
        &self,
        dest_key: &Key,
        dest: &PlaceBuf,
        watermark: u8,
    ) -> Option<(PeerId, u8)> {
        if let Some(id) = self.peer_by_key.get(dest_key) {
            return Some((*id, 0));
        }
        let ours = &self.coords.0;
        // (Not our peer, checked above: a position of its place at ours is stale.)
        let limit = dest.dist_from_us(ours).min(watermark as u64);
        // A child of ours is nearer only if a position of the place lies in its subtree: the
        // ports below us on the way to those positions. (A hub has thousands of children;
        // this spares computing each one's distance.)
        let mut wanted = [0u64; 1 + MAX_NEAR];
        let mut n_wanted = 0;
        // Likewise, another peer is nearer only if it shares a branch of the root with a
        // position, or is shallow enough that going through the root is shorter for it.
        let mut branches = [None; 1 + MAX_NEAR];
        let mut n_branches = 0;
        let mut via_root = u64::MAX;
        let positions = std::iter::once((0, dest.at())).chain(dest.near());
        for (h, q) in positions {
            if q.len() > ours.len() && q.starts_with(ours) {
                wanted[n_wanted] = q[ours.len()];
                n_wanted += 1;
            }
            let b = q.first().copied();
            if !branches[..n_branches].contains(&b) {
                branches[n_branches] = b;
                n_branches += 1;
            }
            via_root = via_root.min(q.len() as u64 + h as u64);
        }
        // A peer in no position's branch, at depth `k`, is at `k + via_root`.
        let shallow_below = limit.saturating_sub(via_root) as usize;
        let mut best: Option<(u64, u64, u64, PeerId)> = None;
        let children = wanted[..n_wanted]
            .iter()
            .filter_map(|port| self.fwd.child(*port));
        let same_branch = branches[..n_branches]
            .iter()
            .flatten()
            .flat_map(|b| self.fwd.in_branch(*b));
        let shallow = self
            .fwd
            .by_depth
            .iter()
            .take_while(|(k, _)| *k < shallow_below)
            .map(|(_, id)| id);
        for id in same_branch.chain(shallow).chain(children) {
            let Some(p) = self.peers.get(id) else {
                continue;
            };
            let Some(c) = &p.coords else { continue };
            let d = dest.dist(&c.0);
            if d >= limit {
                continue;
            }
            let ahead = p
                .ahead
                .iter()
                .flat_map(|place| place.near.iter().filter(|n| n.hops == 1))
                .map(|n| dest.dist(&n.at.0) + 1)
                .fold(d, u64::min);
            let cand = (ahead, d, p.cost(), *id);
            if best.is_none_or(|b| cand < b) {
                best = Some(cand);
            }
        }
        best.map(|(_, d, _, id)| (id, d.min(NO_WATERMARK as u64 - 1) as u8))
    }

    /// Handles a routed message that arrived from `from` (or that we originate, `None`).
    pub(crate) fn handle_routed(
        &mut self,
        now: Instant,
        from: Option<PeerId>,
        msg: &mut [u8],
    ) -> Handled {
        let Ok(h) = RoutedHeader::decode(msg) else {
            return self.drop_count(Drop::Malformed);
        };
        if self.fwd.dirty {
            self.rebuild_fwd();
        }
        if let Some(peer) = from {
            if h.hop_limit == 0 {
                return self.drop_count(Drop::HopLimit);
            }
            // Ring upkeep and name requests are paid from the same budget as lookup requests.
            if matches!(
                h.kind,
                kind::FIND | kind::RING | kind::NAME_PUT | kind::NAME_GET
            ) && self
                .peers
                .get_mut(&peer)
                .is_some_and(|p| !self.find_pool.take(&mut p.finds, now))
            {
                return self.drop_count(Drop::RateLimited);
            }
            msg[wire::HOP_LIMIT_AT] = h.hop_limit - 1;
        }
        if h.dest_key == self.key {
            return self.local(now, &h, msg);
        }
        // A destination that is our peer needs no place (`next_hop` answers so first): the
        // place on the stack is 1.5 KB, zeroed and moved for every packet otherwise. (The
        // header's decoding already checked the place as `buf` would.)
        let hop = match self.peer_by_key.get(&h.dest_key) {
            Some(id) => Some((*id, 0)),
            None => {
                let Ok(dest) = h.dest.buf(msg) else {
                    return self.drop_count(Drop::Malformed);
                };
                self.next_hop(&h.dest_key, &dest, h.watermark)
            }
        };
        match hop {
            Some((peer, d)) => {
                msg[wire::WATERMARK_AT] = d;
                if from.is_some() {
                    self.stats.forwarded += 1;
                }
                Handled::Forward(peer)
            }
            None => {
                if matches!(h.kind, kind::TRAFFIC | kind::PING | kind::FIND) && from.is_some() {
                    self.tell_broken(now, &h, msg);
                }
                self.drop_count(Drop::NoRoute)
            }
        }
    }

    /// Sorts the peers in our tree into our children (by port) and the others, after
    /// anyone's place in the tree changed.
    fn rebuild_fwd(&mut self) {
        let ours = &self.coords.0;
        self.fwd.children.clear();
        self.fwd.by_branch.clear();
        self.fwd.by_depth.clear();
        for (id, p) in &self.peers {
            if p.root != Some(self.root) || p.stale {
                // Another tree's coordinates mean nothing here; a stale chain's are a claim
                // its parent no longer backs.
                continue;
            }
            let Some(c) = &p.coords else { continue };
            if c.0.len() == ours.len() + 1 && c.0.starts_with(ours) {
                self.fwd.children.push((c.0[ours.len()], *id));
            } else {
                if let Some(b) = c.0.first() {
                    self.fwd.by_branch.push((*b, *id));
                }
                self.fwd.by_depth.push((c.depth(), *id));
            }
        }
        // (Stable sorts: peers in peer order within a port or a branch, as they were pushed.)
        self.fwd.children.sort_by_key(|e| e.0);
        self.fwd.by_branch.sort_by_key(|e| e.0);
        self.fwd.by_depth.sort_unstable();
        self.fwd.dirty = false;
    }

    fn tell_broken(&mut self, now: Instant, h: &RoutedHeader, msg: &[u8]) {
        if self
            .broken_sent
            .get(&h.src_key)
            .is_some_and(|t| now < *t + BROKEN_INTERVAL)
        {
            return;
        }
        if self.broken_sent.len() > 4096 {
            self.broken_sent.clear();
        }
        self.broken_sent.insert(h.src_key, now);
        let Ok(src) = h.src.to_place(msg) else {
            return;
        };
        self.send_control(
            now,
            &h.src_key,
            &src,
            RoutedBody::Broken { key: h.dest_key },
        );
    }

    fn local(&mut self, now: Instant, h: &RoutedHeader, msg: &[u8]) -> Handled {
        if h.kind == kind::TRAFFIC {
            self.stats.delivered += 1;
            return Handled::Deliver {
                src: h.src_key,
                body_at: h.body_at,
            };
        }
        if h.kind == kind::RING
            && let Some((stabilise, nodes)) = self.ring_shared(&msg[h.body_at..])
        {
            self.on_ring(now, h, stabilise, nodes);
            return Handled::Consumed;
        }
        if h.kind == kind::FOUND
            && let Some((nonce, nodes)) = self.found_shared(&msg[h.body_at..])
        {
            self.on_found(now, &h.src_key, nonce, nodes);
            return Handled::Consumed;
        }
        let Ok(body) = RoutedBody::decode(h.kind, &msg[h.body_at..]) else {
            return self.drop_count(Drop::Malformed);
        };
        match body {
            RoutedBody::Find {
                nonce,
                target,
                requester,
            } => {
                self.on_find(now, h, nonce, target, requester, msg);
            }
            RoutedBody::Found { nonce, nodes } => {
                let nodes = nodes.into_iter().map(crate::tree::Received::New).collect();
                self.on_found(now, &h.src_key, nonce, nodes)
            }
            RoutedBody::Broken { key } => self.on_broken(now, key),
            RoutedBody::Ping {
                nonce,
                initial_hops,
            } => {
                // The hop limit as it arrived here (this hop already counted).
                let hops = initial_hops.saturating_sub(msg[wire::HOP_LIMIT_AT]);
                if let Ok(src) = h.src.to_place(msg) {
                    self.send_control(now, &h.src_key, &src, RoutedBody::Pong { nonce, hops });
                }
            }
            RoutedBody::Pong { nonce, hops } => {
                if let Some(sent) = self.pings.remove(&nonce) {
                    let rtt = now.saturating_duration_since(sent);
                    self.events.push_back(Event::Pong { nonce, hops, rtt });
                }
            }
            RoutedBody::NamePut { nonce, record } => self.on_name_put(now, h, nonce, record, msg),
            RoutedBody::NameGet {
                nonce,
                name,
                authorities,
            } => self.on_name_get(now, h, nonce, name, authorities, msg),
            b @ (RoutedBody::NameAck { .. } | RoutedBody::NameVal { .. }) => {
                self.on_name_answer(now, &h.src_key, b)
            }
            RoutedBody::Ring { stabilise, nodes } => {
                let nodes = nodes.into_iter().map(crate::tree::Received::New).collect();
                self.on_ring(now, h, stabilise, nodes)
            }
            RoutedBody::Notify { mut record } => {
                // Only the node itself can say where it moved, and only a place in our tree
                // is one (see `Router::learn`).
                if record.tree != tree_id(&self.root) {
                    self.stats.other_tree += 1;
                } else if record.key == h.src_key && self.verified.check_node(&mut record) {
                    // Someone we route to, or talked with lately (its entry may have just been
                    // dropped by a BROKEN): take the new place at once.
                    if self.coords_of.contains_key(&record.key)
                        || self.talked_to.contains_key(&record.key)
                    {
                        self.record_coords(now, &record, true);
                    }
                    self.dht_learn(now, record);
                }
            }
        }
        Handled::Consumed
    }

    /// Sends a routed control message; false if there is no way to `dest`.
    pub(crate) fn send_control(
        &mut self,
        now: Instant,
        dest: &Key,
        place: &Place,
        body: RoutedBody,
    ) -> bool {
        let mut msg = Vec::with_capacity(160);
        wire::encode_routed_header(
            &mut msg,
            body.kind(),
            self.cfg.hop_limit,
            dest,
            place,
            &self.key,
            &self.node_record.place,
        );
        body.encode(&mut msg);
        if *dest == self.key {
            self.handle_routed(now, None, &mut msg);
            return true;
        }
        match self.handle_routed(now, None, &mut msg) {
            Handled::Forward(peer) => {
                self.send(peer, msg);
                true
            }
            _ => false,
        }
    }

    /// Appends a traffic message for `dest` carrying `payload` to `out` (after whatever the
    /// caller put there, such as a frame header) and returns the peer to send it to, or `None`
    /// if `dest`'s coordinates are unknown or no peer leads there (look it up with
    /// [`Router::resolve`]).
    pub fn send_traffic(
        &mut self,
        now: Instant,
        dest: &Key,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<PeerId> {
        let place = &self.coords_of.get(dest)?.place;
        let at = out.len();
        if self.talked_to.len() < 4096 || self.talked_to.contains_key(dest) {
            self.talked_to.insert(*dest, now);
        }
        // Our whole place goes in the first packets after it changed (or for a while, to
        // cover a loss), then only our coordinates: the receiver keeps the rest.
        let full = self
            .place_sent
            .get(dest)
            .is_none_or(|(seq, t)| *seq != self.node_seq || now < *t + PLACE_RESEND);
        wire::encode_routed_header_src(
            out,
            kind::TRAFFIC,
            self.cfg.hop_limit,
            dest,
            place,
            &self.key,
            &self.node_record.place,
            full,
        );
        if full
            && self
                .place_sent
                .get(dest)
                .is_none_or(|(s, _)| *s != self.node_seq)
        {
            if self.place_sent.len() >= 4096 {
                self.place_sent.clear();
            }
            self.place_sent.insert(*dest, (self.node_seq, now));
        }
        out.extend_from_slice(payload);
        match self.handle_routed(now, None, &mut out[at..]) {
            Handled::Forward(peer) => Some(peer),
            _ => {
                // Our own view says no peer leads there: the coordinates are stale. Forget
                // them (as a BROKEN would) so that the caller's next resolve looks it up.
                self.forget_coords(dest);
                self.events.push_back(Event::PathBroken { key: *dest });
                None
            }
        }
    }

    /// Length of the header of a traffic message to `dest`, if its coordinates are known: what
    /// the path takes from each packet's room.
    pub fn traffic_header_len(&self, dest: &Key) -> Option<usize> {
        let dest = &self.coords_of.get(dest)?.place;
        let coords = |c: &[u64]| -> usize {
            crate::codec::varint_len(c.len() as u64)
                + c.iter()
                    .map(|p| crate::codec::varint_len(*p))
                    .sum::<usize>()
        };
        let place = |p: &Place| -> usize {
            coords(&p.at.0)
                + crate::codec::varint_len(p.near.len() as u64)
                + p.near.iter().map(|n| 1 + coords(&n.at.0)).sum::<usize>()
        };
        Some(3 + 32 + place(dest) + 32 + place(&self.node_record.place))
    }

    /// Most destinations whose places we keep (the oldest learnt goes first).
    pub(crate) const MAX_LOCATED: usize = 8192;

    /// Remembers where `key` is, making room if the table is full.
    pub(crate) fn set_coords(&mut self, now: Instant, key: Key, place: Arc<Place>, seq: u64) {
        if self.coords_of.len() >= Self::MAX_LOCATED && !self.coords_of.contains_key(&key) {
            let oldest = self
                .coords_of
                .iter()
                .min_by_key(|(_, l)| l.at)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.forget_coords(&k);
            }
        }
        self.coords_of.insert(
            key,
            crate::router::Located {
                place,
                at: now,
                seq,
            },
        );
    }

    /// Takes the place a signed node record gives, unless we know a newer record of that node
    /// (`insert`: even if we did not route to it yet). True if taken.
    pub(crate) fn record_coords(
        &mut self,
        now: Instant,
        rec: &crate::record::NodeRecord,
        insert: bool,
    ) -> bool {
        match self.coords_of.get(&rec.key) {
            // Older, or as old but the place came from its traffic since: not newer.
            Some(l) if rec.seq < l.seq || (rec.seq == l.seq && l.place != rec.place) => false,
            Some(l) if l.place == rec.place && l.seq == rec.seq => true,
            None if !insert => false,
            _ => {
                self.set_coords(now, rec.key, rec.place.clone(), rec.seq);
                true
            }
        }
    }

    /// Drops what we know of where `key` is; true if we knew.
    pub(crate) fn forget_coords(&mut self, key: &Key) -> bool {
        let known = self.coords_of.remove(key).is_some();
        if known {
            self.routes.retain(|_, r| r.key != *key);
        }
        known
    }

    /// Whether `dest`'s coordinates are known.
    pub fn knows(&self, dest: &Key) -> bool {
        self.coords_of.contains_key(dest)
    }

    /// The source coordinates of a traffic message whose sender the caller has authenticated:
    /// remembered as the way back to that sender.
    pub fn confirm_source(&mut self, now: Instant, msg: &[u8]) {
        let Ok(h) = RoutedHeader::decode(msg) else {
            return;
        };
        if self.talked_to.len() < 4096 || self.talked_to.contains_key(&h.src_key) {
            self.talked_to.insert(h.src_key, now);
        }
        let seq = match self.coords_of.get(&h.src_key) {
            // Only its coordinates, and they have not changed (what traffic carries most of
            // the time): keep what else we know, and allocate nothing.
            Some(l) if h.src.is_only(msg, &l.place.at.0) => return,
            Some(l) => l.seq,
            None => 0,
        };
        let Ok(place) = h.src.to_place(msg) else {
            return;
        };
        if self
            .coords_of
            .get(&h.src_key)
            .is_none_or(|l| *l.place != place)
        {
            self.set_coords(now, h.src_key, Arc::new(place), seq);
        }
    }

    /// Tells every node we talked to in the last two minutes where we are now, so that traffic
    /// to us does not wait for a `BROKEN` and a new lookup after we moved in the tree.
    pub(crate) fn notify_moved(&mut self, now: Instant) {
        let horizon = Duration::from_secs(120);
        self.talked_to.retain(|_, t| now < *t + horizon);
        let targets: Vec<(Key, Arc<Place>)> = self
            .talked_to
            .keys()
            .filter_map(|k| self.coords_of.get(k).map(|l| (*k, l.place.clone())))
            .collect();
        for (k, c) in targets {
            let body = RoutedBody::Notify {
                record: self.node_record.clone(),
            };
            self.send_control(now, &k, &c, body);
        }
    }

    /// Sends an overlay ping to `dest` (whose coordinates must be known); returns its nonce.
    pub fn ping(&mut self, now: Instant, dest: &Key) -> Option<u64> {
        let place = self.coords_of.get(dest)?.place.clone();
        let nonce = self.next_random();
        let body = RoutedBody::Ping {
            nonce,
            initial_hops: self.cfg.hop_limit,
        };
        if !self.send_control(now, dest, &place, body) {
            return None;
        }
        if self.pings.len() > 1024 {
            self.pings.clear();
        }
        self.pings.insert(nonce, now);
        Some(nonce)
    }
}
