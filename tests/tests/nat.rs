//! NAT traversal: two nodes, each behind its own masquerading NAT (nftables, with the input
//! filter every home router has), both linked only to a public node. After traffic through
//! the public node they punch a direct UDP path (`meshctl peers`, `meshctl ping` show it),
//! fall back to the public node when the direct path breaks, find it again when it heals, and
//! keep talking when the public node is gone.
//!
//! ```text
//!   A 192.168.1.2 ─ NAT-A 192.168.1.1 | 100.64.1.2 ─┐
//!                                                   inet (router) 100.64.{0,1,2}.1 ─ P 100.64.0.2
//!   B 192.168.2.2 ─ NAT-B 192.168.2.1 | 100.64.2.2 ─┘
//! ```

use std::time::{Duration, Instant};
use tests::{Netns, Node, require_root, run, veth, wait_until};

fn default_route(ns: &Netns, via: &str) {
    run(ns.cmd("ip").args(["route", "add", "default", "via", via]));
}

fn forwarding(ns: &Netns) {
    run(ns.cmd("sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]));
}

fn nft(ns: &Netns, rules: &str) {
    let file = std::env::temp_dir().join(format!("{}-{}.nft", ns.name, rules.len()));
    std::fs::write(&file, rules).expect("write rules");
    run(ns.cmd("nft").arg("-f").arg(&file));
    let _ = std::fs::remove_file(file);
}

/// A NAT as a home router does it: masquerade out of `wan`, and from `wan` only what answers
/// traffic from inside.
fn masquerade(ns: &Netns, wan: &str) {
    forwarding(ns);
    nft(
        ns,
        &format!(
            "table ip nat {{\nchain post {{ type nat hook postrouting priority 100; \
             oifname \"{wan}\" masquerade; }}\n}}\n\
             table inet filter {{\n\
             chain input {{ type filter hook input priority 0; \
             iifname \"{wan}\" ct state established,related accept; iifname \"{wan}\" drop; }}\n\
             chain forward {{ type filter hook forward priority 0; \
             iifname \"{wan}\" ct state established,related accept; iifname \"{wan}\" drop; }}\n}}\n"
        ),
    );
}

fn peer_row(n: &Node, key: &str) -> Option<serde_json::Value> {
    n.ctl_json(&["peers"])
        .as_array()?
        .iter()
        .find(|r| r["public_key"] == key && r["state"] == "up")
        .cloned()
}

/// `meshctl ping ADDR -c 1` from `n`: its output line.
fn meshctl_ping(n: &Node, addr: &std::net::Ipv6Addr) -> String {
    let out = n.ctl(&["ping", &addr.to_string(), "-c", "1"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nodes_behind_two_nats_punch_a_direct_path_and_keep_it_without_the_public_node() {
    require_root();
    let inet = Netns::new("ni");
    let nat_a = Netns::new("nna");
    let nat_b = Netns::new("nnb");
    let mut p = Node::new("np");
    let mut a = Node::new("na");
    let mut b = Node::new("nb");
    veth(&p.ns, "100.64.0.2", &inet, "100.64.0.1");
    let (wan_a, _) = veth(&nat_a, "100.64.1.2", &inet, "100.64.1.1");
    let (wan_b, _) = veth(&nat_b, "100.64.2.2", &inet, "100.64.2.1");
    veth(&a.ns, "192.168.1.2", &nat_a, "192.168.1.1");
    veth(&b.ns, "192.168.2.2", &nat_b, "192.168.2.1");
    forwarding(&inet);
    default_route(&p.ns, "100.64.0.1");
    default_route(&nat_a, "100.64.1.1");
    default_route(&nat_b, "100.64.2.1");
    default_route(&a.ns, "192.168.1.1");
    default_route(&b.ns, "192.168.2.1");
    masquerade(&nat_a, &wan_a);
    masquerade(&nat_b, &wan_b);

    let public = "udp://100.64.0.2:7820".to_string();
    p.configure("udp://0.0.0.0:7820", &[], "");
    a.configure("udp://0.0.0.0:7820", std::slice::from_ref(&public), "");
    b.configure("udp://0.0.0.0:7820", std::slice::from_ref(&public), "");
    p.start();
    a.start();
    b.start();
    let (_, kp) = p.identity();
    let (addr_a, ka) = a.identity();
    let (addr_b, kb) = b.identity();
    for n in [&a, &b] {
        assert!(n.wait_link_up(&kp, Duration::from_secs(10)), "{}", n.log());
    }
    // Each learned its public endpoint from P.
    assert!(
        wait_until(Duration::from_secs(3), || {
            a.status()["nat"]["endpoints"][0] == "100.64.1.2:7820"
        }),
        "{}",
        a.status()["nat"]
    );

    // Through P first: the ping starts the exchange of endpoints.
    let started = Instant::now();
    let first = wait_until(Duration::from_secs(10), || a.ping(&addr_b, 1, "0.2") == 1);
    assert!(first, "no relayed ping\nA:\n{}\nB:\n{}", a.log(), b.log());
    eprintln!("first relayed reply after {:?}", started.elapsed());
    let direct = wait_until(Duration::from_secs(10), || {
        peer_row(&a, &kb).is_some() && peer_row(&b, &ka).is_some()
    });
    assert!(direct, "no direct link\nA:\n{}\nB:\n{}", a.log(), b.log());
    eprintln!(
        "direct path up {:?} after the first packet",
        started.elapsed()
    );
    let row = peer_row(&a, &kb).unwrap_or_default();
    assert_eq!(row["endpoint"], "udp://100.64.2.2:7820", "{row}");
    let line = meshctl_ping(&a, &addr_b);
    assert!(line.contains("direct via udp://100.64.2.2:7820"), "{line}");

    // The direct path breaks (the Internet drops it; both still reach P): traffic falls back
    // to P, and `meshctl ping` says so.
    nft(
        &inet,
        "table ip cutpath {\nchain dropdirect {\ntype filter hook forward priority 0;\n\
         ip saddr 100.64.1.2 ip daddr 100.64.2.2 drop\n\
         ip saddr 100.64.2.2 ip daddr 100.64.1.2 drop\n}\n}\n",
    );
    assert!(
        wait_until(Duration::from_secs(6), || peer_row(&a, &kb).is_none()),
        "the broken direct link stayed up"
    );
    // The tree may have to re-form around the lost link first (A or B may have been the
    // other's parent): give it a few seconds, then every packet passes.
    let lost = Instant::now();
    let back = wait_until(Duration::from_secs(10), || a.ping(&addr_b, 1, "0.5") == 1);
    assert!(back, "no way through P\n{}", a.log());
    eprintln!(
        "relayed through P again {:?} after the direct link went down",
        lost.elapsed()
    );
    let n3 = a.ping(&addr_b, 3, "0.2");
    assert_eq!(
        n3,
        3,
        "fallback through P\nA status {}\nB status {}\nP status {}\n{}",
        a.status(),
        b.status(),
        p.status(),
        a.log()
    );
    let line = meshctl_ping(&a, &addr_b);
    assert!(line.contains("relayed"), "{line}");

    // It heals: the next round of endpoints finds it again.
    run(inet.cmd("nft").args(["delete", "table", "ip", "cutpath"]));
    let healed = wait_until(Duration::from_secs(30), || {
        a.ping(&addr_b, 1, "0.2");
        peer_row(&a, &kb).is_some()
    });
    assert!(healed, "the direct path did not come back\nA:\n{}", a.log());

    // P goes away (killed, no goodbye): A and B keep talking over their own link.
    let pinger = a.spawn_ping(&addr_b, 30, "0.2");
    std::thread::sleep(Duration::from_secs(1));
    p.kill9();
    let out = pinger.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = tests::ping_received(&text);
    let summary = text
        .lines()
        .find(|l| l.contains("received"))
        .unwrap_or_default();
    eprintln!("across P's death: {summary}");
    assert!(
        received >= 29,
        "traffic stopped with P: {text}\nA:\n{}",
        a.log()
    );
    assert!(peer_row(&a, &kp).is_none(), "P is gone");
    assert_eq!(b.ping(&addr_a, 5, "0.2"), 5, "B → A without P");
}
