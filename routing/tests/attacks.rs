//! Attacks on the routing core, on a virtual network: forged and replayed tree records, a false
//! root, root grinding against configured root eligibility, and lookup answers for an address
//! the answering key does not own.

use ed25519_dalek::SigningKey;
use routing::record::{Consent, NodeRecord, TreeRecord, sign_as_parent};
use routing::testnet::{Net, graphs};
use routing::wire::{self, PeerMsg, RoutedBody, RoutedHeader, kind};
use routing::{Drop, Event, Handled, PeerId, RouterConfig};
use std::collections::BTreeSet;
use std::time::Duration;

fn ready(cfg: RouterConfig) -> Net {
    let mut net = Net::new(7, &graphs::ring5_chords_tail2(), cfg, 23);
    net.capture = true;
    net.converge(Duration::from_secs(10)).expect("converges");
    net.run_for(Duration::from_secs(3));
    net
}

/// The records of the first captured announcement from `from` to `to` containing a root record.
fn captured_root_announce(net: &Net, from: usize, to: usize) -> Vec<u8> {
    net.captured
        .iter()
        .find(|(f, t, m)| {
            *f == from
                && *t == to
                && m[0] == wire::kind::ANNOUNCE
                && matches!(PeerMsg::decode(m), Ok(PeerMsg::Announce { ref records, .. })
                    if records.iter().any(|r| r.is_root()))
        })
        .map(|(_, _, m)| m.clone())
        .expect("an announcement was captured")
}

fn handle(net: &mut Net, from: usize, to: usize, mut msg: Vec<u8>) -> Handled {
    let now = net.now;
    net.nodes[to]
        .router
        .handle(now, PeerId(from as u64), &mut msg)
}

#[test]
fn a_record_with_a_bad_signature_is_rejected() {
    let mut net = ready(RouterConfig::default());
    let coords = net.nodes[2].router.coords().clone();
    // A genuine root record with a newer sequence number than the root signed: its
    // signatures no longer match.
    let PeerMsg::Announce { records, .. } =
        PeerMsg::decode(&captured_root_announce(&net, 1, 2)).expect("decodes")
    else {
        unreachable!()
    };
    let mut rec = records
        .into_iter()
        .find(|r| r.is_root())
        .expect("root record");
    rec.seq += 1_000_000;
    let msg = PeerMsg::Announce {
        cost: 0,
        digest: 0,
        records: vec![rec],
        node: None,
    }
    .encode();
    assert_eq!(
        handle(&mut net, 1, 2, msg),
        Handled::Dropped(Drop::BadSignature)
    );
    assert_eq!(net.nodes[2].router.coords(), &coords);
}

#[test]
fn a_forged_parent_is_rejected() {
    let mut net = ready(RouterConfig::default());
    // Node 5 claims to be a child of the root (node 0), which it is not linked to and which
    // never signed it: it signs the parent half itself.
    let attacker = SigningKey::from_bytes(&net.nodes[5].secret);
    let root_key = net.nodes[0].key;
    let consent = Consent {
        port: 1,
        root: root_key,
        epoch: 9_999_999,
    };
    let fake_psig = sign_as_parent(&attacker, &net.nodes[5].key, 9_999_999, &consent);
    let forged = TreeRecord::new(&attacker, root_key, 9_999_999, consent, fake_psig);
    assert!(!forged.verify());
    let msg = PeerMsg::Announce {
        cost: 0,
        digest: 0,
        records: vec![forged],
        node: None,
    }
    .encode();
    assert_eq!(
        handle(&mut net, 5, 6, msg),
        Handled::Dropped(Drop::BadSignature)
    );
    // Node 6 still sees 5 where it is.
    let five = net.nodes[6]
        .router
        .peer_info()
        .find(|p| p.0 == PeerId(5))
        .and_then(|p| p.2.cloned());
    assert_eq!(five.as_ref(), Some(net.nodes[5].router.coords()));
}

#[test]
fn a_replayed_old_sequence_number_is_rejected() {
    let mut net = ready(RouterConfig::default());
    let old = captured_root_announce(&net, 1, 2);
    net.run_for(Duration::from_secs(10)); // the root re-signs every 2 s
    let before = net.nodes[2]
        .router
        .stats()
        .dropped
        .get("stale_or_replayed")
        .copied()
        .unwrap_or(0);
    let coords = net.nodes[2].router.coords().clone();
    handle(&mut net, 1, 2, old);
    let after = net.nodes[2]
        .router
        .stats()
        .dropped
        .get("stale_or_replayed")
        .copied()
        .unwrap_or(0);
    assert!(after > before, "the old root record was not refused");
    net.run_for(Duration::from_secs(8)); // past the root timeout: a believed replay would show
    assert_eq!(net.nodes[2].router.root(), net.nodes[0].key);
    assert_eq!(net.nodes[2].router.coords(), &coords);
}

