//! A parent's consent expires unless renewed.
//!
//! A tree record carries the parent's consent "child at this port, in `root`'s tree, as of
//! `epoch`" ([`crate::record::Consent`]), where `epoch` is the root's sequence number as the
//! parent knew it. The root re-signs its record every `root_refresh`, so its sequence number is
//! a clock that every node of its tree reads from the same signed records; no wall time is
//! shared, none is needed.
//!
//! * **Checked by everyone.** A peer's chain counts only if every consent on it was given in
//!   the chain's own root's tree and is at most [`RouterConfig::consent_epochs`] behind the
//!   newest sequence number of that root we know (and not that far ahead of it). Otherwise the
//!   peer is *stale*: no forwarding through it, no place naming it, never our new parent. The
//!   check runs whenever a peer's chain is rebuilt and whenever the root's epoch advances here,
//!   so a peer that goes silent expires too.
//! * **Renewed by the child.** A child asks its parent again (the usual `SIG_REQ`) once its
//!   consent is `consent_epochs / 2` old, plus a per-key spread of up to a quarter of the bound
//!   so that the tree does not renew all at once, and at once when its parent's chain reaches
//!   another root. The parent signs any linked peer that asks; it keeps no list of children.
//!
//! What it guarantees: a node that was child of P and lost its link to P (so cannot ask P
//! again) is refused by every node whose view of the root is current, at most `consent_epochs`
//! root refreshes after P last signed it (2 minutes with the defaults). What it does not:
//! a parent still linked to a child that misbehaves can renew it (a parent vouches for whom it
//! signs), and a node that sees no root refresh (cut off from the root) cannot tell time
//! either; it keeps the chains it has until the root times out.
//!
//! This file must not decide parents or coordinates: it only marks peers stale (`crate::tree`
//! and `crate::forward` skip them) and asks for renewals.
//!
//! [`RouterConfig::consent_epochs`]: crate::RouterConfig::consent_epochs

use crate::codec::Key;
use crate::record::{Consent, TreeRecord};
use crate::router::{PeerId, Router, SigRequest};
use crate::wire::PeerMsg;
use std::time::{Duration, Instant};

/// Least time between two renewals we ask for (a parent whose chain flips between roots
/// cannot make us ask in a loop).
const RENEW_GAP: Duration = Duration::from_millis(100);

impl Router {
    /// The epoch of `root`'s tree as we know it: the highest sequence number of its records
    /// we have verified (our own, if we are that root).
    pub(crate) fn epoch_of(&self, root: &Key) -> u64 {
        let own = if *root == self.key && self.record.is_root() {
            self.record.seq
        } else {
            0
        };
        self.seqs.get(root).copied().unwrap_or(0).max(own)
    }

    /// What we consent to when a peer asks us to sign it in at `port`: our tree, now.
    pub(crate) fn consent_for(&self, port: u64) -> Consent {
        Consent {
            port,
            root: self.root,
            epoch: self.epoch_of(&self.root),
        }
    }

    /// Whether every consent on `chain` (a node's record up to its root's) is current.
    pub(crate) fn chain_fresh(&self, chain: &[std::sync::Arc<TreeRecord>]) -> bool {
        let Some((root, below)) = chain.split_last() else {
            return false;
        };
        let now = self.epoch_of(&root.node).max(root.seq);
        let k = self.cfg.consent_epochs;
        below.iter().all(|r| {
            r.root == root.node
                && r.epoch.saturating_add(k) >= now
                && r.epoch <= now.saturating_add(k)
        })
    }

    /// Marks each peer whose chain's consents are no longer current as stale (and back), and
    /// renews our own consent if due. Runs when our root's epoch advances.
    pub(crate) fn recheck_consents(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        let mut changed = false;
        for id in ids {
            let Some(p) = self.peers.get(&id) else {
                continue;
            };
            if p.chain.is_empty() {
                continue;
            }
            let stale = !self.chain_fresh(&p.chain);
            if let Some(p) = self.peers.get_mut(&id)
                && p.stale != stale
            {
                p.stale = stale;
                changed = true;
                self.update_ahead(id);
            }
        }
        if changed {
            self.fwd.dirty = true;
            self.place_changed_soon(now);
            self.reselect(now);
        }
        self.maybe_renew(now);
    }

    /// How old (in root epochs) our consent may get before we ask for a new one: half the
    /// bound, plus a spread by key of up to a quarter of it.
    fn renew_after(&self) -> u64 {
        let k = self.cfg.consent_epochs;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.key[..8]);
        k / 2 + u64::from_le_bytes(b) % (k / 4 + 1)
    }

    /// Asks our parent to sign us in again if our consent is due for renewal or was given in
    /// another root's tree than the one our parent now announces.
    pub(crate) fn maybe_renew(&mut self, now: Instant) {
        let Some(pid) = self.parent else {
            return;
        };
        if self.sig_request.is_some() {
            return;
        }
        let Some(root) = self.peers.get(&pid).and_then(|p| p.root) else {
            return;
        };
        let age = self.epoch_of(&root).saturating_sub(self.record.epoch);
        if self.record.root == root && age < self.renew_after() {
            return;
        }
        if let Some(last) = self.renewed_at
            && now < last + RENEW_GAP
        {
            self.renew_due = Some(last + RENEW_GAP);
            return;
        }
        self.renewed_at = Some(now);
        self.renew_due = None;
        self.stats.consent_renewals += 1;
        self.seq = self.seq.max(self.seqs.get(&self.key).copied().unwrap_or(0)) + 1;
        self.sig_request = Some(SigRequest {
            peer: pid,
            seq: self.seq,
            sent: now,
        });
        self.send(pid, PeerMsg::SigReq { seq: self.seq }.encode());
    }

    /// A renewal put off by [`RENEW_GAP`] that is due.
    pub(crate) fn renew_timer(&mut self, now: Instant) {
        if self.renew_due.is_some_and(|t| now >= t) {
            self.renew_due = None;
            self.maybe_renew(now);
        }
    }
}
