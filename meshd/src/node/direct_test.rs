//! Direct messages on the virtual network: sealed once between linked nodes, routed (and
//! sealed twice) otherwise, refused when replayed or altered, and a link that carries only
//! direct messages stays up; a restarted peer is reached again at once.

use super::Outbound;
use super::testnet::{Delivery, TestNet};
use super::testnet_packets::udp6;
use crate::wire;
use std::time::Duration;

fn delivered(net: &TestNet, node: usize, tag: &[u8]) -> usize {
    net.deliveries
        .iter()
        .filter(|d| matches!(d, Delivery::Tun { node: n, packet } if *n == node && packet.ends_with(tag)))
        .count()
}

/// Sends from node `i` and returns what went on the wire (not yet delivered).
fn sealed(net: &mut TestNet, i: usize, packet: &[u8]) -> Option<(crate::uri::Endpoint, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    let now = net.now;
    match net.nodes[i].node.outbound(now, packet, &mut out) {
        Outbound::Datagram { to, len } => Some((to, out[..len].to_vec())),
        _ => None,
    }
}

#[test]
fn a_packet_to_a_linked_peer_is_sealed_once_and_a_copy_is_refused() {
    let mut net = TestNet::new(2, 21);
    net.connect(0, 1, Duration::from_millis(2));
    net.run(Duration::from_secs(5));
    let (a, b) = (net.address(0), net.address(1));
    // The first packet waits for the end-to-end handshake.
    net.send(0, &udp6(a, b, (40000, 9), b"first"));
    net.run(Duration::from_secs(1));
    assert_eq!(delivered(&net, 1, b"first"), 1);

    let p = udp6(a, b, (40000, 9), b"direct");
    let (_, d) = sealed(&mut net, 0, &p).expect("sent at once");
    assert_eq!(d[0], wire::TYPE_DIRECT, "not a direct message");
    assert_eq!(
        d.len(),
        p.len() + wire::TRANSPORT_OVERHEAD,
        "sealed more than once"
    );
    assert!(
        !d.windows(6).any(|w| w == b"direct"),
        "the payload is visible on the wire"
    );
    net.deliver(1, 0, &d);
    net.deliver(1, 0, &d);
    let mut altered = d.clone();
    altered[5] ^= 1; // another counter: the tag no longer verifies
    net.deliver(1, 0, &altered);
    assert_eq!(
        delivered(&net, 1, b"direct"),
        1,
        "a copy or a forgery was delivered"
    );
    // Every hostile copy counts as a drop from the network: the replay, the forgery, a
    // truncated one and one for an index nobody holds.
    let before = net.nodes[1].node.e2e.counters().from_network();
    net.deliver(1, 0, &d[..10]);
    let mut unknown = d.clone();
    unknown[1] ^= 0xff;
    net.deliver(1, 0, &unknown);
    let c = net.nodes[1].node.e2e.counters();
    assert!(c.replay >= 1 && c.decrypt_failed + c.replay >= 2, "{c:?}");
    assert_eq!(c.from_network(), before + 2, "{c:?}");
}

#[test]
fn a_packet_for_a_node_further_away_is_routed() {
    let mut net = TestNet::new(3, 22);
    net.connect(0, 1, Duration::from_millis(2));
    net.connect(1, 2, Duration::from_millis(2));
    net.run(Duration::from_secs(5));
    let (a, c) = (net.address(0), net.address(2));
    net.send(0, &udp6(a, c, (40000, 9), b"first"));
    net.run(Duration::from_secs(2));
    let (_, d) = sealed(&mut net, 0, &udp6(a, c, (40000, 9), b"far")).expect("sent at once");
    assert_eq!(
        d[0],
        wire::TYPE_TRANSPORT,
        "a packet for a node two hops away went direct"
    );
}

