//! A parent's consent expires unless renewed (`routing::consent`): a former child that keeps
//! announcing its old position is refused once the bound has passed, while honest nodes renew
//! and never go stale, through a root change too.

use routing::record::TreeRecord;
use routing::testnet::{Net, graphs};
use routing::wire::{self, PeerMsg, kind};
use routing::{Handled, Key, PeerId, RouterConfig};
use std::collections::BTreeMap;
use std::time::Duration;

fn norm(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The announcement a former child `c` would send to keep its old place: its own old record
/// under `p`, then the newest records of `p`'s chain up to the root, all as seen on the wire.
fn replay_old_place(net: &Net, old: &TreeRecord) -> Vec<u8> {
    let newest: BTreeMap<Key, TreeRecord> = net.captured_records();
    let mut chain = vec![old.clone()];
    let mut at = old.parent;
    while let Some(r) = newest.get(&at) {
        chain.push(r.clone());
        if r.is_root() {
            break;
        }
        at = r.parent;
    }
    assert!(chain.last().is_some_and(|r| r.is_root()), "a whole chain");
    let digest = wire::chain_digest(&chain);
    chain.reverse();
    PeerMsg::Announce {
        cost: 0,
        digest,
        records: chain,
        node: None,
    }
    .encode()
}

/// A TRAFFIC message arriving at `x` from `via`, addressed to the coordinates `at` (and a key
/// nobody has): where `x` sends it says whom it believes sits there.
fn aim_at(net: &mut Net, x: usize, via: usize, at: &routing::Coords) -> Handled {
    let mut msg = Vec::new();
    let src = net.nodes[via].key;
    let src_place = net.nodes[via].router.place().clone();
    wire::encode_routed_header(
        &mut msg,
        kind::TRAFFIC,
        64,
        &[0x55; 32],
        &at.clone().into(),
        &src,
        &src_place,
    );
    msg.extend_from_slice(b"to the old place");
    let now = net.now;
    net.nodes[x]
        .router
        .handle(now, PeerId(via as u64), &mut msg)
}

fn sees(net: &Net, x: usize, c: usize) -> Option<routing::Coords> {
    net.nodes[x]
        .router
        .peer_info()
        .find(|p| p.0 == PeerId(c as u64))
        .and_then(|p| p.2.cloned())
}

/// Node `c` loses its link to its parent `p`, and from then on (instead of re-attaching)
/// announces its old record to its other peer `x`, with fresh copies of its old parent's
/// chain. `x` believes it (and sends it what is meant for that place) until the consent is
/// `consent_epochs` root refreshes old, then refuses it.
#[test]
fn a_former_child_is_refused_after_the_bound() {
    let cfg = RouterConfig::default();
    let bound = cfg.root_refresh * cfg.consent_epochs as u32;
    let mut net = Net::new(7, &graphs::ring5_chords_tail2(), cfg, 23);
    net.capture = true;
    net.converge(Duration::from_secs(10)).expect("converges");
    net.run_for(Duration::from_secs(3));
    // A node `c` under a parent `p`, with another peer `x` (not its child) to lie to.
    let key_of: BTreeMap<Key, usize> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.key, i))
        .collect();
    let (c, p, x, via) = (1..net.nodes.len())
        .find_map(|c| {
            let p = key_of[&net.nodes[c].router.parent_key()];
            let peers: Vec<usize> = net
                .links
                .keys()
                .filter_map(|&(a, b)| (a == c).then_some(b).or((b == c).then_some(a)))
                .collect();
            let x = *peers
                .iter()
                .find(|&&x| x != p && key_of[&net.nodes[x].router.parent_key()] != c)?;
            // A second peer of `x`, to hand it messages from.
            let via = net.links.keys().find_map(|&(a, b)| {
                let o = if a == x {
                    b
                } else if b == x {
                    a
                } else {
                    return None;
                };
                (o != c).then_some(o)
            })?;
            Some((c, p, x, via))
        })
        .expect("a child with another peer");
    let old_place = net.nodes[c].router.coords().clone();
    let old = net.captured_records()[&net.nodes[c].key].clone();
    assert_eq!(old.parent, net.nodes[p].key);
    assert_eq!(sees(&net, x, c).as_ref(), Some(&old_place));
    assert_eq!(
        aim_at(&mut net, x, via, &old_place),
        Handled::Forward(PeerId(c as u64))
    );

    // The link to the parent goes; the honest `c` is silenced towards `x` (its moves never
    // arrive), and the test speaks for it instead.
    let cut_at = net.now;
    net.disconnect(p, c);
    net.cut.insert(norm(c, x));
    let mut refused_after = None;
    while net.now < cut_at + bound + Duration::from_secs(10) {
        net.run_for(Duration::from_secs(2));
        let msg = replay_old_place(&net, &old);
        let now = net.now;
        net.nodes[x]
            .router
            .handle(now, PeerId(c as u64), &mut msg.clone());
        net.collect(x);
        let believed = sees(&net, x, c).as_ref() == Some(&old_place);
        let lured = aim_at(&mut net, x, via, &old_place) == Handled::Forward(PeerId(c as u64));
        assert_eq!(believed, lured, "forwarding follows the check");
        if net.now < cut_at + Duration::from_secs(20) {
            assert!(believed, "within the bound the old consent still counts");
        }
        if !believed && refused_after.is_none() {
            refused_after = Some(net.now - cut_at);
        }
        if refused_after.is_some() {
            assert!(!believed, "once refused, for good");
        }
    }
    let took = refused_after.expect("the old place is refused");
    eprintln!("former child refused {took:?} after losing its parent (bound {bound:?})");
    assert!(
        took <= bound + Duration::from_secs(2),
        "refused within the bound: {took:?}"
    );
}

