//! Liveness on the virtual pair: unanswered data, fast redial, stale hints, incarnations
//! ([`crate::link::liveness`]).

use super::*;

fn b_key() -> PublicKey {
    identity(2).public_key()
}

/// A sends a small packet to B every 10 ms for `d`.
fn stream(p: &mut Pair, d: Duration) {
    let end = p.now + d;
    while p.now < end {
        p.send(A_ADDR, addr(1), addr(2), 64);
        p.run_for(Duration::from_millis(10));
    }
}

#[test]
fn a_restarted_passive_peer_is_relinked_at_its_first_stale_hint() {
    // Only A dials; B restarts (a new incarnation, no sessions) and does not dial back.
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    let old_link = p.a.links.peers[&b_key()].link;
    let now = p.now;
    p.b.links = Links::new(&identity(2), LinkConfig::default(), 77, now);
    p.b.delivered.clear();
    let start = p.now;
    while p.now < start + Duration::from_secs(2) && p.b.delivered.is_empty() {
        p.send(A_ADDR, addr(1), addr(2), 64);
        p.run_for(Duration::from_millis(10));
    }
    let took = p.now - start;
    assert!(!p.b.delivered.is_empty(), "A never handshook again");
    // A packet out, a hint back, a handshake (10 ms each way on this pair).
    assert!(took <= Duration::from_millis(100), "took {took:?}");
    // The new instance is a new link for the router: down, then up.
    assert_ne!(p.a.links.peers[&b_key()].link, old_link);
}

#[test]
fn a_forged_stale_hint_costs_a_handshake_and_never_the_session() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    let link = p.a.links.peers[&b_key()].link;
    let remote = p.a.links.peers[&b_key()].sessions[0].remote_index;
    let handshakes = p.a.links.counters.handshakes_completed;
    let mut out = vec![0u8; 64];
    let now = p.now;
    // An unknown index, or the right index from another address: ignored.
    let r =
        p.a.links
            .handle_datagram(now, B_ADDR, &wire::emit_stale(remote ^ 1), &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::UnknownSession));
    let r =
        p.a.links
            .handle_datagram(now, B_ALIAS, &wire::emit_stale(remote), &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::UnknownSession));
    assert!(p.a.links.peers[&b_key()].rekey_in_flight.is_none());
    // The right index from B's address (an attacker on the path sees both): one handshake.
    let r =
        p.a.links
            .handle_datagram(now, B_ADDR, &wire::emit_stale(remote), &mut out);
    assert_eq!(r, Recv::Consumed);
    assert!(p.a.links.peers[&b_key()].rekey_in_flight.is_some());
    stream(&mut p, Duration::from_millis(200));
    // Same link (same incarnation), one more session, every packet delivered.
    assert_eq!(p.a.links.peers[&b_key()].link, link);
    assert_eq!(p.a.links.counters.handshakes_completed, handshakes + 1);
    assert_eq!(p.b.delivered.len(), 20);
    assert_eq!(count_link_downs(&mut p), 0);
}

#[test]
fn stale_hints_are_rate_limited_and_smaller_than_what_they_answer() {
    let mut p = Pair::new(None);
    let now = p.now;
    let mut out = vec![0u8; 2048];
    for i in 0..1000u32 {
        let mut d = vec![0u8; wire::TRANSPORT_OVERHEAD];
        wire::emit_transport_header(&mut d, i.wrapping_mul(2_654_435_761), 0);
        p.b.links.handle_datagram(now, A_ADDR, &d, &mut out);
    }
    let mut hints = 0;
    while let Some(t) = p.b.links.poll_transmit() {
        if t.data.first() == Some(&wire::TYPE_STALE) {
            assert!(t.data.len() < wire::TRANSPORT_OVERHEAD);
            hints += 1;
        }
    }
    assert!(
        hints as f64 <= crate::link::liveness::STALE_RATE.burst,
        "{hints} hints for 1000 datagrams at once"
    );
}

#[test]
fn data_unanswered_for_half_a_second_takes_the_link_down() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    count_link_downs(&mut p);
    p.blackhole = Some(B_ADDR);
    let cut = p.now;
    let mut down = None;
    while p.now < cut + Duration::from_secs(3) {
        p.send(A_ADDR, addr(1), addr(2), 64);
        p.run_for(Duration::from_millis(10));
        if !p.a.links.peers.contains_key(&b_key()) {
            down = Some(p.now - cut);
            break;
        }
    }
    let down = down.expect("the link never went down");
    assert!(
        down <= crate::link::liveness::SILENT_MIN + Duration::from_millis(50),
        "down after {down:?}"
    );
}

#[test]
fn one_way_traffic_keeps_a_link_up() {
    // B only receives: its passive keepalives answer A's data in time, for minutes.
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    count_link_downs(&mut p);
    p.latency = Duration::from_millis(150);
    stream(&mut p, Duration::from_secs(60));
    p.run_for(Duration::from_millis(200));
    assert_eq!(count_link_downs(&mut p), 0);
    assert_eq!(p.b.delivered.len(), 6000);
}

