//! Names in the simulator: nodes claim names, others resolve them, before and after churn.
//!
//! Phases (after the key lookups of [`crate::run`], before the scripted events):
//! 1. every node gets the wall clock; `claims` nodes chosen by the seed each claim a name, and
//!    the run goes on until every claim has an outcome;
//! 2. `resolutions` (resolver, name) pairs, all started at once: the fraction that resolved to
//!    the claimer's key on the first try, latency, and the requests they cost;
//! 3. with `churn > 0`: that fraction of the other nodes fails at once (storing nodes among
//!    them); after `settle` seconds, as many fresh pairs are resolved again.
//!
//! Storage per node is read after phase 1. Requests per resolution count every lookup request
//! a name resolution sent and its `NAME_GET`s (each is answered: twice that in messages).

use crate::engine::Sim;
use crate::rng::Rng;
use crate::run::Summary;
use routing::Event;
use routing::names::ClaimState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// `[names]` in a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesSpec {
    /// Nodes that claim a name each.
    pub claims: usize,
    /// (resolver, name) pairs resolved in each round.
    pub resolutions: usize,
    /// Fraction of the other nodes that fails between the two rounds (0: one round).
    #[serde(default)]
    pub churn: f64,
    /// Seconds between the failure and the second round.
    #[serde(default = "default_settle")]
    pub settle: f64,
}

fn default_settle() -> f64 {
    5.0
}

/// One round of resolutions.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Round {
    /// Pairs resolved.
    pub resolutions: usize,
    /// Fraction that resolved to the claimer's key on the first try.
    pub resolved_fraction: f64,
    /// Latency of those, milliseconds.
    pub resolve_ms: Summary,
    /// Requests (lookup requests and `NAME_GET`s) per resolution.
    pub requests_per_resolution: f64,
}

/// What the names phases measured.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NameResults {
    /// Names claimed.
    pub claims: usize,
    /// Fraction of claims held by at least one storing node.
    pub held_fraction: f64,
    /// Storing nodes per held claim.
    pub storers: Summary,
    /// Seconds until every claim had an outcome.
    pub claim_s: f64,
    /// Records stored per node.
    pub stored_per_node: Summary,
    /// Without churn.
    pub round: Round,
    /// After the failure (if `churn > 0`).
    pub after_churn: Option<Round>,
    /// Fraction of nodes failed.
    pub churn: f64,
}

