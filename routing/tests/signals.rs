//! Routing signals anyone can send: a forged `BROKEN` costs one rate-limited lookup and no gap
//! in traffic (`routing::broken`), and a peer flooding lookup requests gets bounded service
//! while every other node's lookups succeed (`routing::budget`).

use ed25519_dalek::SigningKey;
use routing::budget::{
    BORROW_DIV, FIND_BURST, FIND_RATE, POOL_BURST_PER_LINK, POOL_MAX_BURST, POOL_MAX_RATE,
    POOL_RATE_PER_LINK,
};
use routing::record::NodeRecord;
use routing::testnet::{Net, graphs};
use routing::wire::{self, RoutedBody};
use routing::{Drop, Handled, Key, PeerId, Place, RouterConfig};
use std::time::Duration;

/// A routed message from `from` (its key and place in the header) to `to` at `to_place`.
fn routed(net: &Net, from: usize, to: &Key, to_place: &Place, body: RoutedBody) -> Vec<u8> {
    let mut msg = Vec::new();
    wire::encode_routed_header(
        &mut msg,
        body.kind(),
        64,
        to,
        to_place,
        &net.nodes[from].key,
        net.nodes[from].router.place(),
    );
    body.encode(&mut msg);
    msg
}

fn inject(net: &mut Net, from: usize, to: usize, mut msg: Vec<u8>) -> Handled {
    let now = net.now;
    let r = net.nodes[to]
        .router
        .handle(now, PeerId(from as u64), &mut msg);
    if let Handled::Forward(p) = r {
        net.enqueue(to, p.0 as usize, msg);
    }
    net.collect(to);
    r
}

/// Node 2 talks to node 6 (at the end of the tail); its peer 1, which is not on the way,
/// forges `BROKEN` notices naming node 6, a hundred every 50 ms. Every packet still arrives,
/// on the path it had, and 2 looks 6 up again at most once a second.
#[test]
fn a_forged_broken_costs_one_lookup_a_second_and_no_gap() {
    let mut net = Net::new(
        7,
        &graphs::ring5_chords_tail2(),
        RouterConfig::default(),
        23,
    );
    net.converge(Duration::from_secs(10)).expect("converges");
    net.run_for(Duration::from_secs(3));
    let (src, dst, forger) = (2, 6, 1);
    assert!(net.send(src, dst, b"first").is_some());
    let dst_key = net.nodes[dst].key;
    let lookups_before = net.nodes[src].router.stats().lookups;
    let start = net.now;
    for i in 0..60u32 {
        let place = net.nodes[src].router.place().clone();
        let src_key = net.nodes[src].key;
        for _ in 0..100 {
            let forged = routed(
                &net,
                forger,
                &src_key,
                &place,
                RoutedBody::Broken { key: dst_key },
            );
            inject(&mut net, forger, src, forged);
        }
        assert!(net.nodes[src].router.knows(&dst_key), "the place is kept");
        let payload = format!("packet {i}");
        let before = net.nodes[dst].delivered.len();
        let now = net.now;
        let mut out = Vec::new();
        let peer = net.nodes[src]
            .router
            .send_traffic(now, &dst_key, payload.as_bytes(), &mut out)
            .expect("sent at once, on the known place");
        net.enqueue(src, peer.0 as usize, out);
        net.run_for(Duration::from_millis(50));
        assert!(
            net.nodes[dst].delivered[before..]
                .iter()
                .any(|d| d.1 == payload.as_bytes()),
            "packet {i} arrived"
        );
    }
    let secs = (net.now - start).as_secs_f64();
    let lookups = net.nodes[src].router.stats().lookups - lookups_before;
    eprintln!("6,000 forged BROKEN over {secs:.1} s: {lookups} lookups, no packet lost");
    assert!(lookups >= 1, "a BROKEN makes the source look again");
    assert!(
        lookups as f64 <= secs + 1.0,
        "{lookups} lookups in {secs} s"
    );
}

/// Node 7 hangs off node 2 and floods it with 20,000 lookup requests for random targets, half
/// for node 2 to answer and half for it to forward, while every node looks up every other.
/// Node 2 serves node 7 at most its budget (its own share, then what the pool lends one link)
/// and every lookup elsewhere succeeds.
#[test]
fn a_peer_flooding_lookups_gets_bounded_service_and_others_are_unaffected() {
    let mut edges = graphs::ring5_chords_tail2();
    let (victim, abuser) = (2, 7);
    edges.push((victim, abuser));
    let mut net = Net::new(8, &edges, RouterConfig::default(), 23);
    net.converge(Duration::from_secs(10)).expect("converges");
    net.run_for(Duration::from_secs(3));
    let sk = SigningKey::from_bytes(&net.nodes[abuser].secret);
    let requester = NodeRecord::new(
        &sk,
        1,
        &net.nodes[abuser].router.root(),
        net.nodes[abuser].router.place().clone(),
    );
    let far = 6; // requests node 2 must forward
    let mut rng = 0x1234_5678_9abc_def0u64;
    let (mut served, mut refused) = (0u64, 0u64);
    let mut resolved = 0;
    let start = net.now;
    let pairs: Vec<(usize, usize)> = (0..7)
        .flat_map(|a| (0..7).filter(move |b| *b != a).map(move |b| (a, b)))
        .collect();
    for (round, &(a, b)) in pairs.iter().enumerate() {
        for i in 0..20_000 / pairs.len() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let to = if i % 2 == 0 { victim } else { far };
            let body = RoutedBody::Find {
                nonce: rng,
                target: u128::from(rng) << 64 | u128::from(round as u64),
                requester: requester.clone(),
            };
            let (key, place) = (net.nodes[to].key, net.nodes[to].router.place().clone());
            let msg = routed(&net, abuser, &key, &place, body);
            match inject(&mut net, abuser, victim, msg) {
                Handled::Dropped(Drop::RateLimited) => refused += 1,
                _ => served += 1,
            }
        }
        // Meanwhile, a lookup between two other nodes (they never looked each other up).
        assert_eq!(net.resolve(a, b), Some(net.nodes[b].key), "{a} finds {b}");
        resolved += 1;
    }
    let secs = (net.now - start).as_secs_f64();
    // Its own share, plus what the pool may lend one link (a quarter of the victim's pool).
    let links = edges
        .iter()
        .filter(|(a, b)| *a == victim || *b == victim)
        .count() as u64;
    let pool_burst = (POOL_BURST_PER_LINK * links).min(POOL_MAX_BURST) as f64;
    let pool_rate = (POOL_RATE_PER_LINK * links).min(POOL_MAX_RATE) as f64;
    let bound = FIND_BURST as f64
        + FIND_RATE as f64 * secs
        + (pool_burst + pool_rate * secs) / BORROW_DIV as f64
        + 1.0;
    eprintln!(
        "{} requests from one peer over {secs:.1} s: {served} served (bound {bound:.0}), \
         {refused} refused; {resolved} other lookups all succeeded",
        served + refused
    );
    assert!(
        served as f64 <= bound,
        "bounded service: {served} > {bound}"
    );
    assert!(refused > 0);
    assert_eq!(
        net.nodes[victim]
            .router
            .stats()
            .dropped
            .get("rate_limited")
            .copied(),
        Some(refused)
    );
}
