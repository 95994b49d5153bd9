//! Roaming: a node whose uplink address changes (the old address removed, a new one added, as
//! when a phone moves from Wi-Fi to cellular) keeps its end-to-end session with its peer.
//! Measured as a user sees it, with a UDP probe every 10 ms across the overlay from the peer
//! to the roaming node: the longest time without an echo around each change, three rounds
//! with `meshctl network-changed` (the admin API's form of `pl_node_network_changed`) and
//! three without, alternated. Also: the session is the same one afterwards (its age goes on),
//! the node's UDP port is kept, and it re-learns its public endpoint from its peer.

use std::thread::sleep;
use std::time::{Duration, Instant};
use tests::gaps::{Prober, wall};
use tests::{Node, require_root, veth, wait_until};

const PEER_IP: &str = "10.97.0.2";
/// The roaming node's two addresses, used in turn.
const ADDRS: [&str; 2] = ["10.97.0.1", "10.97.0.3"];
const WITHIN: Duration = Duration::from_secs(1);

/// The endpoints A's peers report for it (`meshctl status`'s NAT part).
fn observed(a: &Node) -> Vec<String> {
    let st = a.status();
    st["nat"]["endpoints"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The age of A's end-to-end session with `addr`, in seconds.
fn session_age(a: &Node, addr: &str) -> Option<u64> {
    let s = a.ctl_json(&["sessions"]);
    s.as_array()?
        .iter()
        .find(|s| s["address"] == addr)?
        .get("age_secs")?
        .as_u64()
}

#[test]
fn a_roaming_node_keeps_its_session_and_resumes_within_a_second() {
    require_root();
    let mut a = Node::new("roam-a");
    let mut b = Node::new("roam-b");
    let (ia, _) = veth(&a.ns, ADDRS[0], &b.ns, PEER_IP);
    a.configure("udp://0.0.0.0:7820", &[format!("udp://{PEER_IP}:7820")], "");
    b.configure("udp://0.0.0.0:7820", &[], "");
    b.start();
    a.start();
    let (a_addr, ka) = a.identity();
    let (b_addr, kb) = b.identity();
    assert!(
        a.wait_link_up(&kb, Duration::from_secs(5)),
        "no link:\n{}",
        a.log()
    );
    assert!(b.wait_link_up(&ka, Duration::from_secs(5)), "no link");
    assert!(
        wait_until(Duration::from_secs(10), || b.ping(&a_addr, 1, "0.2") == 1),
        "B never reached A"
    );
    assert!(
        wait_until(Duration::from_secs(5), || observed(&a)
            .contains(&format!("{}:7820", ADDRS[0]))),
        "A never learnt its endpoint: {:?}",
        observed(&a)
    );
    let b_str = b_addr.to_string();
    let age_before = session_age(&a, &b_str).expect("no session with B");
    let started = Instant::now();

    let probe = Prober::start(&b, &a, &a_addr);
    sleep(Duration::from_secs(1));
    let mut rounds = Vec::new();
    for round in 0..6 {
        let with_call = round % 2 == 0;
        let (old, new) = (ADDRS[round % 2], ADDRS[(round + 1) % 2]);
        // Both changes in one `ip -batch`: the old address gone, the new one there.
        let batch = format!("addr del {old}/24 dev {ia}\naddr add {new}/24 dev {ia}\n");
        let mut cmd = a.ns.cmd("ip");
        cmd.args(["-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("ip");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(batch.as_bytes()).expect("write batch");
        }
        assert!(child.wait().expect("ip").success(), "ip -batch failed");
        let at = wall();
        let learnt = if with_call {
            let out = a.ctl(&["network-changed"]);
            assert!(
                out.status.success(),
                "meshctl network-changed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let t = Instant::now();
            let ok = wait_until(Duration::from_secs(3), || {
                observed(&a).first() == Some(&format!("{new}:7820"))
            });
            ok.then(|| t.elapsed())
        } else {
            None
        };
        sleep(Duration::from_secs(3));
        rounds.push((with_call, at, learnt));
    }
    let replies = probe.stop();
    let mut failed = Vec::new();
    for (i, (with_call, at, learnt)) in rounds.iter().enumerate() {
        let gap = replies.longest_gap(at - 0.2, at + 2.5);
        let first = replies.first_after(*at);
        eprintln!(
            "round {i} ({}): longest gap {:.3} s, first echo after the change {}, endpoint \
             re-learnt {}",
            if *with_call {
                "network-changed called"
            } else {
                "no call"
            },
            gap.as_secs_f64(),
            first.map_or("never".into(), |d| format!("{:.3} s", d.as_secs_f64())),
            learnt.map_or("-".into(), |d| format!("in {:.3} s", d.as_secs_f64())),
        );
        if gap > WITHIN {
            failed.push(format!("round {i}: {gap:?}"));
        }
        if *with_call && learnt.is_none_or(|d| d > WITHIN) {
            failed.push(format!("round {i}: endpoint not re-learnt within 1 s"));
        }
    }
    assert!(
        failed.is_empty(),
        "{failed:?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    // The same session throughout: its age went on (a new handshake would start it at 0).
    let age_after = session_age(&a, &b_str).expect("no session with B after roaming");
    assert!(
        age_after + 2 >= age_before + started.elapsed().as_secs(),
        "the session was made again: age {age_before} s before, {age_after} s after {:?}",
        started.elapsed()
    );
    // Without the call too, A learns where it is seen (its peer reports a move).
    let last = ADDRS[0];
    assert!(
        wait_until(Duration::from_secs(2), || observed(&a).first()
            == Some(&format!("{last}:7820"))),
        "A's endpoint: {:?}",
        observed(&a)
    );
    // The UDP port is kept across the rebinds.
    let listen = a.ctl_json(&["self"]);
    assert!(listen.to_string().contains(":7820"), "{listen}");
    a.kill9();
    b.kill9();
}
