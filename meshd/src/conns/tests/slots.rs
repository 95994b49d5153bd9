//! The inbound slots: bounds per address, per network and in all; the oldest connection not
//! carrying an authenticated link makes room for a new one; authenticated links are never
//! closed for strangers; strangers are closed after [`AUTH_TIMEOUT`] however busy. With the
//! virtual clock, and with link cores for "a new peer links while strangers hold every slot".

use super::*;
use std::net::Ipv6Addr;

fn tcp_from(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint::new(Scheme::Tcp, SocketAddr::new(ip, port))
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Accepts a TCP connection from `ip` (up at once, as the shell does); `authenticated`: the
/// link core sent a sealed datagram on it.
fn accept(
    c: &mut Conns,
    now: Instant,
    ip: IpAddr,
    port: u16,
    authenticated: bool,
) -> Option<ConnId> {
    let id = c.handle_inbound(now, tcp_from(ip, port))?;
    c.handle_up(now, id, None);
    if authenticated {
        assert!(c.handle_authenticated(id));
    }
    Some(id)
}

/// The connections the core asked the shell to close, and why.
fn closes(c: &mut Conns) -> Vec<(ConnId, CloseReason)> {
    let mut v = vec![];
    while let Some(a) = c.poll_action() {
        if let Action::Close { id, why } = a {
            v.push((id, why));
        }
    }
    v
}

#[test]
fn networks_are_a_slash_24_or_a_slash_64() {
    assert_eq!(prefix_of(v4(192, 0, 2, 77)), v4(192, 0, 2, 0));
    let mapped: IpAddr = "::ffff:192.0.2.77".parse().expect("address");
    assert_eq!(prefix_of(mapped), v4(192, 0, 2, 0));
    let six: IpAddr = "2001:db8:1:2:3:4:5:6".parse().expect("address");
    assert_eq!(
        prefix_of(six),
        "2001:db8:1:2::".parse::<IpAddr>().expect("address")
    );
}

#[test]
fn authenticated_links_fill_the_bounds_per_address_per_network_and_in_all() {
    let mut c = Conns::new(identity(1).public_key());
    let now = Instant::now();
    let mut held = vec![];
    for p in 0..MAX_PER_ADDRESS as u16 {
        held.push(accept(&mut c, now, v4(192, 0, 2, 1), 1000 + p, true).expect("slot"));
    }
    assert_eq!(accept(&mut c, now, v4(192, 0, 2, 1), 2000, true), None);
    assert_eq!(c.counters().refused_per_address, 1);
    // Other addresses of the same /24, up to the network's bound.
    let mut host = 2;
    while c.inbound_slots() < MAX_PER_PREFIX {
        for p in 0..MAX_PER_ADDRESS as u16 {
            if c.inbound_slots() < MAX_PER_PREFIX {
                accept(&mut c, now, v4(192, 0, 2, host), p, true).expect("slot");
            }
        }
        host += 1;
    }
    assert_eq!(accept(&mut c, now, v4(192, 0, 2, 250), 1, true), None);
    assert_eq!(c.counters().refused_per_prefix, 1);
    // Other networks, up to the whole table.
    let mut others = 0;
    for i in 0..MAX_INBOUND {
        if accept(
            &mut c,
            now,
            v4(10, 0, (i / 4) as u8, (i % 4) as u8),
            1,
            true,
        )
        .is_some()
        {
            others += 1;
        }
    }
    assert_eq!(others + MAX_PER_PREFIX, MAX_INBOUND);
    assert!(c.counters().refused_total > 0);
    assert_eq!(
        c.counters().evicted,
        0,
        "an authenticated link is never evicted"
    );
    assert!(closes(&mut c).is_empty());
    // One ends: its slot is free again.
    let gone = held.pop().expect("held");
    c.handle_down(now, gone);
    assert!(accept(&mut c, now, v4(192, 0, 2, 1), 3000, true).is_some());
}

#[test]
fn when_full_the_oldest_stranger_makes_room_and_authenticated_links_stay() {
    let mut c = Conns::new(identity(1).public_key());
    let now = Instant::now();
    // 40 addresses, each in a network of its own; the first ten connections link.
    let ip = |i: usize| v4(10, (i % 40) as u8, 0, 1);
    let mut ids = vec![];
    for i in 0..MAX_INBOUND {
        ids.push(accept(&mut c, now, ip(i), i as u16, i < 10).expect("slot"));
    }
    assert!(closes(&mut c).is_empty());
    // Full: each newcomer closes the oldest stranger, in order of their accept.
    for (k, i) in (MAX_INBOUND..MAX_INBOUND + 300).enumerate() {
        let new = accept(&mut c, now, ip(i), i as u16, false).expect("room made");
        ids.push(new);
        let evicted = closes(&mut c);
        assert_eq!(
            evicted,
            [(ids[10 + k], CloseReason::Evicted)],
            "newcomer {k}"
        );
        assert_eq!(c.inbound_slots(), MAX_INBOUND);
    }
    assert_eq!(c.counters().evicted, 300);
    for id in &ids[..10] {
        assert!(c.conns.contains_key(id), "authenticated link {id:?} kept");
    }
    assert_eq!(c.counters().refused_total, 0);
}

#[test]
fn a_full_address_or_network_makes_room_within_itself() {
    let mut c = Conns::new(identity(1).public_key());
    let now = Instant::now();
    // The oldest stranger of all is elsewhere.
    let elsewhere = accept(&mut c, now, v4(198, 51, 100, 1), 1, false).expect("slot");
    let crowd = v4(192, 0, 2, 1);
    let first = accept(&mut c, now, crowd, 1, false).expect("slot");
    for p in 2..=MAX_PER_ADDRESS as u16 {
        accept(&mut c, now, crowd, p, false).expect("slot");
    }
    accept(&mut c, now, crowd, 100, false).expect("room made");
    assert_eq!(closes(&mut c), [(first, CloseReason::Evicted)]);
    // An IPv6 /64 full of strangers: a newcomer from it makes room in it; one from the next
    // /64 just gets a slot.
    let six = |net: u16, host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 0, host));
    let mut in_net = vec![];
    for h in 0..(MAX_PER_PREFIX / MAX_PER_ADDRESS) as u16 {
        for p in 0..MAX_PER_ADDRESS as u16 {
            in_net.push(accept(&mut c, now, six(1, h + 1), p, false).expect("slot"));
        }
    }
    accept(&mut c, now, six(1, 999), 1, false).expect("room made");
    assert_eq!(closes(&mut c), [(in_net[0], CloseReason::Evicted)]);
    accept(&mut c, now, six(2, 1), 1, false).expect("slot");
    assert!(closes(&mut c).is_empty());
    assert!(c.conns.contains_key(&elsewhere));
    // A network whose every connection is authenticated refuses the newcomer.
    let mut c = Conns::new(identity(1).public_key());
    for p in 0..MAX_PER_ADDRESS as u16 {
        accept(&mut c, now, crowd, p, true).expect("slot");
    }
    assert_eq!(accept(&mut c, now, crowd, 100, false), None);
    assert_eq!(c.counters().refused_per_address, 1);
}

