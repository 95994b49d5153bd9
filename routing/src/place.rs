//! Our [`Place`]: our coordinates and some positions around us, signed in our node record.
//!
//! Named first are direct peers in our tree that are neither our ancestors nor in our subtree
//! (those add nothing to tree distance), then the peers *they* name (two hops from us), each
//! time the shallowest first and, before any second one, one per branch of the root: a
//! shallow position in a branch no other position reaches is a shortcut from far across the
//! tree. The record is re-signed only when the place changes.

use crate::codec::Key;
use crate::coords::{Coords, MAX_NEAR, MAX_PLACE_PORTS, Near, Place};
use crate::record::{NodeRecord, tree_id};
use crate::router::Router;
use std::time::{Duration, Instant};

/// How long after a peer's change we reconsider our place.
const PLACE_DELAY: Duration = Duration::from_millis(250);

impl Router {
    /// The place we would sign now.
    fn current_place(&self) -> Place {
        let ours = &self.coords.0;
        let unrelated = |c: &Coords| !(c.0.starts_with(ours) || ours.starts_with(&c.0));
        let mut one: Vec<(usize, Key, &Coords)> = Vec::new();
        for p in self.peers.values() {
            if p.root != Some(self.root) || p.below_us || p.stale {
                continue;
            }
            let Some(c) = p.coords.as_ref() else { continue };
            if unrelated(c) {
                one.push((c.depth(), p.key, c));
            }
        }
        one.sort();
        let mut place = Place::from(self.coords.clone());
        let mut ports = place.at.depth();
        let mut branches: Vec<Option<u64>> = vec![ours.first().copied()];
        let want1 = self.cfg.near.min(MAX_NEAR);
        let want2 = self.cfg.near2.min(MAX_NEAR - want1);
        self.add_near(&mut place, &mut ports, &mut branches, 1, &one, want1);
        // Two hops away only through a peer a message can find one hop from us: a peer named
        // above, or a tree neighbour (parent or child, one tree hop from us). Otherwise a
        // message that reached such a position could be stuck there.
        let mut two: Vec<(usize, Key, &Coords)> = Vec::new();
        for p in self.peers.values() {
            if p.root != Some(self.root) || p.stale {
                continue;
            }
            let Some(c) = p.coords.as_ref() else { continue };
            let named = place.near.iter().any(|n| n.at == *c);
            if !named && c.dist(ours) != 1 {
                continue;
            }
            if let Some(r) = p.record.as_ref().filter(|r| r.place.at == *c) {
                for n in r.place.near.iter().filter(|n| n.hops == 1) {
                    if unrelated(&n.at) {
                        two.push((n.at.depth(), p.key, &n.at));
                    }
                }
            }
        }
        two.sort();
        self.add_near(&mut place, &mut ports, &mut branches, 2, &two, want2);
        place
    }

    /// Adds up to `want` of `cands` (sorted shallowest first) to `place` as `hops` away: one
    /// per branch of the root not covered yet, then the shallowest of the rest.
    fn add_near(
        &self,
        place: &mut Place,
        ports: &mut usize,
        branches: &mut Vec<Option<u64>>,
        hops: u8,
        cands: &[(usize, Key, &Coords)],
        want: usize,
    ) {
        let mut got = 0;
        let mut taken = vec![false; cands.len()];
        for pass in 0..2 {
            for (i, (_, _, c)) in cands.iter().enumerate() {
                let branch = c.0.first().copied();
                if got >= want
                    || taken[i]
                    || *ports + c.depth() > MAX_PLACE_PORTS
                    || (pass == 0 && branches.contains(&branch))
                    || place.near.iter().any(|n| n.at == **c)
                {
                    continue;
                }
                taken[i] = true;
                branches.push(branch);
                *ports += c.depth();
                got += 1;
                place.near.push(Near {
                    hops,
                    at: (*c).clone(),
                });
            }
        }
    }

    /// Peers moved or changed what they name: reconsider our place a little later, once for
    /// a burst of changes (a node with thousands of peers would otherwise redo it for each).
    pub(crate) fn place_changed_soon(&mut self, now: Instant) {
        if self.place_due.is_none() {
            self.place_due = Some(now + PLACE_DELAY);
        }
    }

    pub(crate) fn place_timer(&mut self, now: Instant) {
        if self.place_due.is_some_and(|t| now >= t) {
            self.place_due = None;
            if self.refresh_place(now) {
                let ids: Vec<_> = self.peers.keys().copied().collect();
                for id in ids {
                    self.announce_to(id);
                }
            }
        }
    }

    /// What `peer`'s record says of its direct peers, for the look-ahead of forwarding; only
    /// while the record matches where its chain puts it.
    pub(crate) fn update_ahead(&mut self, peer: crate::router::PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.ahead = match (&p.record, &p.coords) {
            (Some(r), Some(c)) if r.place.at == *c && !p.stale => {
                Some(std::sync::Arc::clone(&r.place))
            }
            _ => None,
        };
    }

    /// Re-signs our node record if our place (or the tree it is in) changed. True if it did
    /// (the caller tells the peers).
    pub(crate) fn refresh_place(&mut self, _now: Instant) -> bool {
        self.place_due = None;
        let place = self.current_place();
        if place == *self.node_record.place && self.node_record.tree == tree_id(&self.root) {
            return false;
        }
        self.node_seq += 1;
        self.node_record = NodeRecord::new(&self.sk, self.node_seq, &self.root, place);
        true
    }
}