#[test]
fn a_link_carrying_only_direct_messages_stays_up() {
    let mut net = TestNet::new(2, 23);
    net.connect(0, 1, Duration::from_millis(2));
    net.run(Duration::from_secs(5));
    let (a, b) = (net.address(0), net.address(1));
    let sent = 600; // one a second for ten minutes, one way only
    for _ in 0..sent {
        net.send(0, &udp6(a, b, (40000, 9), b"tick"));
        net.run(Duration::from_secs(1));
    }
    assert!(delivered(&net, 1, b"tick") >= sent - 1, "packets were lost");
    for i in 0..2 {
        assert_eq!(
            net.nodes[i].node.links.peers().count(),
            1,
            "node {i} lost its link"
        );
    }
}

#[test]
fn a_restarted_peer_is_reached_again_at_once() {
    let mut net = TestNet::new(2, 24);
    net.connect(0, 1, Duration::from_millis(2));
    net.run(Duration::from_secs(5));
    let (a, b) = (net.address(0), net.address(1));
    net.send(0, &udp6(a, b, (40000, 9), b"before"));
    net.run(Duration::from_secs(1));
    assert_eq!(delivered(&net, 1, b"before"), 1);
    net.restart(1);
    net.run(Duration::from_secs(3));
    let b = net.address(1);
    for _ in 0..10 {
        net.send(0, &udp6(a, b, (40000, 9), b"after"));
        net.run(Duration::from_millis(100));
    }
    // The old session's index is unknown to the new process: its STALE hint makes the sender
    // handshake again, so the packets of the first second are not all lost.
    assert!(
        delivered(&net, 1, b"after") >= 5,
        "the restarted peer was not reached quickly"
    );
}

#[test]
fn a_znet_packet_to_a_linked_member_is_sealed_once_and_names_no_znet() {
    use super::testnet_packets::udp4;
    use crate::znet::{Manifest, Member};
    use std::net::Ipv4Addr;
    let mut net = TestNet::new(3, 25);
    net.connect(0, 1, Duration::from_millis(2));
    net.run(Duration::from_secs(5));
    let keys: Vec<_> = net.nodes.iter().map(|t| t.identity.public_key()).collect();
    let m = Manifest {
        name: "direct".into(),
        id: 0x0123_4567_89ab_cdef,
        secret: [0x44; 32].into(),
        ipv4: Ipv4Addr::new(10, 50, 0, 0),
        ipv6: None,
        members: (0..2)
            .map(|i| Member {
                key: keys[i],
                v4: Ipv4Addr::new(10, 50, i as u8 + 1, 0),
                v6: None,
            })
            .collect(),
        egress: None,
    };
    for i in 0..2 {
        net.znet_up(i, m.clone()).expect("member");
    }
    net.run(Duration::from_millis(100));
    let (src, dst) = (Ipv4Addr::new(10, 50, 1, 2), Ipv4Addr::new(10, 50, 2, 2));
    net.send_znet(0, m.id, &udp4(src, dst, b"first"));
    net.run(Duration::from_secs(1));
    let p = udp4(src, dst, b"direct");
    let mut out = vec![0u8; 4096];
    let now = net.now;
    let Outbound::Datagram { len, .. } = net.nodes[0].node.znet_outbound(now, m.id, &p, &mut out)
    else {
        panic!("not sent at once")
    };
    let d = out[..len].to_vec();
    assert_eq!(d[0], wire::TYPE_DIRECT);
    assert_eq!(
        d.len(),
        p.len() + wire::TRANSPORT_OVERHEAD,
        "sealed more than once"
    );
    assert!(
        !d.windows(8).any(|w| w == m.id.to_be_bytes()),
        "the znet's id is on the wire"
    );
    net.deliver(1, 0, &d);
    net.deliver(1, 0, &d);
    let got = |net: &TestNet, tag: &[u8]| {
        net.deliveries
            .iter()
            .filter(
                |d| matches!(d, Delivery::Znet { node: 1, packet, .. } if packet.ends_with(tag)),
            )
            .count()
    };
    assert_eq!(got(&net, b"first"), 1);
    assert_eq!(got(&net, b"direct"), 1, "a copy was delivered, or nothing");
    // Not a member: node 2 has no such znet, and the same bytes from it are refused too.
    net.deliver(1, 2, &d);
    assert_eq!(got(&net, b"direct"), 1);
}