/// Honest nodes renew their consents: after 10 minutes (5 bounds) no peer anywhere is stale
/// and every pair reaches every other; after the root retires, the new tree's consents are
/// renewed at once and all pairs reach each other again within a second.
#[test]
fn honest_nodes_renew_and_never_go_stale() {
    let n = 24;
    let mut net = Net::new(n, &graphs::random(n, 16, 5), RouterConfig::default(), 5);
    net.converge(Duration::from_secs(10)).expect("converges");
    let quiet_from = net.now;
    let mut worst = 0;
    for _ in 0..60 {
        net.run_for(Duration::from_secs(10));
        let stale: usize = (0..n)
            .map(|i| {
                net.nodes[i]
                    .router
                    .peer_info()
                    .filter(|p| p.2.is_none())
                    .count()
            })
            .sum();
        worst = worst.max(stale);
    }
    assert_eq!(worst, 0, "no peer went stale while everyone renewed");
    assert!(net.converged());
    let renewals: u64 = net
        .nodes
        .iter()
        .map(|n| n.router.stats().consent_renewals)
        .sum();
    let minutes = (net.now - quiet_from).as_secs_f64() / 60.0;
    eprintln!(
        "{renewals} renewals in {minutes:.0} min by {} non-root nodes ({:.2} per node per min)",
        n - 1,
        renewals as f64 / (n - 1) as f64 / minutes
    );
    assert!(
        renewals as f64 >= (n - 1) as f64 * minutes * 0.5,
        "everyone renews"
    );
    for a in 0..n {
        let b = (a + 7) % n;
        assert!(
            net.send(a, b, format!("{a}->{b}").as_bytes()).is_some(),
            "{a} -> {b}"
        );
    }

    // The root says farewell: the new tree forms, consents are given in the new root's tree.
    let now = net.now;
    net.nodes[0].router.retire(now);
    net.collect(0);
    net.kill(0);
    // The nodes still connected to node 1 (the root's loss may cut some off).
    let reach = net.bfs(1);
    let alive: Vec<usize> = (1..n).filter(|&i| reach[i].is_some()).collect();
    assert!(alive.len() > n / 2);
    let start = net.now;
    let mut settled = None;
    while net.now < start + Duration::from_secs(3) {
        net.run_for(Duration::from_millis(10));
        let fresh = alive
            .iter()
            .all(|&i| net.nodes[i].router.peer_info().all(|p| p.2.is_some()));
        if net.converged_among(&alive) && fresh {
            settled = Some(net.now - start);
            break;
        }
    }
    let took = settled.expect("the new tree settles with fresh consents");
    eprintln!("root retired: new tree with fresh consents after {took:?} (virtual)");
    assert!(took <= Duration::from_secs(1));
    for (i, &a) in alive.iter().enumerate() {
        let b = alive[(i + 1) % alive.len()];
        assert!(
            net.send(a, b, format!("{a}->{b}").as_bytes()).is_some(),
            "{a} -> {b} after"
        );
    }
}