#[test]
fn a_false_claim_of_a_lower_root_is_rejected() {
    let mut net = ready(RouterConfig::default());
    // A key lower than the real root's, which the attacker (node 6) does not hold.
    let low = (0u64..)
        .map(|i| {
            let mut s = [7u8; 32];
            s[..8].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&s).verifying_key().to_bytes()
        })
        .find(|k| *k < net.nodes[0].key)
        .expect("a lower key");
    let attacker = SigningKey::from_bytes(&net.nodes[6].secret);
    // A root record for `low`, signed by the attacker.
    let mut fake = TreeRecord::root(&attacker, 9_999_999);
    fake.node = low;
    fake.parent = low;
    assert!(!fake.verify());
    let msg = PeerMsg::Announce {
        cost: 0,
        digest: 0,
        records: vec![fake],
        node: None,
    }
    .encode();
    assert_eq!(
        handle(&mut net, 6, 5, msg),
        Handled::Dropped(Drop::BadSignature)
    );
    net.run_for(Duration::from_secs(3));
    assert!(
        net.nodes
            .iter()
            .all(|n| n.router.root() == net.nodes[0].key)
    );
}

#[test]
fn a_ground_lower_key_cannot_become_root_where_roots_are_configured() {
    // Without a policy, the lowest key is root: that is what grinding exploits.
    let net = ready(RouterConfig::default());
    assert!(
        net.nodes
            .iter()
            .all(|n| n.router.root() == net.nodes[0].key)
    );
    // With eligible roots configured (here: every key but node 0's), node 0 — holding the
    // lowest key, as an attacker who ground one would — is ignored as root everywhere.
    let keys: Vec<_> = routing::testnet::secrets(7, 23)
        .iter()
        .map(|s| SigningKey::from_bytes(s).verifying_key().to_bytes())
        .collect();
    let eligible: BTreeSet<_> = keys[1..].iter().copied().collect();
    let cfg = RouterConfig {
        eligible_roots: Some(eligible),
        ..RouterConfig::default()
    };
    let mut net = Net::new(7, &graphs::ring5_chords_tail2(), cfg, 23);
    net.run_for(Duration::from_secs(3));
    let root = net.nodes[1].key;
    assert!(
        net.nodes.iter().all(|n| n.router.root() == root),
        "the eligible root leads"
    );
    assert!(net.converged());
    net.run_for(Duration::from_secs(3));
    assert!(net.send(6, 2, b"still routes").is_some());
}

#[test]
fn a_lookup_answer_for_an_address_not_derived_from_the_key_is_refused() {
    let mut net = ready(RouterConfig::default());
    net.captured.clear();
    // Node 3 looks up node 6's address; node 5 (the attacker) answers first, offering itself,
    // and a record of node 6's key with node 5's coordinates that it signed itself.
    let target = routing::address::node_address(&net.nodes[6].key);
    let now = net.now;
    assert!(net.nodes[3].router.resolve(now, &target).is_none());
    net.collect(3);
    let (nonce, to_key) = net
        .captured
        .iter()
        .filter(|(f, _, m)| *f == 3 && m[0] == kind::FIND)
        .find_map(|(_, _, m)| {
            let h = RoutedHeader::decode(m).ok()?;
            match RoutedBody::decode(h.kind, &m[h.body_at..]).ok()? {
                RoutedBody::Find { nonce, .. } => Some((nonce, h.dest_key)),
                _ => None,
            }
        })
        .expect("node 3 sent a lookup request");
    let attacker = SigningKey::from_bytes(&net.nodes[5].secret);
    let own = NodeRecord::new(
        &attacker,
        1,
        &net.nodes[5].router.root(),
        net.nodes[5].router.coords().clone().into(),
    );
    let mut forged = NodeRecord::new(
        &attacker,
        1,
        &net.nodes[5].router.root(),
        net.nodes[5].router.coords().clone().into(),
    );
    forged.key = net.nodes[6].key; // claims to be node 6, but signed by node 5
    let mut msg = Vec::new();
    wire::encode_routed_header(
        &mut msg,
        kind::FOUND,
        64,
        &net.nodes[3].key,
        &net.nodes[3].router.coords().clone().into(),
        &to_key, // poses as the node asked, with the right nonce
        &net.nodes[5].router.coords().clone().into(),
    );
    RoutedBody::Found {
        nonce,
        nodes: vec![own, forged],
    }
    .encode(&mut msg);
    // Delivered to node 3 by its neighbour 1, as if routed.
    handle(&mut net, 1, 3, msg);
    net.collect(3);
    net.run_for(Duration::from_secs(3));
    let resolved: Vec<_> = net.nodes[3]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Resolved { addr, key } if *addr == target => Some(*key),
            _ => None,
        })
        .collect();
    assert_eq!(
        resolved,
        vec![Some(net.nodes[6].key)],
        "resolved to the real owner only"
    );
    assert!(
        net.nodes[3]
            .router
            .routes()
            .all(|(a, r)| a != target || r.key == net.nodes[6].key)
    );
}

