//! Lookups on a sparse graph whose nodes are mostly leaves: the keyspace ring (see
//! `routing::ring`) is sorted from peer knowledge alone, and every node resolves every other on
//! the first try.

use ed25519_dalek::SigningKey;
use routing::record::NodeRecord;
use routing::testnet::Net;
use routing::wire::{self, RoutedBody, RoutedHeader, kind};
use routing::{Event, Key, RouterConfig, address, dht};
use std::collections::BTreeMap;
use std::time::Duration;

/// A hub, `arms` sub-hubs linked to it, and `leaves` leaves on each sub-hub.
fn star_of_stars(arms: usize, leaves: usize) -> (usize, Vec<(usize, usize)>) {
    let mut edges = Vec::new();
    let mut n = 1;
    for _ in 0..arms {
        let hub = n;
        edges.push((0, hub));
        n += 1;
        for _ in 0..leaves {
            edges.push((hub, n));
            n += 1;
        }
    }
    (n, edges)
}

/// A star of stars whose tree has formed and whose ring has had 20 s of stabilisation rounds
/// (1 s, then doubling).
fn settled_star(arms: usize, leaves: usize, seed: u64) -> (usize, Vec<(usize, usize)>, Net) {
    let (n, edges) = star_of_stars(arms, leaves);
    let mut net = Net::new(n, &edges, RouterConfig::default(), seed);
    net.converge(Duration::from_secs(30))
        .expect("the tree converges");
    net.run_for(Duration::from_secs(20));
    (n, edges, net)
}

/// Node `i`'s own record, signed now with a sequence number above any it used.
fn fresh_record(net: &Net, i: usize) -> NodeRecord {
    let sk = SigningKey::from_bytes(&net.nodes[i].secret);
    NodeRecord::new(
        &sk,
        u64::MAX / 2,
        &net.nodes[i].router.root(),
        net.nodes[i].router.place().clone(),
    )
}

/// A direct peer of node `x`.
fn a_peer_of(edges: &[(usize, usize)], x: usize) -> usize {
    edges
        .iter()
        .find_map(|&(a, b)| (a == x).then_some(b).or((b == x).then_some(a)))
        .expect("a peer")
}

