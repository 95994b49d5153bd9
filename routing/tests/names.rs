//! Names on a virtual network: a claim holds, a second claim is refused, bad records are dropped
//! and counted, a released or unrenewed name frees, and a node's policy (pins, trusted
//! authorities) beats first claims.

use ed25519_dalek::SigningKey;
use routing::Event;
use routing::dht::id_of;
use routing::name_record::{Delegation, NameRecord, name_target};
use routing::names::{ClaimState, NameSource, REPLICAS, Resolution};
use routing::testnet::{Net, graphs};
use routing::{Key, RouterConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const UNIX: u64 = 1_800_000_000;

fn net(n: usize) -> Net {
    let cfg = RouterConfig {
        name_ttl: Duration::from_secs(30),
        name_cache: Duration::from_secs(2),
        ..RouterConfig::default()
    };
    let mut net = Net::new(n, &graphs::random(n, n / 2, 5), cfg, 11);
    net.converge(Duration::from_secs(20)).expect("converges");
    net.run_for(Duration::from_secs(5));
    let (now, at) = (net.now, unix(&net));
    for node in &mut net.nodes {
        node.router.set_wall_clock(now, at);
    }
    net
}

/// The date on the virtual network: `UNIX` when it started.
fn unix(net: &Net) -> u64 {
    UNIX + (net.now - net.start).as_secs()
}

/// Runs until node `i` reports the claim's state (other than pending).
fn claim(net: &mut Net, i: usize, name: &str, d: Option<Delegation>) -> ClaimState {
    let now = net.now;
    net.nodes[i]
        .router
        .claim_name(now, name, vec![], d)
        .expect("valid claim");
    net.collect(i);
    for _ in 0..200 {
        net.run_for(Duration::from_millis(20));
        let ev = &mut net.nodes[i].events;
        if let Some(p) = ev
            .iter()
            .position(|e| matches!(e, Event::NameClaimed { name: n, .. } if n == name))
            && let Event::NameClaimed { state, .. } = ev.remove(p)
        {
            return state;
        }
    }
    panic!("no outcome for the claim of {name} at node {i}");
}

/// Resolves `name` at node `i`, running the network until the answer comes.
fn resolve(net: &mut Net, i: usize, name: &str) -> Option<Resolution> {
    let now = net.now;
    if let Some(r) = net.nodes[i].router.resolve_name(now, name).expect("valid") {
        return Some(r);
    }
    net.collect(i);
    for _ in 0..300 {
        net.run_for(Duration::from_millis(20));
        let ev = &mut net.nodes[i].events;
        if let Some(p) = ev.iter().position(
            |e| matches!(e, Event::NameResolved { name: n, .. } if n.eq_ignore_ascii_case(name)),
        ) && let Event::NameResolved { result, .. } = ev.remove(p)
        {
            return result.map(|r| *r);
        }
    }
    panic!("no answer for {name} at node {i}");
}

fn total(net: &Net, f: impl Fn(&routing::Stats) -> u64) -> u64 {
    net.nodes.iter().map(|n| f(n.router.stats())).sum()
}

fn sk(net: &Net, i: usize) -> SigningKey {
    SigningKey::from_bytes(&net.nodes[i].secret)
}

#[test]
fn a_first_claim_holds_resolves_everywhere_and_frees_when_released() {
    let mut net = net(24);
    let (a, b) = (3, 17);
    let ka = net.nodes[a].key;
    assert_eq!(
        claim(&mut net, a, "shop", None),
        ClaimState::Held { storers: REPLICAS }
    );
    for i in 0..net.nodes.len() {
        let r = resolve(&mut net, i, "Shop").expect("resolves");
        assert_eq!((r.key, &r.source), (ka, &NameSource::Claim), "node {i}");
    }
    // A second claim is refused, and says by whom.
    assert_eq!(
        claim(&mut net, b, "shop", None),
        ClaimState::Taken { by: ka }
    );
    assert!(total(&net, |s| s.names_taken) >= REPLICAS as u64);
    // Unknown names resolve to nothing.
    assert_eq!(resolve(&mut net, 5, "nobody"), None);

    // Released: it frees at once, and b gets it on its next try.
    let now = net.now;
    assert!(net.nodes[a].router.release_name(now, "shop"));
    net.collect(a);
    net.run_for(Duration::from_secs(3));
    assert_eq!(resolve(&mut net, 9, "shop"), None);
    assert_eq!(
        claim(&mut net, b, "shop", None),
        ClaimState::Held { storers: REPLICAS }
    );
    assert_eq!(
        resolve(&mut net, 9, "shop").map(|r| r.key),
        Some(net.nodes[b].key)
    );
}

#[test]
fn bad_records_are_dropped_and_counted_by_the_storing_nodes() {
    let mut net = net(16);
    let (a, forger) = (2, 11);
    assert!(matches!(
        claim(&mut net, a, "shop", None),
        ClaimState::Held { .. }
    ));
    let now_unix = unix(&net);
    let ska = sk(&net, a);
    let publish = |net: &mut Net, rec: NameRecord| {
        let now = net.now;
        net.nodes[forger].router.publish_name_record(now, rec);
        net.collect(forger);
        net.run_for(Duration::from_secs(3));
    };
    // A bad signature: a newer record for a's name, pointing elsewhere, not signed by a.
    let mut forged =
        NameRecord::new(&ska, "shop", u64::MAX / 2, now_unix + 20, vec![], None).expect("record");
    forged.services = vec![routing::name_record::Service::Addr(
        "fd00::66".parse().expect("valid"),
    )];
    publish(&mut net, forged);
    assert!(total(&net, |s| s.names_bad_sig) >= REPLICAS as u64);
    // An old sequence number: a's own signature, but older than what is held.
    let old = NameRecord::new(&ska, "shop", 1, now_unix + 20, vec![], None).expect("record");
    publish(&mut net, old);
    assert!(total(&net, |s| s.names_old_seq) >= REPLICAS as u64);
    // A past expiry.
    let expired = NameRecord::new(&ska, "other", 1, now_unix.saturating_sub(60), vec![], None)
        .expect("record");
    publish(&mut net, expired);
    assert!(total(&net, |s| s.names_expired) >= REPLICAS as u64);
    // None of it changed the answer.
    assert_eq!(
        resolve(&mut net, 7, "shop").map(|r| r.key),
        Some(net.nodes[a].key)
    );
    assert_eq!(resolve(&mut net, 7, "other"), None);
}

#[test]
fn a_claim_reaches_every_storing_node_when_the_claimer_is_the_closest() {
    // Our own copy is stored at once: the publication must not end on that answer.
    let mut net = net(24);
    let a = 6;
    let ids: Vec<u128> = net.nodes.iter().map(|n| id_of(&n.key)).collect();
    let name = (0..10_000)
        .map(|i| format!("mine-{i}"))
        .find(|n| {
            let t = name_target(n);
            (0..ids.len()).min_by_key(|&i| ids[i] ^ t) == Some(a)
        })
        .expect("a name whose target is closest to a");
    assert_eq!(
        claim(&mut net, a, &name, None),
        ClaimState::Held { storers: REPLICAS }
    );
}

#[test]
fn a_release_reaches_a_storing_node_that_missed_it_the_first_time() {
    let mut net = net(24);
    let (a, b) = (3, 17);
    let before: Vec<usize> = net.nodes.iter().map(|n| n.router.stored_names()).collect();
    assert!(matches!(
        claim(&mut net, a, "shop", None),
        ClaimState::Held { .. }
    ));
    let storers: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| i != a && net.nodes[i].router.stored_names() > before[i])
        .collect();
    let s = storers[0];
    // s is cut off while a releases; when it comes back it still holds a's claim.
    let links: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| net.links.contains_key(&(i.min(s), i.max(s))))
        .collect();
    for &i in &links {
        net.disconnect(i, s);
    }
    let now = net.now;
    assert!(net.nodes[a].router.release_name(now, "shop"));
    net.collect(a);
    net.run_for(Duration::from_secs(3));
    for &i in &links {
        net.connect(i, s, Duration::from_millis(5));
    }
    assert_eq!(net.nodes[s].router.stored_names(), before[s] + 1);
    // The release is published again, and s frees the name long before the claim's expiry.
    net.run_for(Duration::from_secs(12));
    assert_eq!(net.nodes[s].router.stored_names(), before[s]);
    assert_eq!(
        claim(&mut net, b, "shop", None),
        ClaimState::Held { storers: REPLICAS }
    );
}