/// Where node 3 routes node 6 now.
fn route_3_to_6(net: &Net) -> Option<routing::Coords> {
    let target = routing::address::node_address(&net.nodes[6].key);
    net.nodes[3]
        .router
        .routes()
        .find(|(a, _)| *a == target)
        .map(|(_, r)| r.coords)
}

/// A `NOTIFY` to node 3 naming node 6 as its source, carrying `record`, as node 1 passes it on.
fn notify_6_to_3(net: &Net, record: NodeRecord) -> Vec<u8> {
    let mut msg = Vec::new();
    wire::encode_routed_header(
        &mut msg,
        kind::NOTIFY,
        64,
        &net.nodes[3].key,
        &net.nodes[3].router.coords().clone().into(),
        &net.nodes[6].key,
        &net.nodes[1].router.coords().clone().into(),
    );
    RoutedBody::Notify { record }.encode(&mut msg);
    msg
}

#[test]
fn an_old_record_cannot_move_a_destination_back() {
    let mut net = ready(RouterConfig::default());
    // Node 3 routes to node 6.
    assert!(net.send(3, 6, b"first").is_some());
    let place = route_3_to_6;
    let before = place(&net).expect("a route to node 6");
    // A genuine but old record of node 6 (a lower sequence number than its current one, at a
    // place it no longer is), sent to node 3 as a NOTIFY that names node 6 as its source.
    let six = SigningKey::from_bytes(&net.nodes[6].secret);
    let old = NodeRecord::new(
        &six,
        999_999,
        &net.nodes[1].router.root(),
        net.nodes[1].router.coords().clone().into(),
    );
    let msg = notify_6_to_3(&net, old);
    handle(&mut net, 1, 3, msg);
    assert_eq!(place(&net), Some(before), "the old record moved node 6");
    assert!(net.send(3, 6, b"still there").is_some());
}

#[test]
fn a_record_signed_in_another_tree_is_not_taken() {
    let mut net = ready(RouterConfig::default());
    assert!(net.send(3, 6, b"first").is_some());
    let place = route_3_to_6;
    let before = place(&net).expect("a route to node 6");
    // Node 6's own, newest record, but of a place in a tree rooted at node 6 itself (as it
    // signed them before it joined the network's tree): its coordinates lead nowhere here.
    let six = SigningKey::from_bytes(&net.nodes[6].secret);
    let stray = NodeRecord::new(
        &six,
        u64::MAX / 2,
        &net.nodes[6].key,
        net.nodes[1].router.coords().clone().into(),
    );
    let msg = notify_6_to_3(&net, stray);
    let ignored = net.nodes[3].router.stats().other_tree;
    handle(&mut net, 1, 3, msg);
    assert_eq!(net.nodes[3].router.stats().other_tree, ignored + 1);
    assert_eq!(
        place(&net),
        Some(before),
        "a place of another tree was taken"
    );
    assert!(net.send(3, 6, b"still there").is_some());
}

#[test]
fn a_root_filter_set_live_drops_a_low_key_root_at_once() {
    // The circle policy's root rules arrive as a filter, and may change while running: the
    // tree leaves a root the filter no longer passes without waiting for its next record.
    let mut net = ready(RouterConfig::default());
    let intruder = net.nodes[0].key;
    assert!(net.nodes.iter().all(|n| n.router.root() == intruder));
    let now = net.now;
    for n in net.nodes.iter_mut().skip(1) {
        let f: routing::RootFilter = std::sync::Arc::new(move |k: &[u8; 32]| *k != intruder);
        n.router.set_root_filter(now, Some(f));
    }
    net.run_for(Duration::from_secs(3));
    let root = net.nodes[1].router.root();
    assert_ne!(root, intruder);
    assert!(
        net.nodes.iter().skip(1).all(|n| n.router.root() == root),
        "everyone but the intruder agrees on another root"
    );
    assert!(net.send(6, 2, b"still routes").is_some());
    // Lifted: the lowest key leads again.
    let now = net.now;
    for n in net.nodes.iter_mut().skip(1) {
        n.router.set_root_filter(now, None);
    }
    net.run_for(Duration::from_secs(3));
    assert!(net.nodes.iter().all(|n| n.router.root() == intruder));
}