#[test]
fn a_stranger_is_closed_after_auth_timeout_however_busy() {
    let mut c = Conns::new(identity(1).public_key());
    let start = Instant::now();
    let stranger = accept(&mut c, start, v4(192, 0, 2, 1), 1, false).expect("slot");
    let linked = accept(&mut c, start, v4(192, 0, 2, 2), 1, true).expect("slot");
    let mut now = start;
    let mut closed = vec![];
    while now < start + AUTH_TIMEOUT + IDLE {
        // Both send a frame every half second: neither is idle.
        c.handle_frame(now, stranger);
        c.handle_frame(now, linked);
        now += Duration::from_millis(500);
        while let Some(t) = c.poll_timeout().filter(|t| *t <= now) {
            c.handle_timeout(t);
            closed.extend(closes(&mut c).into_iter().map(|(id, why)| (t, id, why)));
        }
    }
    assert_eq!(
        closed,
        [(start + AUTH_TIMEOUT, stranger, CloseReason::Unauthenticated)]
    );
    assert_eq!(c.counters().unauthenticated_closed, 1);
    assert_eq!(c.inbound_slots(), 1);
}

#[test]
fn quic_sources_prove_their_address_once_half_the_slots_are_taken() {
    let mut c = Conns::new(identity(1).public_key());
    let now = Instant::now();
    for i in 0..VALIDATE_ABOVE {
        assert!(!c.must_validate());
        accept(
            &mut c,
            now,
            v4(10, (i / 8) as u8, 0, (i % 8) as u8),
            1,
            false,
        )
        .expect("slot");
    }
    assert!(c.must_validate());
    assert_eq!(c.counters().validations_asked, 1);
}

#[test]
fn a_new_peer_links_over_tcp_while_strangers_hold_every_slot() {
    let mut n = Net::new(true);
    let b = ep(Scheme::Tcp, 1);
    let stranger = |i: usize| tcp_from(v4(10, 9, (i % 40) as u8, 1), i as u16);
    let mut strangers = 0;
    let mut hold = |n: &mut Net, count: usize| {
        let now = n.now;
        for _ in 0..count {
            let id = n.sides[1].conns.handle_inbound(now, stranger(strangers));
            strangers += 1;
            if let Some(id) = id {
                n.sides[1].conns.handle_up(now, id, None);
            }
        }
        n.collect();
    };
    hold(&mut n, MAX_INBOUND);
    assert_eq!(n.sides[1].conns.inbound_slots(), MAX_INBOUND);
    let start = n.now;
    let uri: crate::uri::PeerUri = format!("{b}").parse().expect("uri");
    n.sides[0]
        .links
        .as_mut()
        .expect("links")
        .add_peer(uri, start);
    let linked = |n: &Net| {
        n.sides
            .iter()
            .all(|s| s.links.as_ref().is_some_and(|l| l.peers().count() == 1))
    };
    while !linked(&n) && n.now < start + Duration::from_secs(2) {
        n.step(start + Duration::from_secs(2));
    }
    assert!(linked(&n), "no link within 2 s");
    eprintln!("linked in {:?} (virtual)", n.now - start);
    // Strangers keep coming for 30 s: the link's connection is never closed.
    let a_conn = n.carrier(0, b).expect("up");
    for _ in 0..30 {
        hold(&mut n, 100);
        n.run_for(Duration::from_secs(1));
    }
    assert!(linked(&n));
    assert_eq!(n.carrier(0, b), Some(a_conn));
    assert!(n.sides[0].closed.is_empty());
    let c = n.sides[1].conns.counters();
    assert!(c.evicted >= 3000, "{c:?}");
    assert_eq!(
        c.refused_total + c.refused_per_address + c.refused_per_prefix,
        0
    );
}
