//! Diagnostics printed with `SIM_DEBUG=1`: why a lookup or a packet failed. They read the
//! routers' state from outside (contacts, coordinates) and change nothing.
//!
//! The main tool is an *oracle lookup*: Kademlia's iterative search run over the lookup tables
//! as they stand, every node answering at once with its four contacts closest to the target.
//! If the oracle cannot find a node either, the tables lack the information and no protocol
//! execution could do better; if it can, the protocol's own lookup went wrong.

use crate::engine::Sim;
use routing::{Coords, address, dht::id_of};
use std::collections::BTreeMap;

fn id(sim: &Sim, x: u32) -> u128 {
    id_of(&sim.keys[x as usize])
}

/// The oracle lookup from `from` for `target`: nodes asked, and whether `want` turned up.
pub fn oracle(sim: &Sim, from: u32, target: u128, want: u32) -> (usize, bool, Option<u32>) {
    let mut short: BTreeMap<u128, (u32, bool)> = BTreeMap::new();
    for k in sim.nodes[from as usize].router.contact_keys() {
        if let Some(&x) = sim.index.get(&k) {
            short.insert(id(sim, x) ^ target, (x, false));
        }
    }
    let mut asked = 0;
    while let Some((d, x)) = short
        .iter()
        .take(8)
        .find(|(_, (_, done))| !done)
        .map(|(d, (x, _))| (*d, *x))
    {
        short.insert(d, (x, true));
        asked += 1;
        let mut cs: Vec<u32> = sim.nodes[x as usize]
            .router
            .contact_keys()
            .filter_map(|k| sim.index.get(&k).copied())
            .collect();
        cs.sort_by_key(|c| id(sim, *c) ^ target);
        for c in cs.into_iter().take(4) {
            short.entry(id(sim, c) ^ target).or_insert((c, false));
        }
    }
    let found = short.values().any(|(x, _)| *x == want);
    let closest = short.values().map(|(x, _)| *x).find(|x| *x != want);
    (asked, found, closest)
}

fn known_by(sim: &Sim, n: u32) -> usize {
    let k = sim.keys[n as usize];
    sim.nodes
        .iter()
        .filter(|m| m.router.contact_keys().any(|c| c == k))
        .count()
}

/// Nodes whose coordinates changed since `before`.
pub fn moved(sim: &Sim, before: &[Coords]) {
    let moved = sim
        .nodes
        .iter()
        .zip(before)
        .filter(|(n, c)| n.router.coords() != *c)
        .count();
    eprintln!(
        "moved during the steady window: {moved} of {}",
        sim.nodes.len()
    );
}

/// How many nodes know their nearest neighbour in key space (a healthy Kademlia: all), with
/// an oracle self-lookup for the first few that do not.
pub fn nearest_neighbours(sim: &Sim, adj: &[Vec<u32>]) {
    let ids: Vec<u128> = sim.keys.iter().map(id_of).collect();
    let mut sorted: Vec<(u128, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, x)| (*x, i as u32))
        .collect();
    sorted.sort_unstable();
    let (mut knows, mut shown) = (0, 0);
    for (i, x) in ids.iter().enumerate() {
        let pos = sorted.partition_point(|(y, _)| y < x);
        let nearest = sorted[pos.saturating_sub(8)..(pos + 8).min(sorted.len())]
            .iter()
            .filter(|(_, n)| *n as usize != i)
            .min_by_key(|(y, _)| y ^ x)
            .map(|(_, n)| *n);
        let Some(n) = nearest else { continue };
        if sim.nodes[i]
            .router
            .contact_keys()
            .any(|k| k == sim.keys[n as usize])
        {
            knows += 1;
        } else if shown < 8 {
            shown += 1;
            let (asked, found, _) = oracle(sim, i as u32, *x, n);
            eprintln!(
                "  node {i} (degree {}) does not know its nearest {n} (degree {}, {} common bits); \
                 {n} is known by {} nodes, {i} by {}; oracle self-lookup asked {asked}, found it: {found}; \
                 {i} sent {} lookup requests and got {} answers",
                adj[i].len(),
                adj[n as usize].len(),
                (ids[n as usize] ^ x).leading_zeros(),
                known_by(sim, n),
                known_by(sim, i as u32),
                sim.nodes[i].router.stats().lookup_requests,
                sim.found_received[i],
            );
        }
    }
    eprintln!(
        "nodes that know their nearest neighbour in key space: {knows} of {}",
        sim.nodes.len()
    );
}

