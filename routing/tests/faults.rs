//! Faults on a virtual network: a link on the active path cut, the root stopped, both
//! restored. Times are virtual (link failures are noticed at once here; meshd adds its link
//! timeout on top, which the end-to-end tests measure).

use routing::RouterConfig;
use routing::testnet::{Net, graphs};
use std::time::Duration;

fn ready() -> Net {
    let mut net = Net::new(
        7,
        &graphs::ring5_chords_tail2(),
        RouterConfig::default(),
        11,
    );
    net.converge(Duration::from_secs(10)).expect("converges");
    net.run_for(Duration::from_secs(5));
    net.trace = true;
    net
}

/// Sends every 100 ms until delivered; returns how long that took.
fn time_to_deliver(net: &mut Net, s: usize, d: usize, max: Duration) -> Option<Duration> {
    let start = net.now;
    let mut n = 0;
    while net.now < start + max {
        n += 1;
        if net.send(s, d, format!("probe {n}").as_bytes()).is_some() {
            return Some(net.now - start);
        }
        net.run_for(Duration::from_millis(100));
    }
    None
}

/// Every pair delivers, each retrying (as an application would) until `deadline`.
fn all_pairs_deliver_by(net: &mut Net, alive: &[usize], deadline: std::time::Instant) -> bool {
    for &s in alive {
        for &d in alive {
            if s == d {
                continue;
            }
            let left = deadline.saturating_duration_since(net.now);
            if time_to_deliver(net, s, d, left).is_none() {
                eprintln!("{s} -> {d} still unreachable");
                return false;
            }
        }
    }
    true
}

fn all_pairs_deliver(net: &mut Net, alive: &[usize]) -> bool {
    let deadline = net.now + Duration::from_secs(5);
    all_pairs_deliver_by(net, alive, deadline)
}

#[test]
fn cutting_a_link_on_the_active_path_reroutes() {
    let mut net = ready();
    assert!(net.send(6, 2, b"before").is_some());
    let path = net.traces[&b"before".to_vec()].clone();
    eprintln!("path 6 -> 2 before the cut: {path:?}");
    // Cut the first link of the path that has an alternative (not the tail 6-5-4).
    let i = path
        .iter()
        .position(|n| *n == 4)
        .expect("path crosses node 4");
    let (a, b) = (path[i], path[i + 1]);
    net.disconnect(a, b);
    let took = time_to_deliver(&mut net, 6, 2, Duration::from_secs(5)).expect("rerouted");
    eprintln!("cut {a}-{b}: traffic 6 -> 2 resumed after {took:?} (virtual)");
    assert!(took < Duration::from_secs(5));
    assert!(all_pairs_deliver(&mut net, &[0, 1, 2, 3, 4, 5, 6]));
}

#[test]
fn stopping_the_root_reforms_the_tree_and_restoring_brings_it_back() {
    let mut net = ready();
    let parents =
        |net: &Net| -> Vec<_> { net.nodes.iter().map(|n| n.router.parent_key()).collect() };
    let before = parents(&net);
    let mut paths_before = Vec::new();
    for d in 0..6 {
        assert!(net.send(6, d, format!("b{d}").as_bytes()).is_some());
        paths_before.push(net.traces[format!("b{d}").as_bytes()].clone());
    }
    let root = net.nodes[0].key;
    assert!(net.nodes.iter().all(|n| n.router.root() == root));
    net.kill(0);
    let start = net.now;
    let alive = [1, 2, 3, 4, 5, 6];
    let mut reformed = None;
    while net.now < start + Duration::from_secs(10) {
        net.run_for(Duration::from_millis(100));
        let r = net.nodes[1].router.root();
        if r != root && alive.iter().all(|&i| net.nodes[i].router.root() == r) {
            reformed = Some(net.now - start);
            break;
        }
    }
    let reformed = reformed.expect("tree re-formed within 10 s");
    let deadline = start + Duration::from_secs(10);
    assert!(
        all_pairs_deliver_by(&mut net, &alive, deadline),
        "pairs unreachable 10 s after the root stopped"
    );
    let all = net.now - start;
    eprintln!(
        "root stopped: new root after {reformed:?}, all pairs reach each other after {all:?}"
    );
    assert!(all < Duration::from_secs(10), "{all:?}");

    for (a, b) in [(0, 1), (4, 0), (0, 2)] {
        net.connect(a, b, Duration::from_millis(5));
    }
    net.converge(Duration::from_secs(10))
        .expect("converges again");
    assert!(
        net.nodes.iter().all(|n| n.router.root() == root),
        "the original root is back"
    );
    assert_eq!(before, parents(&net), "every node has its old parent again");
    net.run_for(Duration::from_secs(3));
    assert!(all_pairs_deliver(&mut net, &[0, 1, 2, 3, 4, 5, 6]));
    for (d, before) in paths_before.iter().enumerate() {
        assert!(net.send(6, d, format!("a{d}").as_bytes()).is_some());
        let after = &net.traces[format!("a{d}").as_bytes()];
        assert_eq!(before, after, "path 6 -> {d} is the original one");
    }
}

#[test]
fn a_root_that_stops_on_purpose_is_replaced_at_once() {
    let mut net = ready();
    let root = net.nodes[0].key;
    let now = net.now;
    net.nodes[0].router.retire(now);
    net.collect(0);
    net.run_for(Duration::from_millis(20));
    net.kill(0);
    let start = net.now;
    let alive = [1, 2, 3, 4, 5, 6];
    let mut reformed = None;
    while net.now < start + Duration::from_secs(10) {
        net.run_for(Duration::from_millis(20));
        let r = net.nodes[1].router.root();
        if r != root
            && alive.iter().all(|&i| net.nodes[i].router.root() == r)
            && net.converged_among(&alive)
        {
            reformed = Some(net.now - start);
            break;
        }
    }
    let took = reformed.expect("re-formed");
    eprintln!("root retired: new tree after {took:?} (virtual)");
    assert!(
        took < Duration::from_secs(1),
        "{took:?}: the farewell should spare the timeout"
    );
    let deadline = net.now + Duration::from_secs(5);
    assert!(all_pairs_deliver_by(&mut net, &alive, deadline));
}
