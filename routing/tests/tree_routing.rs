//! The routing core on virtual networks: convergence, delivery between every pair, stretch.

use routing::RouterConfig;
use routing::testnet::{Net, graphs};
use std::time::Duration;

/// Converges, then sends from every node to every other; returns mean stretch.
fn all_pairs(net: &mut Net) -> f64 {
    let n = net.nodes.len();
    let (mut sum, mut count, mut worst) = (0.0, 0, 1.0f64);
    for s in 0..n {
        let short = net.bfs(s);
        for (d, sp) in short.iter().enumerate() {
            if s == d {
                continue;
            }
            let hops = net.send(s, d, format!("{s}->{d}").as_bytes());
            let hops = hops.unwrap_or_else(|| panic!("{s} -> {d} not delivered"));
            let sp = sp.expect("connected") as f64;
            let stretch = hops as f64 / sp;
            sum += stretch;
            worst = worst.max(stretch);
            count += 1;
        }
    }
    let mean = sum / count as f64;
    eprintln!(
        "{} nodes: mean stretch {mean:.3}, worst {worst:.2} over {count} pairs",
        n
    );
    mean
}

fn check(name: &str, n: usize, edges: Vec<(usize, usize)>) {
    let mut net = Net::new(n, &edges, RouterConfig::default(), 7);
    let t = net
        .converge(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{name} did not converge"));
    eprintln!("{name}: converged in {t:?}");
    // Let the lookup tables fill (self-lookups at 0.2, 0.4, 0.8, ... s).
    net.run_for(Duration::from_secs(5));
    let stretch = all_pairs(&mut net);
    assert!(stretch < 2.0, "{name}: stretch {stretch}");
}

#[test]
fn line_converges_and_delivers() {
    check("line", 8, graphs::line(8));
}

#[test]
fn ring_converges_and_delivers() {
    check("ring", 10, graphs::ring(10));
}

#[test]
fn grid_converges_and_delivers() {
    check("grid", 16, graphs::grid(4, 4));
}

#[test]
fn random_graphs_converge_and_deliver() {
    for seed in [1, 2, 3] {
        check(&format!("random {seed}"), 24, graphs::random(24, 16, seed));
    }
}

#[test]
fn the_same_inputs_give_the_same_run() {
    let run = || {
        let mut net = Net::new(20, &graphs::random(20, 12, 9), RouterConfig::default(), 31);
        net.run_for(Duration::from_secs(8));
        let hops = net.send(3, 17, b"determinism");
        let state: Vec<_> = net
            .nodes
            .iter()
            .map(|n| {
                let s = n.router.stats();
                (
                    n.router.coords().clone(),
                    n.router.parent_key(),
                    s.control_sent,
                    s.control_bytes,
                    s.lookups,
                )
            })
            .collect();
        (hops, state)
    };
    let (a, b) = (run(), run());
    assert!(a.0.is_some());
    assert_eq!(a, b, "two runs with the same seed differ");
}
