//! Links over `quic://` and over `tcp://` (with every UDP datagram dropped by nftables): ping
//! and a 100 MB transfer that arrives intact, and `meshctl peers` names the transport. A link
//! with a UDP and a TCP path moves to TCP when UDP is blocked, and back, on the same link.

use std::time::Duration;
use tests::{Netns, Node, require_root, run, veth};

const A_IP: &str = "10.96.0.1";
const B_IP: &str = "10.96.0.2";

/// Drops every UDP datagram in and out of `ns`.
fn drop_udp(ns: &Netns) {
    let rules = "table inet noudp {\n\
        chain in { type filter hook input priority 0; meta l4proto udp counter drop; }\n\
        chain out { type filter hook output priority 0; meta l4proto udp counter drop; }\n}\n";
    let file = std::env::temp_dir().join(format!("{}.nft", ns.name));
    std::fs::write(&file, rules).expect("write rules");
    run(ns.cmd("nft").arg("-f").arg(&file));
    let _ = std::fs::remove_file(file);
}

/// UDP datagrams the rules of `drop_udp` dropped in `ns`.
fn udp_dropped(ns: &Netns) -> u64 {
    let out = run(ns.cmd("nft").args(["-j", "list", "table", "inet", "noudp"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let mut n = 0;
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            n += e["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    n
}

/// A and B on a veth, each listening on `listen`, B dialing A at `peer` (and A dialing B at
/// `a_peer`, if given); both up and linked.
fn pair_over(listen: &str, peer: &str, a_peer: Option<String>, no_udp: bool) -> (Node, Node) {
    require_root();
    let mut a = Node::new("ta");
    let mut b = Node::new("tb");
    veth(&a.ns, A_IP, &b.ns, B_IP);
    if no_udp {
        drop_udp(&a.ns);
        drop_udp(&b.ns);
    }
    a.configure(listen, &a_peer.into_iter().collect::<Vec<_>>(), "");
    b.configure(listen, &[peer.to_string()], "");
    a.start();
    b.start();
    let (_, ka) = a.identity();
    let (_, kb) = b.identity();
    assert!(
        b.wait_link_up(&ka, Duration::from_secs(10)),
        "B never linked over {peer}:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    assert!(
        a.wait_link_up(&kb, Duration::from_secs(5)),
        "A:\n{}",
        a.log()
    );
    (a, b)
}

fn transport_of(n: &Node, key: &str) -> String {
    let rows = n.ctl_json(&["peers"]);
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["public_key"] == key && r["state"] == "up")
        .map(|r| r["transport"].as_str().unwrap_or("?").to_string())
        .unwrap_or_default()
}

fn ping_and_transfer(a: &Node, b: &Node, what: &str) {
    let (a_addr, ka) = a.identity();
    let (b_addr, kb) = b.identity();
    assert_eq!(
        a.ping(&b_addr, 5, "0.2"),
        5,
        "ping A→B over {what}:\n{}",
        a.log()
    );
    assert_eq!(b.ping(&a_addr, 3, "0.2"), 3, "ping B→A over {what}");
    const TOTAL: usize = 100 * 1024 * 1024;
    let secs = tests::transfer::intact(a, b, TOTAL);
    eprintln!(
        "100 MiB over {what} in {secs:.2} s ({:.0} Mbit/s)",
        TOTAL as f64 * 8.0 / secs / 1e6
    );
    assert_eq!(transport_of(a, &kb), what);
    assert_eq!(transport_of(b, &ka), what);
}

#[test]
fn a_pair_linked_only_by_quic_pings_and_moves_100_mb_intact() {
    // Both sides dial: two QUIC connections cross, and one is kept.
    let (a, b) = pair_over(
        "quic://0.0.0.0:7821",
        &format!("quic://{A_IP}:7821"),
        Some(format!("quic://{B_IP}:7821")),
        false,
    );
    ping_and_transfer(&a, &b, "quic");
    // Nothing listens on plain UDP: the link can only be QUIC.
    let listen = a.ctl_json(&["self"])["listen"].clone();
    assert_eq!(
        listen,
        serde_json::json!(["quic://0.0.0.0:7821"]),
        "{listen}"
    );
}

#[test]
fn a_pair_linked_only_by_tcp_with_udp_dropped_pings_and_moves_100_mb_intact() {
    let (a, b) = pair_over(
        "tcp://0.0.0.0:7820",
        &format!("tcp://{A_IP}:7820"),
        None,
        true,
    );
    ping_and_transfer(&a, &b, "tcp");
    // The rules are in force: a UDP datagram from A is dropped (and counted).
    let before = udp_dropped(&a.ns);
    a.ns.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let _ = s.send_to(b"probe", format!("{B_IP}:9"));
    });
    assert!(udp_dropped(&a.ns) > before, "UDP was not dropped");
}

fn up_row(n: &Node, key: &str) -> serde_json::Value {
    n.ctl_json(&["peers"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["public_key"] == key && r["state"] == "up")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_link_with_udp_and_tcp_paths_moves_to_tcp_when_udp_is_blocked_and_back() {
    require_root();
    let mut a = Node::new("pa");
    let mut b = Node::new("pb");
    veth(&a.ns, A_IP, &b.ns, B_IP);
    let listen = ["udp://0.0.0.0:7820", "tcp://0.0.0.0:7820"];
    a.configure_listen(&listen, &[], "");
    b.configure_listen(
        &listen,
        &[format!("udp://{A_IP}:7820"), format!("tcp://{A_IP}:7820")],
        "",
    );
    a.start();
    b.start();
    let (_, kb) = b.identity();
    let (addr_a, ka) = a.identity();
    let two_paths = tests::wait_until(Duration::from_secs(10), || {
        let r = up_row(&b, &ka);
        r["paths"].as_array().is_some_and(|p| p.len() == 2) && r["transport"] == "udp"
    });
    assert!(two_paths, "{}\n{}", up_row(&b, &ka), b.log());
    let up_before = up_row(&b, &ka)["up_secs"].as_u64().unwrap_or(0);
    // Pings every 100 ms for 10 s; UDP is blocked after 2 s.
    let pinger = b.spawn_ping(&addr_a, 100, "0.1");
    std::thread::sleep(Duration::from_secs(2));
    drop_udp(&b.ns);
    let moved = tests::wait_until(Duration::from_secs(6), || {
        up_row(&b, &ka)["transport"] == "tcp" && up_row(&a, &kb)["transport"] == "tcp"
    });
    assert!(
        moved,
        "B: {}\nA: {}\n{}",
        up_row(&b, &ka),
        up_row(&a, &kb),
        b.log()
    );
    let out = pinger.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = tests::ping_received(&text);
    eprintln!("across the move to TCP: {received}/100 replies");
    assert!(received >= 70, "{text}");
    // The same link all along: it did not go down and come back.
    let row = up_row(&b, &ka);
    assert!(
        row["up_secs"].as_u64().unwrap_or(0) >= up_before + 9,
        "{row}"
    );
    // UDP comes back, and so does the link to it.
    run(b.ns.cmd("nft").args(["delete", "table", "inet", "noudp"]));
    let back = tests::wait_until(Duration::from_secs(20), || {
        up_row(&b, &ka)["transport"] == "udp"
    });
    assert!(back, "{}\n{}", up_row(&b, &ka), b.log());
    assert_eq!(b.ping(&addr_a, 3, "0.2"), 3);
}

#[test]
fn a_tcp_peer_that_refuses_says_so_in_meshctl_peers() {
    require_root();
    let mut a = Node::new("tr");
    a.configure("udp://0.0.0.0:7820", &["tcp://127.0.0.1:9".to_string()], "");
    a.start();
    let said = tests::wait_until(Duration::from_secs(6), || {
        let rows = a.ctl_json(&["peers"]);
        rows.as_array().into_iter().flatten().any(|r| {
            r["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("TCP connect") && e.contains("refused"))
        })
    });
    assert!(said, "{}\n{}", a.ctl_json(&["peers"]), a.log());
}
