//! Places (a node's coordinates plus positions around it, signed in its node record): they
//! shorten paths, and a peer lying about its neighbours cannot pull traffic its way unless it
//! is real progress.

use ed25519_dalek::SigningKey;
use routing::coords::{Coords, Near, Place};
use routing::record::NodeRecord;
use routing::testnet::{Net, graphs};
use routing::wire::PeerMsg;
use routing::{PeerId, RouterConfig};
use std::time::Duration;

fn net(cfg: RouterConfig, seed: u64) -> Net {
    let mut net = Net::new(60, &graphs::random(60, 45, seed), cfg, seed);
    net.converge(Duration::from_secs(20)).expect("converges");
    net.run_for(Duration::from_secs(3));
    net
}

/// Sum of hops over the same pairs, every pair delivered.
fn total_hops(net: &mut Net, pairs: &[(usize, usize)]) -> u32 {
    let mut sum = 0;
    for &(s, d) in pairs {
        let hops = net
            .send(s, d, format!("{s}->{d}").as_bytes())
            .unwrap_or_else(|| panic!("{s} -> {d} not delivered"));
        sum += hops as u32;
    }
    sum
}

#[test]
fn places_shorten_paths_and_lose_nothing() {
    let pairs: Vec<(usize, usize)> = (0..60).map(|i| (i, (i * 37 + 11) % 60)).collect();
    let pairs: Vec<_> = pairs.into_iter().filter(|(a, b)| a != b).collect();
    let mut with_sum = 0;
    let mut without_sum = 0;
    let mut shortest = 0;
    for seed in [1, 2, 3] {
        let plain = RouterConfig {
            near: 0,
            near2: 0,
            ..RouterConfig::default()
        };
        let mut without = net(plain, seed);
        let mut with = net(RouterConfig::default(), seed);
        assert!(
            with.nodes.iter().any(|n| n.router.place().near.len() > 1),
            "some node names positions around it"
        );
        without_sum += total_hops(&mut without, &pairs);
        with_sum += total_hops(&mut with, &pairs);
        shortest += pairs
            .iter()
            .map(|&(s, d)| with.bfs(s)[d].expect("connected"))
            .sum::<u32>();
    }
    eprintln!("hops: shortest {shortest}, with places {with_sum}, tree only {without_sum}");
    assert!(with_sum >= shortest);
    assert!(
        with_sum < without_sum,
        "places must shorten paths: {with_sum} vs {without_sum}"
    );
}

#[test]
fn a_peer_lying_about_its_neighbours_wins_only_among_real_progress() {
    let mut net = net(RouterConfig::default(), 7);
    net.trace = true;
    let coords: Vec<Coords> = net
        .nodes
        .iter()
        .map(|n| n.router.coords().clone())
        .collect();
    let n = net.nodes.len();
    // A source Y, a liar X among its peers (not its child: children off the way are never
    // even considered), a destination D three hops away or more, such that X is no nearer D
    // than Y by the tree (so X is no progress), and that no peer of Y is next to (so that
    // the lie, "D is my neighbour", would beat every honest peer if it were believed).
    let mut case = None;
    'find: for y in 0..n {
        let peers: Vec<usize> = net.nodes[y]
            .router
            .peer_info()
            .map(|(id, ..)| id.0 as usize)
            .collect();
        let hops = net.bfs(y);
        for &x in &peers {
            for d in 0..n {
                // Far enough that no honest peer is one hop from it.
                if d == x || hops[d].is_none_or(|h| h < 3) {
                    continue;
                }
                let child = coords[x].depth() == coords[y].depth() + 1
                    && coords[x].0.starts_with(&coords[y].0);
                if !child
                    && coords[x].dist(&coords[d].0) >= coords[y].dist(&coords[d].0)
                    && net.send(y, d, b"probe").is_some()
                {
                    case = Some((y, x, d));
                    break 'find;
                }
            }
        }
    }
    let (y, x, d) = case.expect("such a triple exists");
    // X signs a record claiming D's position as its direct neighbour.
    let liar = SigningKey::from_bytes(&net.nodes[x].secret);
    let forged = NodeRecord::new(
        &liar,
        u64::MAX / 2,
        &net.nodes[x].router.root(),
        Place {
            at: coords[x].clone(),
            near: vec![Near {
                hops: 1,
                at: coords[d].clone(),
            }],
        },
    );
    let digest = {
        // The digest of X's current chain, as X announces it: take it from a full
        // announcement X sends when asked.
        let mut m = PeerMsg::AnnounceReq.encode();
        let now = net.now;
        net.nodes[x].router.handle(now, PeerId(y as u64), &mut m);
        let mut digest = None;
        while let Some((to, msg)) = net.nodes[x].router.poll_transmit() {
            if to == PeerId(y as u64)
                && let Ok(PeerMsg::Announce { digest: dg, .. }) = PeerMsg::decode(&msg)
            {
                digest = Some(dg);
            }
        }
        digest.expect("X answered")
    };
    let msg = PeerMsg::Announce {
        cost: 0,
        digest,
        records: vec![],
        node: Some(forged),
    }
    .encode();
    net.deliver(x, y, msg);
    net.run_for(Duration::from_millis(500));
    for i in 0..5 {
        let payload = format!("after the lie {i}");
        assert!(net.send(y, d, payload.as_bytes()).is_some(), "delivered");
        let path = &net.traces[payload.as_bytes()];
        assert_ne!(path[1], x, "the lie pulled traffic its way: {path:?}");
    }
}

/// Two siblings linked to each other name each other in their places. When that link goes
/// down, the place one holds of the other still names its own position: it must not find
/// itself nearest and drop its own traffic until a newer place arrives, but send it through
/// their parent at once (before the fix, a reply across a broken direct path was lost for up
/// to two seconds, until a lookup brought the newer record).
#[test]
fn a_sibling_whose_direct_link_broke_is_reached_through_the_parent_at_once() {
    for seed in 0..8 {
        let mut net = Net::new(3, &[(0, 1), (0, 2), (1, 2)], RouterConfig::default(), seed);
        net.converge(Duration::from_secs(20)).expect("converges");
        net.run_for(Duration::from_secs(2));
        let root = (0..3)
            .find(|&i| net.nodes[i].router.coords().0.is_empty())
            .expect("a root");
        let (x, y) = match root {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        let y_at = net.nodes[y].router.coords().clone();
        assert!(
            net.nodes[x]
                .router
                .place()
                .near
                .iter()
                .any(|n| n.at == y_at),
            "seed {seed}: x names its sibling y in its place"
        );
        // y learns x's place (which names y), then the direct link breaks.
        assert!(net.send(y, x, b"before").is_some(), "seed {seed}");
        net.disconnect(x, y);
        let key = net.nodes[x].key;
        let now = net.now;
        let mut out = Vec::new();
        let peer = net.nodes[y]
            .router
            .send_traffic(now, &key, b"after", &mut out);
        assert_eq!(
            peer,
            Some(PeerId(root as u64)),
            "seed {seed}: y sends through the parent"
        );
    }
}
