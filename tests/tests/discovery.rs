//! LAN discovery: nodes with no configured peers find each other by IPv6 link-local multicast
//! on a shared link, only on the interfaces they are allowed to use, and forged announcements
//! (another node's key) are ignored.

use meshd::identity::Identity;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};
use tests::{Netns, Node, require_root, run, veth, wait_until};

/// Two nodes on one veth (a shared link), listening on IPv6 with no peers; `a_extra` and
/// `b_extra` are extra config lines. Returns the nodes and the interface names (in A, in B).
fn lan_pair(a_extra: &str, b_extra: &str) -> (Node, Node, String, String) {
    require_root();
    let a = Node::new("da");
    let b = Node::new("db");
    let (ia, ib) = veth(&a.ns, "10.98.0.1", &b.ns, "10.98.0.2");
    // The LAN is there before the nodes start, as a real one is: its link-local addresses
    // are past duplicate address detection (which takes the kernel a second or two).
    link_local(&a.ns, &ia);
    link_local(&b.ns, &ib);
    a.configure("udp://[::]:7820", &[], &a_extra.replace("IFACE", &ia));
    b.configure("udp://[::]:7820", &[], &b_extra.replace("IFACE", &ib));
    (a, b, ia, ib)
}

fn peer_rows(n: &Node) -> Vec<serde_json::Value> {
    n.ctl_json(&["peers"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn neighbours_on_a_shared_link_find_each_other_within_5_s_and_ping() {
    let (mut a, mut b, _, _) = lan_pair("", "");
    // Timed from the first daemon's start: both start, find each other and link.
    let started = Instant::now();
    a.start();
    b.start();
    let (addr_a, ka) = a.identity();
    let (addr_b, kb) = b.identity();
    let up =
        a.wait_link_up(&kb, Duration::from_secs(5)) && b.wait_link_up(&ka, Duration::from_secs(1));
    let took = started.elapsed();
    assert!(up, "no link within 5 s\nA:\n{}\nB:\n{}", a.log(), b.log());
    eprintln!("discovered and linked in {took:?}");
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    assert_eq!(a.ping(&addr_b, 3, "0.2"), 3, "A → B\n{}", a.log());
    assert_eq!(b.ping(&addr_a, 3, "0.2"), 3, "B → A\n{}", b.log());
    // The link says how it came about and over what.
    let row = peer_rows(&a)
        .into_iter()
        .find(|r| r["public_key"] == kb.as_str())
        .expect("B listed");
    assert_eq!(row["transport"], "udp");
    assert!(
        row["origin"] == "discovered" || row["origin"] == "inbound",
        "{row}"
    );
    assert!(
        peer_rows(&a)
            .iter()
            .chain(peer_rows(&b).iter())
            .any(|r| r["origin"] == "discovered"),
        "one side at least dialed a discovered neighbour"
    );
    // Nothing was saved: discovered neighbours are not configured peers.
    assert!(!a.dir.join("state/peers.json").exists());
    let st = a.status();
    assert!(
        st["discovery"]["counters"]["accepted"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{st}"
    );
}

#[test]
fn discovery_disabled_on_the_interface_means_no_link() {
    // Only A excludes the shared link: it neither announces there nor listens, so B, which
    // announces, is never heard, and B never hears A.
    let (mut a, mut b, ia, _) = lan_pair("[discovery]\nexclude = [\"IFACE\"]", "");
    a.start();
    b.start();
    let (_, ka) = a.identity();
    let (addr_b, kb) = b.identity();
    assert!(
        !a.wait_link_up(&kb, Duration::from_secs(6)),
        "A linked anyway:\n{}",
        a.log()
    );
    assert!(!b.wait_link_up(&ka, Duration::from_millis(100)));
    assert_eq!(a.ping(&addr_b, 2, "0.2"), 0);
    let sa = a.status();
    let ifs = sa["discovery"]["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!ifs.iter().any(|i| i == ia.as_str()), "A uses {ia}: {sa}");
    // B did announce on its side, so the silence is A's choice.
    let sb = b.status();
    assert!(
        sb["discovery"]["counters"]["sent"].as_u64().unwrap_or(0) >= 3,
        "{sb}"
    );
}

/// The link-local address and index of `ifname` in `ns`, once duplicate address detection
/// is over (a tentative address cannot send).
fn link_local(ns: &Netns, ifname: &str) -> (Ipv6Addr, u32) {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(5), || {
        let out = run(ns.cmd("ip").args(["-j", "addr", "show", "dev", ifname]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let Some(dev) = v.as_array().and_then(|a| a.first()) else {
            return false;
        };
        let index = dev["ifindex"].as_u64().unwrap_or(0) as u32;
        found = dev["addr_info"].as_array().and_then(|infos| {
            infos.iter().find_map(|i| {
                let good = i["scope"] == "link" && i["tentative"].is_null();
                let ip: Ipv6Addr = i["local"].as_str()?.parse().ok()?;
                good.then_some((ip, index))
            })
        });
        found.is_some()
    });
    assert!(ok, "no usable link-local address on {ifname}");
    found.unwrap_or((Ipv6Addr::UNSPECIFIED, 0))
}

/// Sends `bytes` to the discovery group from `ns` over `ifname`.
fn announce_from(ns: &Netns, ifname: &str, bytes: Vec<u8>) {
    let (ip, index) = link_local(ns, ifname);
    ns.enter(move || {
        let s = UdpSocket::bind(SocketAddrV6::new(ip, 0, 0, index)).expect("bind");
        let to = SocketAddrV6::new(meshd::discovery::GROUP, meshd::discovery::PORT, 0, index);
        s.send_to(&bytes, to).expect("send announcement");
    });
}

#[test]
fn a_forged_announcement_is_ignored() {
    require_root();
    let mut a = Node::new("df");
    let x = Netns::new("dx");
    let (_, ix) = veth(&a.ns, "10.97.0.1", &x, "10.97.0.2");
    a.configure("udp://[::]:7820", &[], "");
    a.start();
    let counters = |a: &Node| a.status()["discovery"]["counters"].clone();
    assert!(wait_until(Duration::from_secs(5), || {
        a.status()["discovery"]["interfaces"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    }));
    // The attacker X announces a victim's key, signed with its own key.
    let victim = Identity::generate().expect("key").public_key();
    let attacker = Identity::generate().expect("key");
    let mut forged = meshd::discovery::announce(&attacker, 7820, 1).to_vec();
    forged[4..36].copy_from_slice(&victim.0);
    announce_from(&x, &ix, forged);
    assert!(
        wait_until(Duration::from_secs(3), || counters(&a)["bad_signature"]
            == 1),
        "{}",
        counters(&a)
    );
    let named = |a: &Node, k: String| peer_rows(a).iter().any(|r| r["public_key"] == k.as_str());
    assert!(!named(&a, victim.to_string()), "the victim's key is dialed");
    // The same path with an honest announcement (X's own key) is accepted, so the refusal
    // above was the signature's doing.
    let honest = meshd::discovery::announce(&attacker, 7820, 2).to_vec();
    announce_from(&x, &ix, honest);
    assert!(
        wait_until(Duration::from_secs(3), || named(
            &a,
            attacker.public_key().to_string()
        )),
        "{}\n{}",
        counters(&a),
        a.log()
    );
    assert_eq!(counters(&a)["accepted"], 1);
    assert_eq!(counters(&a)["bad_signature"], 1);
}