fn shuffle(rng: &mut Rng, v: &mut [u32]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

fn name_of(i: usize) -> String {
    format!("node-{i}")
}

fn drain(sim: &mut Sim) -> Vec<(u32, u64, Event)> {
    std::mem::take(&mut sim.name_events)
}

/// Runs the names phases on a converged network.
pub fn run_names(spec: &NamesSpec, sim: &mut Sim, rng: &mut Rng) -> NameResults {
    let n = sim.nodes.len();
    let now = sim.now();
    for node in &mut sim.nodes {
        node.router.set_wall_clock(now, 1_800_000_000);
    }
    // 1. Claims.
    let mut order: Vec<u32> = (0..n as u32).collect();
    shuffle(rng, &mut order);
    let claimers: Vec<u32> = order.into_iter().take(spec.claims.min(n)).collect();
    let t0 = sim.now_ns;
    for (i, &c) in claimers.iter().enumerate() {
        let now = sim.now();
        let _ = sim.nodes[c as usize]
            .router
            .claim_name(now, &name_of(i), vec![], None);
        sim.collect(c);
    }
    let mut outcome: HashMap<String, ClaimState> = HashMap::new();
    let deadline = sim.now_ns + 60_000_000_000;
    while outcome.len() < claimers.len() && sim.now_ns < deadline {
        sim.run_for(Duration::from_millis(50));
        for (_, _, e) in drain(sim) {
            if let Event::NameClaimed { name, state } = e {
                outcome.insert(name, state);
            }
        }
    }
    let claim_s = (sim.now_ns - t0) as f64 / 1e9;
    // Let the first re-publications (5 s, 10 s after the claim) reach a settled network.
    sim.run_for(Duration::from_secs(16));
    drain(sim);
    let storers: Vec<f64> = outcome
        .values()
        .filter_map(|s| match s {
            ClaimState::Held { storers } => Some(*storers as f64),
            _ => None,
        })
        .collect();
    let held_fraction = storers.len() as f64 / claimers.len().max(1) as f64;
    let stored_per_node = Summary::of(
        sim.nodes
            .iter()
            .map(|n| n.router.stored_names() as f64)
            .collect(),
    );

    // 2. Resolutions.
    let alive: Vec<u32> = (0..n as u32).collect();
    let round = resolve_round(spec, sim, rng, &claimers, &alive);

    // 3. Churn.
    let after_churn = (spec.churn > 0.0).then(|| {
        let mut others: Vec<u32> = (0..n as u32).filter(|i| !claimers.contains(i)).collect();
        shuffle(rng, &mut others);
        let k = (n as f64 * spec.churn).round() as usize;
        for &f in others.iter().take(k) {
            sim.fail_node(f);
        }
        sim.run_for(Duration::from_secs_f64(spec.settle));
        drain(sim);
        let alive: Vec<u32> = (0..n as u32)
            .filter(|i| sim.nodes[*i as usize].alive)
            .collect();
        resolve_round(spec, sim, rng, &claimers, &alive)
    });

    NameResults {
        claims: claimers.len(),
        held_fraction,
        storers: Summary::of(storers),
        claim_s,
        stored_per_node,
        round,
        after_churn,
        churn: spec.churn,
    }
}

fn resolve_round(
    spec: &NamesSpec,
    sim: &mut Sim,
    rng: &mut Rng,
    claimers: &[u32],
    resolvers: &[u32],
) -> Round {
    if claimers.is_empty() || resolvers.is_empty() {
        return Round::default();
    }
    let requests = |sim: &Sim| -> u64 {
        sim.nodes
            .iter()
            .map(|n| n.router.stats().name_requests)
            .sum()
    };
    let r0 = requests(sim);
    let t0 = sim.now_ns;
    let mut pending: HashMap<(u32, String), usize> = HashMap::new();
    let mut right = 0usize;
    let mut ms = Vec::new();
    for _ in 0..spec.resolutions {
        let who = resolvers[rng.below(resolvers.len() as u64) as usize];
        let c = rng.below(claimers.len() as u64) as usize;
        let name = name_of(c);
        let now = sim.now();
        match sim.nodes[who as usize].router.resolve_name(now, &name) {
            Ok(Some(r)) => {
                if r.key == sim.keys[claimers[c] as usize] {
                    right += 1;
                    ms.push(0.0);
                }
            }
            Ok(None) => *pending.entry((who, name)).or_default() += 1,
            Err(_) => {}
        }
        sim.collect(who);
    }
    let deadline = sim.now_ns + 30_000_000_000;
    while !pending.is_empty() && sim.now_ns < deadline {
        sim.run_for(Duration::from_millis(10));
        for (who, at, e) in drain(sim) {
            let Event::NameResolved { name, result } = e else {
                continue;
            };
            let Some(times) = pending.remove(&(who, name.clone())) else {
                continue;
            };
            let c: usize = name
                .strip_prefix("node-")
                .and_then(|x| x.parse().ok())
                .unwrap_or(usize::MAX);
            let want = claimers.get(c).map(|c| sim.keys[*c as usize]);
            if result.is_some_and(|r| Some(r.key) == want) {
                right += times;
                for _ in 0..times {
                    ms.push((at - t0) as f64 / 1e6);
                }
            }
        }
    }
    Round {
        resolutions: spec.resolutions,
        resolved_fraction: right as f64 / spec.resolutions.max(1) as f64,
        resolve_ms: Summary::of(ms),
        requests_per_resolution: (requests(sim) - r0) as f64 / spec.resolutions.max(1) as f64,
    }
}