#[test]
fn a_link_that_was_up_a_moment_ago_is_back_within_a_redial_of_the_repair() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    p.blackhole = Some(B_ADDR);
    stream(&mut p, Duration::from_secs(3));
    assert!(!p.a.links.peers.contains_key(&b_key()), "still up");
    p.blackhole = None;
    let healed = p.now;
    while p.now < healed + Duration::from_secs(3) && !p.up() {
        p.run_for(Duration::from_millis(5));
    }
    let took = p.now - healed;
    // The next fast redial, then one round trip.
    assert!(
        took <= crate::link::liveness::FAST_REDIAL + Duration::from_millis(30),
        "took {took:?}"
    );
    // After FAST_FOR, a peer that stays away is dialed with the usual back-off again.
    p.blackhole = Some(B_ADDR);
    stream(&mut p, Duration::from_secs(1));
    p.run_for(crate::link::liveness::FAST_FOR);
    let before = p.a.links.counters.tx_datagrams;
    p.run_for(Duration::from_secs(30));
    let inits = p.a.links.counters.tx_datagrams - before;
    assert!(
        inits <= 8,
        "{inits} datagrams in 30 s after the fast period"
    );
}

#[test]
fn a_handshake_sent_again_is_no_round_trip_sample_and_the_next_cut_is_seen_in_time() {
    // A's first inits are lost (an outage): the link comes up on a copy sent later.
    let mut p = Pair::new(None);
    p.blackhole = Some(A_ADDR);
    p.run_for(handshake::INIT_RESEND * 2 + Duration::from_millis(50));
    assert!(!p.up());
    p.blackhole = None;
    p.run_for(handshake::INIT_RESEND + Duration::from_millis(100));
    assert!(p.up());
    // The 20 ms path, not the outage, decides how soon unanswered data counts.
    let cfg = LinkConfig::default();
    let silent = p.a.links.peers[&b_key()].silent_after(&cfg);
    assert_eq!(silent, crate::link::liveness::SILENT_MIN, "{silent:?}");
    // And so it does: B goes silent, A's data goes unanswered, the link is down in time.
    stream(&mut p, Duration::from_millis(200));
    p.blackhole = Some(B_ADDR);
    let cut = p.now;
    while p.up() && p.now < cut + Duration::from_secs(3) {
        stream(&mut p, Duration::from_millis(10));
    }
    let took = p.now - cut;
    assert!(
        took <= crate::link::liveness::SILENT_MIN + Duration::from_millis(100),
        "down after {took:?}"
    );
}

#[test]
fn a_moved_frame_moves_the_peer_at_once_and_only_once() {
    let mut p = Pair::new(None);
    p.run_for(Duration::from_millis(200));
    assert!(p.up());
    let ka = identity(1).public_key();
    while p.b.links.poll_event().is_some() {}
    // A's network changed: it tells B, from wherever it is now.
    let now = p.now;
    assert_eq!(p.a.links.network_changed(now), 1);
    let moved: Vec<_> = std::iter::from_fn(|| p.a.links.poll_transmit()).collect();
    assert_eq!(moved.len(), 1, "one MOVED to the one peer");
    assert_eq!(moved[0].to, B_ADDR);
    let new_a = Endpoint::udp("10.1.0.9:40000".parse().expect("addr"));
    let mut out = vec![0u8; 2048];
    let r =
        p.b.links
            .handle_datagram(now, new_a, &moved[0].data, &mut out);
    assert_eq!(r, Recv::Consumed);
    // B sends there at once (no waiting for the old path to fall silent), and the node is
    // told so that it reports what it sees.
    assert_eq!(p.b.links.peers[&ka].endpoint, new_a);
    assert!(
        std::iter::from_fn(|| p.b.links.poll_event())
            .any(|e| matches!(e, Event::PeerMoved { key } if key == ka))
    );
    // The same datagram again, from elsewhere (a replay by someone on the path): dropped.
    let evil = Endpoint::udp("192.0.2.66:1".parse().expect("addr"));
    let r =
        p.b.links
            .handle_datagram(now, evil, &moved[0].data, &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::Replay));
    assert_eq!(p.b.links.peers[&ka].endpoint, new_a);
    // A fresh MOVED right after (the peer itself, from an address it spoofs): the link stays
    // until MOVED_AGAIN has passed since the last MOVED moved it.
    let mut moved_from = |p: &mut Pair, at: Instant, from: Endpoint| {
        p.a.links.network_changed(at);
        let d: Vec<_> = std::iter::from_fn(|| p.a.links.poll_transmit()).collect();
        p.b.links.handle_datagram(at, from, &d[0].data, &mut out)
    };
    assert_eq!(moved_from(&mut p, now, evil), Recv::Consumed);
    assert_eq!(p.b.links.peers[&ka].endpoint, new_a, "moved again at once");
    let later = now + crate::link::paths::MOVED_AGAIN;
    assert_eq!(moved_from(&mut p, later, evil), Recv::Consumed);
    assert_eq!(p.b.links.peers[&ka].endpoint, evil);
}