#[test]
fn an_unrenewed_name_frees_at_expiry() {
    let mut net = net(16);
    let (a, b) = (4, 12);
    assert!(matches!(
        claim(&mut net, a, "shop", None),
        ClaimState::Held { .. }
    ));
    net.kill(a);
    // The ttl is 30 s: within it the name stays a's, after it b can have it.
    net.run_for(Duration::from_secs(10));
    assert!(matches!(
        claim(&mut net, b, "shop", None),
        ClaimState::Taken { .. }
    ));
    net.run_for(Duration::from_secs(35));
    assert_eq!(
        claim(&mut net, b, "shop", None),
        ClaimState::Held { storers: REPLICAS }
    );
}

#[test]
fn pins_and_trusted_authorities_beat_first_claims() {
    let mut net = net(20);
    let (squatter, owner, pinner, truster, authority) = (1, 8, 14, 17, 5);
    let (ks, ko) = (net.nodes[squatter].key, net.nodes[owner].key);
    assert!(matches!(
        claim(&mut net, squatter, "shop", None),
        ClaimState::Held { .. }
    ));

    // A pin needs no network and wins.
    let pins: BTreeMap<String, Key> = [("shop".to_string(), ko)].into();
    net.nodes[pinner]
        .router
        .set_name_policy(pins, BTreeSet::new());
    let r = resolve(&mut net, pinner, "shop").expect("pinned");
    assert_eq!((r.key, r.source), (ko, NameSource::Pinned));

    // A delegated claim is stored beside the first one; only who trusts the authority takes it.
    let exp = unix(&net) + 3600;
    let d = Delegation::new(&sk(&net, authority), "shop", &ko, exp).expect("delegation");
    assert!(matches!(
        claim(&mut net, owner, "shop", Some(d)),
        ClaimState::Held { .. }
    ));
    let ka = net.nodes[authority].key;
    net.nodes[truster]
        .router
        .set_name_policy(BTreeMap::new(), [ka].into());
    let r = resolve(&mut net, truster, "shop").expect("delegated");
    assert_eq!(
        (r.key, r.source),
        (ko, NameSource::Delegated { authority: ka })
    );
    assert_eq!(resolve(&mut net, 3, "shop").map(|r| r.key), Some(ks));

    // A delegation signed by someone the truster does not trust gains nothing.
    let fake = Delegation::new(&sk(&net, squatter), "shop", &ks, exp).expect("delegation");
    assert!(matches!(
        claim(&mut net, squatter, "shop", Some(fake)),
        ClaimState::Held { .. }
    ));
    let r = resolve(&mut net, truster, "shop").expect("delegated");
    assert_eq!(r.key, ko);
}

#[test]
fn a_flood_of_claims_from_one_key_is_bounded_per_owner_at_every_storing_node() {
    let mut net = net(12);
    let flooder = 6;
    let skf = sk(&net, flooder);
    let exp = unix(&net) + 20;
    for i in 0..400u32 {
        let rec = NameRecord::new(&skf, &format!("spam{i}"), 1, exp, vec![], None).expect("record");
        let now = net.now;
        net.nodes[flooder].router.publish_name_record(now, rec);
        net.collect(flooder);
        if i % 20 == 0 {
            net.run_for(Duration::from_millis(200));
        }
    }
    net.run_for(Duration::from_secs(5));
    let most = net
        .nodes
        .iter()
        .map(|n| n.router.stored_names())
        .max()
        .unwrap_or(0);
    assert!(
        most <= routing::name_store::MAX_PER_OWNER,
        "{most} stored at one node"
    );
    assert!(total(&net, |s| s.names_full) > 0);
    // An honest claim still gets stored.
    assert!(matches!(
        claim(&mut net, 2, "shop", None),
        ClaimState::Held { .. }
    ));
}
