//! A znet's egress through an exit member, on whole nodes of the virtual network: what goes
//! out through the exit, what comes back, and everything the checks must still refuse.
//!
//! Three members in a line 0 - 1 - 2; member 1 is the exit (`egress` names it) and allowed
//! to be (`znet_exits`), unless a test says otherwise.

use super::testnet::{Delivery, TestNet, udp4};
use crate::znet::{Egress, Manifest, Member, ZnetCounters};
use std::net::Ipv4Addr;
use std::time::Duration;

const ID: u64 = 0xe817;
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

fn container(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 50, i + 1, 2)
}

/// The network, with the znet up on every member; `egress`: the exit's index (or none), and
/// whether node 1's operator allows it.
fn net(exit: Option<usize>, allowed: bool) -> TestNet {
    let mut net = TestNet::new(3, 23);
    net.connect(0, 1, Duration::from_millis(1));
    net.connect(1, 2, Duration::from_millis(1));
    net.run(Duration::from_secs(5));
    if allowed {
        net.nodes[1].node.znet_exits = vec!["shop".into()];
    }
    let m = manifest(
        &net,
        exit.map(|e| Egress::Member(net.nodes[e].identity.public_key())),
    );
    for i in 0..3 {
        net.znet_up(i, m.clone()).expect("member");
    }
    net
}

fn manifest(net: &TestNet, egress: Option<Egress>) -> Manifest {
    Manifest {
        name: "shop".into(),
        id: ID,
        secret: [0x44; 32].into(),
        ipv4: Ipv4Addr::new(10, 50, 0, 0),
        ipv6: None,
        members: (0..3)
            .map(|i| Member {
                key: net.nodes[i].identity.public_key(),
                v4: Ipv4Addr::new(10, 50, i as u8 + 1, 0),
                v6: None,
            })
            .collect(),
        egress,
    }
}

fn counters(net: &TestNet, i: usize) -> ZnetCounters {
    net.nodes[i].node.znets[&ID].counters.clone()
}

/// Whether node `i`'s znet TUN got a packet ending with `tag`.
fn got(net: &TestNet, i: usize, tag: &[u8]) -> bool {
    net.deliveries.iter().any(
        |d| matches!(d, Delivery::Znet { node, id: ID, packet } if *node == i && packet.ends_with(tag)),
    )
}

#[test]
fn traffic_for_outside_crosses_to_the_exit_and_replies_come_back() {
    let mut net = net(Some(1), true);
    assert!(net.nodes[1].node.znets[&ID].exit);
    net.send_znet(0, ID, &udp4(container(0), OUTSIDE, b"out"));
    net.run(Duration::from_secs(1));
    assert!(got(&net, 1, b"out"), "the exit did not get it");
    assert_eq!(counters(&net, 1).exit_out, 1);
    // The reply, de-NATed by the exit's router namespace, comes out of its TUN.
    net.send_znet(1, ID, &udp4(OUTSIDE, container(0), b"back"));
    net.run(Duration::from_secs(1));
    assert!(
        got(&net, 0, b"back"),
        "the reply did not reach the container's node"
    );
    assert_eq!(counters(&net, 1).exit_back, 1);
    assert_eq!(counters(&net, 0).bad_source, 0);
    // Member 2 too, through the exit.
    net.send_znet(2, ID, &udp4(container(2), OUTSIDE, b"two"));
    net.run(Duration::from_secs(1));
    assert!(got(&net, 1, b"two"));
}

#[test]
fn an_exit_its_operator_did_not_allow_refuses() {
    let mut net = net(Some(1), false);
    assert!(!net.nodes[1].node.znets[&ID].exit);
    net.send_znet(0, ID, &udp4(container(0), OUTSIDE, b"out"));
    net.run(Duration::from_secs(1));
    assert!(!got(&net, 1, b"out"));
    assert_eq!(counters(&net, 1).not_exit, 1);
    assert_eq!(counters(&net, 1).exit_out, 0);
    // Nor does it send anything from outside back in.
    net.send_znet(1, ID, &udp4(OUTSIDE, container(0), b"back"));
    net.run(Duration::from_secs(1));
    assert!(!got(&net, 0, b"back"));
    assert_eq!(counters(&net, 1).spoofed, 1);
}

#[test]
fn without_egress_nothing_leaves_the_znet() {
    let mut net = net(None, true);
    net.send_znet(0, ID, &udp4(container(0), OUTSIDE, b"out"));
    net.run(Duration::from_secs(1));
    assert!(!got(&net, 1, b"out"));
    assert_eq!(counters(&net, 0).no_egress, 1);
    assert_eq!(counters(&net, 0).sent, 0);
    // An address of the range no member owns is still `no_member`.
    net.send_znet(
        0,
        ID,
        &udp4(container(0), Ipv4Addr::new(10, 50, 99, 2), b"x"),
    );
    assert_eq!(counters(&net, 0).no_member, 1);
}

#[test]
fn only_the_exit_speaks_for_outside_addresses() {
    let mut net = net(Some(1), true);
    // Member 2 believes itself the exit (its own copy of the manifest says so, its operator
    // allows it): what it sends from outside addresses is refused by member 0.
    let forged = manifest(
        &net,
        Some(Egress::Member(net.nodes[2].identity.public_key())),
    );
    net.nodes[2].node.znet_exits = vec!["shop".into()];
    net.znet_up(2, forged).expect("member");
    net.send_znet(2, ID, &udp4(OUTSIDE, container(0), b"forged"));
    net.run(Duration::from_secs(1));
    assert!(
        !got(&net, 0, b"forged"),
        "a non-exit member spoke for outside"
    );
    assert_eq!(counters(&net, 0).bad_source, 1);
    // The exit cannot send from outside to outside, nor from outside for its own subnet
    // through the znet (its router namespace routes that directly).
    net.send_znet(1, ID, &udp4(OUTSIDE, Ipv4Addr::new(1, 1, 1, 1), b"x"));
    net.send_znet(
        1,
        ID,
        &udp4(Ipv4Addr::new(10, 50, 3, 7), container(0), b"y"),
    );
    assert_eq!(counters(&net, 1).spoofed, 2);
    // A member cannot pass another member's traffic as its own to the exit.
    net.send_znet(0, ID, &udp4(container(2), OUTSIDE, b"z"));
    assert_eq!(counters(&net, 0).spoofed, 1);
    // The exit refuses from a member a source outside the znet (only its own replies may
    // have one), and outside traffic is never handed to a non-exit.
    net.send_znet(2, ID, &udp4(OUTSIDE, container(1), b"w"));
    net.run(Duration::from_secs(1));
    assert!(!got(&net, 1, b"w"));
    assert_eq!(counters(&net, 1).bad_source, 1);
}