/// Every node's id with its index, in id order.
fn sorted_ids(sim: &Sim) -> Vec<(u128, u32)> {
    let mut sorted: Vec<(u128, u32)> = sim
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (id_of(k), i as u32))
        .collect();
    sorted.sort_unstable();
    sorted
}

/// How sorted the keyspace ring is: nodes whose nearest ring entry below (above) is their
/// true predecessor (successor) by id.
pub fn ring_sorted(sim: &Sim) {
    let sorted = sorted_ids(sim);
    let (mut pred_ok, mut succ_ok, mut shown) = (0, 0, 0);
    let mut hist = [0usize; 10];
    for (pos, (_, i)) in sorted.iter().enumerate() {
        let (below, above) = sim.nodes[*i as usize].router.ring_keys();
        let want_pred = pos.checked_sub(1).map(|p| sim.keys[sorted[p].1 as usize]);
        let want_succ = sorted.get(pos + 1).map(|s| sim.keys[s.1 as usize]);
        if want_pred.is_none_or(|k| below.first() == Some(&k)) {
            pred_ok += 1;
        } else if {
            hist[pos * 10 / sorted.len()] += 1;
            shown < 6
        } && let Some(p) = pos.checked_sub(1).map(|p| sorted[p].1 as usize)
        {
            shown += 1;
            let me = sim.keys[*i as usize];
            let (pb, pa) = sim.nodes[p].router.ring_keys();
            let name = |k: Option<&routing::Key>| {
                k.and_then(|k| sorted.iter().position(|(_, x)| sim.keys[*x as usize] == *k))
                    .map(|q| q as i64 - pos as i64)
            };
            eprintln!(
                "  ring pos {pos}: nearest below at {:?} (rel), its pred's nearest above at {:?}, pred holds us: {}, pred below len {}, we know pred anywhere: {}",
                name(below.first()),
                name(pa.first()),
                pa.contains(&me) || pb.contains(&me),
                pb.len(),
                sim.nodes[*i as usize]
                    .router
                    .contact_keys()
                    .any(|k| k == sim.keys[p]),
            );
        }
        if want_succ.is_none_or(|k| above.first() == Some(&k)) {
            succ_ok += 1;
        }
    }
    eprintln!("ring: nodes without their predecessor, by tenth of the id space: {hist:?}");
    // Ring entries whose record names a place its node has left (messages to it are lost).
    let index: BTreeMap<routing::Key, usize> =
        sim.keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let (mut entries, mut stale, mut stale_nearest, mut unsorted_stale_nearest) = (0, 0, 0, 0);
    for (pos, (_, i)) in sorted.iter().enumerate() {
        let (below, above) = sim.nodes[*i as usize].router.ring_records();
        let want_pred = pos.checked_sub(1).map(|p| sim.keys[sorted[p].1 as usize]);
        for (side, list) in [below, above].into_iter().enumerate() {
            for (k, r) in list.iter().enumerate() {
                entries += 1;
                let Some(&x) = index.get(&r.key) else {
                    continue;
                };
                if r.place.at != *sim.nodes[x].router.coords() {
                    stale += 1;
                    if k == 0 {
                        stale_nearest += 1;
                        if side == 0 && want_pred.is_some_and(|w| w != r.key) {
                            unsorted_stale_nearest += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "ring: {stale} of {entries} entries name a place their node left ({stale_nearest} nearest ones; \
         {unsorted_stale_nearest} wrong nearest below)"
    );
    eprintln!(
        "ring: {pred_ok} of {} nodes hold their true predecessor, {succ_ok} their successor",
        sim.nodes.len()
    );
}

/// A lookup from `a` for `b` that found nothing.
pub fn unresolved(sim: &Sim, adj: &[Vec<u32>], a: u32, b: u32, t0: u64) {
    let addr = address::node_address(&sim.keys[b as usize]);
    let target = id(sim, b);
    let (asked, found, closest) = oracle(sim, a, target, b);
    eprintln!(
        "unresolved {a} -> {b} (degrees {} / {}), outcome {:?}; {b} known by {} nodes; oracle asked {asked}, found it: {found}",
        adj[a as usize].len(),
        adj[b as usize].len(),
        sim.resolved
            .get(&(a, addr))
            .map(|(t, k)| ((t - t0) / 1_000_000, k.is_some())),
        known_by(sim, b),
    );
    if let Some(x) = closest {
        let p = (id(sim, x) ^ target).leading_zeros();
        let in_bucket = sim.nodes[x as usize]
            .router
            .contact_keys()
            .filter(|k| (id_of(k) ^ id(sim, x)).leading_zeros() == p)
            .count();
        let exist = (0..sim.nodes.len() as u32)
            .filter(|c| *c != b && (id(sim, *c) ^ target).leading_zeros() > p)
            .count();
        eprintln!(
            "   closest reached {x}: {p} common bits with the target; its bucket {p} holds {in_bucket}; \
             other nodes closer to the target: {exist}"
        );
    }
}

/// A packet from `a` to `b` that did not arrive although the lookup succeeded.
pub fn undelivered(sim: &Sim, a: u32, b: u32, t0: u64) {
    let key = sim.keys[b as usize];
    let addr = address::node_address(&key);
    let known = sim.nodes[a as usize]
        .router
        .routes()
        .find(|(x, _)| *x == addr)
        .map(|(_, r)| r.coords);
    eprintln!(
        "undelivered {a} -> {b} (resolved at {:?} ms): known place {:?}, actual {:?}, source at {:?}",
        sim.resolved
            .get(&(a, addr))
            .map(|(t, _)| (t - t0) / 1_000_000),
        known,
        sim.nodes[b as usize].router.coords(),
        sim.nodes[a as usize].router.coords(),
    );
}

/// Prints the ring of the nodes at sorted positions `lo..hi` (`SIM_RING_DUMP=lo..hi`): each
/// node's entries below and above as positions relative to its own, its degree and its peers'
/// relative positions (within 50).
pub fn ring_dump(sim: &Sim, adj: &[Vec<u32>], lo: usize, hi: usize) {
    let sorted = sorted_ids(sim);
    let pos_of: BTreeMap<routing::Key, i64> = sorted
        .iter()
        .enumerate()
        .map(|(p, (_, i))| (sim.keys[*i as usize], p as i64))
        .collect();
    eprintln!("ring dump at {:.1} s", sim.secs());
    for (pos, (_, i)) in sorted.iter().enumerate().take(hi).skip(lo) {
        let i = *i as usize;
        let (below, above) = sim.nodes[i].router.ring_keys();
        let rel = |ks: &[routing::Key]| -> Vec<i64> {
            ks.iter().map(|k| pos_of[k] - pos as i64).collect()
        };
        let peers: Vec<i64> = adj[i]
            .iter()
            .map(|p| pos_of[&sim.keys[*p as usize]] - pos as i64)
            .filter(|d| d.abs() <= 50)
            .collect();
        eprintln!(
            "  {pos} (node {i}, degree {}): below {:?} above {:?} near peers {:?}",
            adj[i].len(),
            rel(&below),
            rel(&above),
            peers
        );
    }
}
