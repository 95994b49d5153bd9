//! The pure reference model of the whole-node test: wires, each node's rules about the
//! others and each node's view of the znet, and what they allow (who can reach whom, what
//! each end's policy lets through).
//!
//! It must not know about real nodes or the [`TestNet`](super::super::testnet::TestNet): the
//! test in [`super`] applies each transition to both and compares.

use super::{Kind, Rule};
use std::collections::BTreeMap;

/// The pure model.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) n: usize,
    /// Wires by (lower, higher): cut or not.
    pub(super) wires: BTreeMap<(usize, usize), bool>,
    /// `rules[a][b]`: what `a`'s policy says about `b`.
    pub(super) rules: Vec<Vec<Rule>>,
    /// Each node's manifest of the znet: its members (a bit per node), or not up.
    pub(super) views: Vec<Option<u8>>,
}

impl Model {
    pub(super) fn new(n: usize) -> Model {
        Model {
            n,
            wires: BTreeMap::new(),
            rules: vec![vec![Rule::Allow; n]; n],
            views: vec![None; n],
        }
    }

    pub(super) fn linked(&self, a: usize, b: usize) -> bool {
        self.wires.get(&(a.min(b), a.max(b))) == Some(&false)
            && self.rules[a][b] != Rule::DenyPeer
            && self.rules[b][a] != Rule::DenyPeer
    }

    pub(super) fn can_reach(&self, a: usize, b: usize) -> bool {
        let mut seen = vec![false; self.n];
        let mut stack = vec![a];
        seen[a] = true;
        while let Some(x) = stack.pop() {
            if x == b {
                return true;
            }
            for (y, s) in seen.iter_mut().enumerate() {
                if !*s && self.linked(x, y) {
                    *s = true;
                    stack.push(y);
                }
            }
        }
        false
    }

    /// What the sender's side allows (judged when the packet is sent).
    pub(super) fn sender_allows(&self, a: usize, b: usize, kind: Kind) -> bool {
        let member = |v: Option<u8>, x: usize| v.is_some_and(|m| m & (1 << x) != 0);
        match kind {
            Kind::Echo | Kind::Udp => self.rules[a][b] != Rule::DenyOutbound,
            Kind::Znet => member(self.views[a], a) && member(self.views[a], b),
        }
    }

    /// What the receiver's side allows (judged when the packet arrives).
    pub(super) fn receiver_allows(&self, a: usize, b: usize, kind: Kind) -> bool {
        let member = |v: Option<u8>, x: usize| v.is_some_and(|m| m & (1 << x) != 0);
        match kind {
            Kind::Echo => self.rules[b][a] != Rule::DenyTraffic,
            Kind::Udp => !matches!(self.rules[b][a], Rule::DenyTraffic | Rule::DenyUdp),
            Kind::Znet => member(self.views[b], a) && member(self.views[b], b),
        }
    }
}