#[test]
fn every_node_resolves_every_other_first_try_on_a_star_of_stars() {
    let (n, _, mut net) = settled_star(8, 12, 19);

    // The ring is sorted: each node's nearest neighbours are the nearest ids.
    let mut ids: Vec<(u128, Key)> = net
        .nodes
        .iter()
        .map(|x| (dht::id_of(&x.key), x.key))
        .collect();
    ids.sort();
    let side = routing::ring::RING_SIDE;
    let mut wrong = 0;
    for (k, (_, key)) in ids.iter().enumerate() {
        let node = net.nodes.iter().find(|x| x.key == *key).expect("a node");
        let (below, above) = node.router.ring_keys();
        let want_above: Vec<Key> = ids[k + 1..].iter().take(side).map(|x| x.1).collect();
        let want_below: Vec<Key> = ids[..k].iter().rev().take(side).map(|x| x.1).collect();
        if below != want_below || above != want_above {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "{wrong} of {n} nodes have a wrong ring");

    // Every source looks up every other node at once; every lookup must find its owner.
    let mut failed = Vec::new();
    for src in 0..n {
        let now = net.now;
        let mut want: BTreeMap<std::net::Ipv6Addr, Key> = BTreeMap::new();
        for dst in (0..n).filter(|d| *d != src) {
            let key = net.nodes[dst].key;
            let addr = address::node_address(&key);
            want.insert(addr, key);
            if let Some(k) = net.nodes[src].router.resolve(now, &addr) {
                assert_eq!(k, key);
                want.remove(&addr);
            }
        }
        net.collect(src);
        net.run_for(Duration::from_secs(5));
        for e in net.nodes[src].events.drain(..) {
            if let Event::Resolved { addr, key } = e
                && let Some(k) = want.remove(&addr)
                && key != Some(k)
            {
                failed.push((src, addr));
            }
        }
        failed.extend(want.keys().map(|a| (src, *a)));
    }
    assert!(
        failed.is_empty(),
        "{} of {} lookups failed, e.g. {:?}",
        failed.len(),
        n * (n - 1),
        &failed[..failed.len().min(5)]
    );
}

/// Whether node `from` sent a `RING` to `to` carrying `about`'s record since capture began.
fn ring_sent(net: &Net, from: usize, to: &Key, about: &Key) -> bool {
    net.captured.iter().any(|(f, _, m)| {
        *f == from
            && RoutedHeader::decode(m).is_ok_and(|h| {
                h.kind == kind::RING
                    && h.dest_key == *to
                    && matches!(RoutedBody::decode(h.kind, &m[h.body_at..]),
                        Ok(RoutedBody::Ring { nodes, .. }) if nodes.iter().any(|r| r.key == *about))
            })
    })
}

#[test]
fn a_ring_message_that_skips_a_nearer_node_is_answered_with_it() {
    let (n, edges, mut net) = settled_star(3, 4, 5);
    // The node with the lowest id; its nearest neighbour above, `a`, and the next, `b`.
    let m = (0..n)
        .min_by_key(|i| dht::id_of(&net.nodes[*i].key))
        .expect("nodes");
    let (_, above) = net.nodes[m].router.ring_keys();
    let (a, b) = (above[0], above[1]);
    let bi = (0..n).find(|i| net.nodes[*i].key == b).expect("b");
    // `b` stabilises towards `m`, as if it took `m` for its nearest neighbour below.
    let rec = fresh_record(&net, bi);
    let ring_msg = |stabilise: bool, sender: NodeRecord| {
        let mut msg = Vec::new();
        wire::encode_routed_header(
            &mut msg,
            kind::RING,
            64,
            &net.nodes[m].key,
            &net.nodes[m].router.place().clone(),
            &b,
            &net.nodes[bi].router.place().clone(),
        );
        RoutedBody::Ring {
            stabilise,
            nodes: vec![sender],
        }
        .encode(&mut msg);
        msg
    };
    let (delegation, first, again) = (
        ring_msg(false, rec.clone()),
        ring_msg(true, rec.clone()),
        ring_msg(true, rec.clone()),
    );
    // The same stabilisation with the sender's record forged (a signature that does not
    // match): no correction, wherever the forged record points.
    let mut bad = rec.clone();
    bad.sig[0] ^= 1;
    let forged = ring_msg(true, bad);
    let peer = a_peer_of(&edges, m);
    net.capture = true;
    let corrections = net.nodes[m].router.stats().ring_corrections;
    // A delegation does not take `m` for anyone's neighbour: nothing to correct.
    net.deliver(peer, m, delegation);
    assert_eq!(net.nodes[m].router.stats().ring_corrections, corrections);
    net.deliver(peer, m, forged);
    assert_eq!(net.nodes[m].router.stats().ring_corrections, corrections);
    net.deliver(peer, m, first);
    assert!(
        ring_sent(&net, m, &b, &a),
        "m did not tell b of a, the node between them"
    );
    assert_eq!(
        net.nodes[m].router.stats().ring_corrections,
        corrections + 1
    );
    // Once per interval per sender: the same message again gets no second correction.
    net.deliver(peer, m, again);
    assert_eq!(
        net.nodes[m].router.stats().ring_corrections,
        corrections + 1
    );
}

#[test]
fn a_lookup_started_while_the_root_changes_finds_its_owner() {
    // Every node drops its root at the same instant (a root filter set live, as a circle
    // policy does) while a lookup starts: answers then carry records signed in the old tree
    // and in the new one, and a lookup that meets its owner only in the other tree must look
    // again once the tree settles, not report it missing.
    let edges = routing::testnet::graphs::ring5_chords_tail2();
    let mut missing = Vec::new();
    for dst in 0..7 {
        for src in 0..7 {
            let mut net = Net::new(7, &edges, RouterConfig::default(), 23);
            net.converge(Duration::from_secs(10)).expect("converges");
            net.run_for(Duration::from_secs(3));
            let old = net.nodes[0].router.root();
            if src == dst || net.nodes[src].key == old || net.nodes[dst].key == old {
                continue;
            }
            let addr = address::node_address(&net.nodes[dst].key);
            let now = net.now;
            for n in net.nodes.iter_mut() {
                let f: routing::RootFilter = std::sync::Arc::new(move |k: &Key| *k != old);
                n.router.set_root_filter(now, Some(f));
            }
            net.nodes[src].router.forget(&addr);
            if net.resolve(src, dst) != Some(net.nodes[dst].key) {
                missing.push((src, dst));
            }
        }
    }
    assert!(missing.is_empty(), "not found: {missing:?}");
}

/// Nodes whose nearest ring neighbours (below and above) are not their true ones.
fn unsorted(net: &Net) -> usize {
    let mut ids: Vec<(u128, usize)> = (0..net.nodes.len())
        .map(|i| (dht::id_of(&net.nodes[i].key), i))
        .collect();
    ids.sort();
    (0..ids.len())
        .filter(|k| {
            let (below, above) = net.nodes[ids[*k].1].router.ring_keys();
            let want_below = k.checked_sub(1).map(|p| net.nodes[ids[p].1].key);
            let want_above = ids.get(k + 1).map(|a| net.nodes[a.1].key);
            below.first().copied() != want_below || above.first().copied() != want_above
        })
        .count()
}

/// Lookups (whose answers also feed the ring), so that the ring must sort by itself.
fn a_lookup(m: &[u8]) -> bool {
    RoutedHeader::decode(m).is_ok_and(|h| matches!(h.kind, kind::FIND | kind::FOUND))
}

/// A lookup, or a `RING` that is a delegation (not a stabilisation).
fn a_lookup_or_delegation(m: &[u8]) -> bool {
    a_lookup(m)
        || RoutedHeader::decode(m).is_ok_and(|h| {
            h.kind == kind::RING
                && matches!(
                    RoutedBody::decode(h.kind, &m[h.body_at..]),
                    Ok(RoutedBody::Ring {
                        stabilise: false,
                        ..
                    })
                )
        })
}

#[test]
fn a_ring_sorts_after_its_first_delegations_were_lost() {
    // While a tree forms, places change and ring messages die on the way (sent to places
    // that are gone). Here every delegation of the first 10 s is lost, on a random tree of
    // 400 nodes (mostly leaves, like a Barabasi-Albert graph with m = 1). The peers' records
    // among them must be delegated again: without that, 251 nodes stayed unsorted for good.
    let n = 400;
    let edges = routing::testnet::graphs::random(n, 0, 13);
    let mut net = Net::new(n, &edges, RouterConfig::default(), 29);
    net.lose = Some(a_lookup_or_delegation);
    net.converge(Duration::from_secs(30))
        .expect("the tree converges");
    net.run_for(Duration::from_secs(10));
    let cut = unsorted(&net);
    net.lose = Some(a_lookup);
    net.run_for(Duration::from_secs(60));
    assert_eq!(
        unsorted(&net),
        0,
        "of {n} nodes ({cut} unsorted when the losses ended)"
    );
}

#[test]
fn a_lookup_of_oneself_hears_of_two_nodes_above() {
    // An answer names the two nodes nearest the target on each side. When the asker looks
    // itself up, its own record must not take one of the places above.
    let (n, edges, mut net) = settled_star(3, 4, 5);
    let mut ids: Vec<(u128, usize)> = (0..n).map(|i| (dht::id_of(&net.nodes[i].key), i)).collect();
    ids.sort();
    // `t` in the middle of the ring, `a` and `b` the two nodes above it.
    let (t, a, b) = (ids[n / 2].1, ids[n / 2 + 1].1, ids[n / 2 + 2].1);
    let rec = fresh_record(&net, t);
    let mut msg = Vec::new();
    wire::encode_routed_header(
        &mut msg,
        kind::FIND,
        64,
        &net.nodes[a].key,
        &net.nodes[a].router.place().clone(),
        &net.nodes[t].key,
        &net.nodes[t].router.place().clone(),
    );
    RoutedBody::Find {
        nonce: 7,
        target: dht::id_of(&net.nodes[t].key),
        requester: rec,
    }
    .encode(&mut msg);
    let peer = a_peer_of(&edges, a);
    net.capture = true;
    net.deliver(peer, a, msg);
    let answer: Vec<Key> = net
        .captured
        .iter()
        .filter(|(f, _, _)| *f == a)
        .find_map(|(_, _, m)| {
            let h = RoutedHeader::decode(m).ok()?;
            match RoutedBody::decode(h.kind, &m[h.body_at..]) {
                Ok(RoutedBody::Found { nonce: 7, nodes }) => {
                    Some(nodes.iter().map(|r| r.key).collect())
                }
                _ => None,
            }
        })
        .expect("a answered");
    assert!(
        !answer.contains(&net.nodes[t].key),
        "the asker's own record"
    );
    assert!(
        answer.contains(&net.nodes[b].key),
        "the second node above the asker is missing"
    );
}

#[test]
fn a_node_looks_itself_up_starting_away_from_its_ring() {
    // On sparse graphs the ring can form in stretches apart: a sparse chain of nodes sorted
    // among themselves, passing over the nodes between them (docs/SIMULATIONS.md, "Stretches
    // of the ring that formed apart"). A node in such a chain holds the chain as its ring
    // and nearest contacts, and they answer with each other: a self-lookup started from them
    // never meets the nodes between. So a node's periodic lookup of itself starts from
    // contacts picked at random away from its ring (and from its direct peers): the first
    // request of its next one goes to no ring neighbour that is not also a peer. (Before,
    // node 0's went to a ring neighbour.)
    let (n, edges, mut net) = settled_star(3, 8, 41);
    net.capture = true;
    net.run_for(Duration::from_secs(70));
    let mut checked = 0;
    for x in 0..n {
        let key = net.nodes[x].key;
        let own = dht::id_of(&key);
        let (below, above) = net.nodes[x].router.ring_keys();
        let peers: Vec<Key> = edges
            .iter()
            .filter_map(|&(a, b)| {
                (a == x)
                    .then_some(b)
                    .or((b == x).then_some(a))
                    .map(|p| net.nodes[p].key)
            })
            .collect();
        // The node asked first by x's next self-lookup.
        let asked: Vec<Key> = net
            .captured
            .iter()
            .filter(|(f, _, _)| *f == x)
            .filter_map(|(_, _, m)| {
                let h = RoutedHeader::decode(m).ok()?;
                (h.src_key == key).then_some(())?;
                match RoutedBody::decode(h.kind, &m[h.body_at..]) {
                    Ok(RoutedBody::Find { target, .. }) if target == own => Some(h.dest_key),
                    _ => None,
                }
            })
            .take(1)
            .collect();
        for k in asked {
            checked += 1;
            assert!(
                !(below.contains(&k) || above.contains(&k)) || peers.contains(&k),
                "node {x} began its self-lookup with a ring neighbour"
            );
        }
    }
    assert!(checked >= n / 2, "{checked} self-lookups seen");
}
