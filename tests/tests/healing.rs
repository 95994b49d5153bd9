//! Healing, measured as a user sees it: a UDP probe every 10 ms across the overlay, echoed back while links are
//! cut silently (nftables drops everything, as a pulled cable would) and daemons are killed
//! with SIGKILL and started again. Each scenario runs three rounds and prints every figure.
//!
//! - A 3 s cut of the only path: traffic is back within 1 s of the repair.
//! - A cut with another path available: no reply is missing for more than 1 s.
//! - `kill -9` and restart of either side: traffic is back within 1 s of the daemon being up.

use std::thread::sleep;
use std::time::Duration;
use tests::Mesh;
use tests::gaps::{Prober, wall};

const ROUNDS: usize = 3;
const WITHIN: Duration = Duration::from_secs(1);

/// Waits until `a` pings `b` over the overlay.
fn settle(m: &Mesh, a: usize, b: usize) {
    let ok = tests::wait_until(Duration::from_secs(10), || {
        m.nodes[a].ping(&m.addrs[b], 1, "0.2") == 1
    });
    assert!(ok, "{a} never reached {b}");
}

/// Asserts that every figure is within [`WITHIN`]; `None` (never) fails.
fn check(what: &str, figures: &[Option<Duration>]) {
    let shown: Vec<String> = figures
        .iter()
        .map(|f| f.map_or("never".into(), |d| format!("{:.3} s", d.as_secs_f64())))
        .collect();
    eprintln!("{what}: {}", shown.join(", "));
    assert!(
        figures.iter().all(|f| f.is_some_and(|d| d <= WITHIN)),
        "{what}: {shown:?}, each must be at most {WITHIN:?}"
    );
}

#[test]
fn a_silent_cut_of_the_only_path_heals_within_a_second_of_the_repair() {
    let m = Mesh::new(2, &[(0, 1)]);
    settle(&m, 0, 1);
    let ping = Prober::start(&m.nodes[0], &m.nodes[1], &m.addrs[1]);
    let mut repairs = Vec::new();
    for _ in 0..ROUNDS {
        sleep(Duration::from_secs(1));
        m.cut(0);
        sleep(Duration::from_secs(3));
        m.restore(0);
        repairs.push(wall());
        sleep(Duration::from_secs(3));
    }
    let replies = ping.stop();
    let back: Vec<_> = repairs.iter().map(|&t| replies.first_after(t)).collect();
    check(
        "3 s cut of the only path: traffic back after the repair",
        &back,
    );
}

#[test]
fn a_silent_cut_with_another_path_costs_at_most_a_second() {
    // A triangle: 0 reaches 2 directly, and through 1 when that link is cut.
    let m = Mesh::new(3, &[(0, 1), (1, 2), (0, 2)]);
    settle(&m, 0, 2);
    settle(&m, 0, 1);
    settle(&m, 1, 2);
    let k = m.edge(0, 2).expect("edge 0-2");
    let ping = Prober::start(&m.nodes[0], &m.nodes[2], &m.addrs[2]);
    let mut windows = Vec::new();
    for _ in 0..ROUNDS {
        sleep(Duration::from_secs(1));
        let cut = wall();
        m.cut(k);
        sleep(Duration::from_secs(3));
        m.restore(k);
        sleep(Duration::from_secs(2));
        windows.push((cut, wall()));
    }
    let replies = ping.stop();
    let gaps: Vec<_> = windows
        .iter()
        .map(|&(a, b)| Some(replies.longest_gap(a, b)))
        .collect();
    if gaps.iter().any(|g| g.is_some_and(|d| d > WITHIN)) {
        for (i, n) in m.nodes.iter().enumerate() {
            eprintln!("=== node {i} key {}\n{}", m.keys[i], n.log());
        }
        eprintln!("windows {windows:?}");
    }
    check(
        "cut of the direct link, another path available: longest gap",
        &gaps,
    );
}

#[test]
fn kill_9_and_restart_of_either_side_heals_within_a_second() {
    let mut m = Mesh::new(2, &[(0, 1)]);
    settle(&m, 0, 1);
    let ping = Prober::start(&m.nodes[0], &m.nodes[1], &m.addrs[1]);
    let mut ups = Vec::new();
    // Node 1 does not dial (it answers node 0's handshakes); node 0 dials.
    for side in [1, 0] {
        for _ in 0..ROUNDS {
            sleep(Duration::from_secs(1));
            m.nodes[side].kill9();
            m.nodes[side].start();
            ups.push((side, wall()));
            sleep(Duration::from_secs(2));
        }
    }
    let replies = ping.stop();
    for side in [1, 0] {
        let back: Vec<_> = ups
            .iter()
            .filter(|u| u.0 == side)
            .map(|&(_, t)| replies.first_after(t))
            .collect();
        let who = if side == 1 {
            "the side that does not dial"
        } else {
            "the side that dials"
        };
        check(
            &format!("kill -9 and restart of {who}: traffic back after it is up"),
            &back,
        );
    }
}
