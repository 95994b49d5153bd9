//! Cookies under load (`link/cookie.rs`): a flood of spoofed inits locks no new peer out, and
//! a forged cookie reply ends nothing.

use super::*;

/// A well-formed init from a spoofed source: any 32 bytes are a Noise ephemeral key.
fn spoofed_init(i: u32) -> (Endpoint, Vec<u8>) {
    let from = Endpoint::udp(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0x0a64_0000 + i)),
        1024 + (i % 60_000) as u16,
    ));
    let mut b = vec![0u8; wire::INIT_LEN];
    wire::emit_init_header(&mut b, Suite::ChaChaPoly, i);
    for (k, x) in b[8..wire::INIT_MAC_AT].iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(k as u8) | 1;
    }
    // Half of them carry a made-up cookie MAC.
    if i.is_multiple_of(2) {
        b[wire::INIT_MAC_AT..wire::INIT_MAC_AT + wire::COOKIE_LEN].fill(0xa5);
    }
    (from, b)
}

/// Sends `n` spoofed inits to `links` at `now`; returns how many it answered with a cookie
/// reply, and takes its answers to them off its queue (they go to addresses nobody has).
fn flood(links: &mut Links, now: Instant, first: u32, n: u32) -> usize {
    let mut out = vec![0u8; 2048];
    let before = links.transmits.len();
    for i in first..first + n {
        let (from, b) = spoofed_init(i);
        links.handle_datagram(now, from, &b, &mut out);
    }
    let answers: Vec<Transmit> = links.transmits.drain(before..).collect();
    assert!(
        answers.iter().all(|t| t.data.len() < wire::INIT_LEN),
        "no answer to a spoofed init is larger than the init"
    );
    answers
        .iter()
        .filter(|t| t.data[0] == wire::TYPE_COOKIE)
        .count()
}

/// Runs the pair under 100,000 spoofed inits a second to B until the link is up (at most
/// 2 s); returns how long that took.
fn link_under_flood(p: &mut Pair) -> Duration {
    let start = p.now;
    let mut next = 1_000_000;
    while !p.up() && p.now < start + Duration::from_secs(2) {
        flood(&mut p.b.links, p.now, next, 100);
        next += 100;
        let t = p.now + Duration::from_millis(1);
        p.step(t);
    }
    assert!(p.up(), "A never linked during the flood");
    p.now - start
}

#[test]
fn under_a_flood_of_spoofed_inits_a_new_peer_gets_a_cookie_then_links() {
    let mut p = Pair::new(None);
    // The flood first spends B's budget for unknown sources: beyond its burst, every init
    // without a MAC gets a cookie reply, and none costs a pending slot. The half that carry
    // a made-up MAC get replies only within a small budget of their own.
    let replies = flood(&mut p.b.links, p.now, 0, 2000);
    let bad_mac_budget = ratelimit::Limits::default().bad_mac_reply_burst as usize;
    assert!(replies >= 1000 - 300, "only {replies} cookie replies");
    assert!(
        replies <= 1000 + bad_mac_budget,
        "{replies} cookie replies: made-up MACs got more than their budget"
    );
    assert!(p.b.links.responding.len() <= 300);
    // The flood goes on while A (a stranger to B) dials.
    let took = link_under_flood(&mut p);
    assert!(took <= Duration::from_millis(100), "linking took {took:?}");
    // What passed between them: init, cookie reply, init with the cookie's MAC, response.
    let kinds: Vec<u8> = p.captured.iter().map(|(_, d)| d[0]).take(4).collect();
    assert_eq!(
        kinds,
        [
            wire::TYPE_INIT,
            wire::TYPE_COOKIE,
            wire::TYPE_INIT,
            wire::TYPE_RESPONSE
        ]
    );
    let second_init = &p.captured[2].1;
    assert!(
        second_init[wire::INIT_MAC_AT..wire::INIT_MAC_AT + wire::COOKIE_LEN]
            .iter()
            .any(|&b| b != 0),
        "the init sent again carries the MAC"
    );
}

#[test]
fn a_cookie_is_reused_for_the_next_init_to_the_same_endpoint() {
    let mut p = Pair::new(None);
    flood(&mut p.b.links, p.now, 0, 1000);
    link_under_flood(&mut p);
    let b_key = identity(2).public_key();
    let now = p.now;
    let idx =
        p.a.links
            .start_handshake(B_ADDR, handshake::Purpose::Rekey(b_key), now)
            .expect("init");
    let init =
        p.a.links
            .transmits
            .iter()
            .rev()
            .find(|t| t.data[0] == wire::TYPE_INIT)
            .expect("queued");
    assert!(
        init.data[wire::INIT_MAC_AT..wire::INIT_MAC_AT + wire::COOKIE_LEN]
            .iter()
            .any(|&b| b != 0),
        "init {idx} should carry the stored cookie's MAC"
    );
}

#[test]
fn forged_cookie_replies_end_nothing() {
    let mut p = Pair::new(None);
    p.blackhole = Some(B_ADDR);
    p.step(p.now + Duration::from_millis(1)); // A sends its init; B's answers are lost.
    let (&index, init) = p.a.links.initiating.iter().next().expect("in flight");
    let echo: [u8; wire::COOKIE_ECHO_LEN] = init.head[8..16].try_into().expect("8 bytes");
    let now = p.now;
    let mut out = vec![0u8; 2048];
    let mut reply = vec![0u8; wire::COOKIE_REPLY_LEN];
    // Off the path: the echo is wrong (or the index), and it is dropped.
    wire::emit_cookie_reply(&mut reply, index, &[0; 8], &[9; 16]);
    let r = p.a.links.handle_datagram(now, B_ADDR, &reply, &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::Handshake));
    wire::emit_cookie_reply(&mut reply, index ^ 1, &echo, &[9; 16]);
    let r = p.a.links.handle_datagram(now, B_ADDR, &reply, &mut out);
    assert_eq!(r, Recv::Dropped(DropReason::Handshake));
    // On the path: the init goes out again, at most twice, and the handshake stays.
    p.a.links.transmits.clear();
    wire::emit_cookie_reply(&mut reply, index, &echo, &[9; 16]);
    for _ in 0..10 {
        assert_eq!(
            p.a.links.handle_datagram(now, B_ADDR, &reply, &mut out),
            Recv::Consumed
        );
    }
    assert_eq!(
        p.a.links.transmits.len(),
        usize::from(cookie::MAX_COOKIE_RESENDS)
    );
    assert!(p.a.links.initiating.contains_key(&index));
    // B not under load ignores the bogus MAC of the stored cookie: the link comes up.
    p.blackhole = None;
    p.run_for(Duration::from_secs(3));
    assert!(p.up(), "a forged cookie reply kept the link down");
}

#[test]
fn an_unanswered_init_is_sent_again_every_quarter_second_until_it_times_out() {
    let mut p = Pair::new(None);
    let start = p.now;
    let b_key = identity(2).public_key();
    let index =
        p.a.links
            .start_handshake(B_ADDR, handshake::Purpose::Rekey(b_key), start)
            .expect("init");
    let first = p.a.links.poll_transmit().expect("the init").data;
    let mut sent = vec![first.clone()];
    let mut t = start;
    while t < start + Duration::from_millis(990) {
        t += Duration::from_millis(10);
        p.a.links.handle_timeout(t);
        while let Some(x) = p.a.links.poll_transmit() {
            assert_eq!(x.to, B_ADDR);
            sent.push(x.data);
        }
    }
    // At 0, 250, 500 and 750 ms: the same bytes, so the responder's answer to any fits.
    // (The pair's dialer starts handshakes of its own meanwhile.)
    let same = sent.iter().filter(|s| **s == first).count();
    assert_eq!(same, 4, "init {index} went out {same} times in its second");
    assert!(p.a.links.initiating.contains_key(&index));
    // At the timeout it is given up (a new attempt is the dialer's business).
    p.a.links
        .handle_timeout(start + p.a.links.cfg.handshake_timeout);
    assert!(!p.a.links.initiating.contains_key(&index));
}

#[test]
fn an_init_sent_again_after_a_cookie_came_carries_its_mac() {
    let mut p = Pair::new(None);
    p.blackhole = Some(B_ADDR);
    p.step(p.now + Duration::from_millis(1));
    let (&index, init) = p.a.links.initiating.iter().next().expect("in flight");
    let echo: [u8; wire::COOKIE_ECHO_LEN] = init.head[8..16].try_into().expect("8 bytes");
    let mut reply = vec![0u8; wire::COOKIE_REPLY_LEN];
    wire::emit_cookie_reply(&mut reply, index, &echo, &[9; 16]);
    let mut out = vec![0u8; 2048];
    let now = p.now;
    p.a.links.handle_datagram(now, B_ADDR, &reply, &mut out);
    p.a.links.transmits.clear();
    p.a.links.handle_timeout(now + handshake::INIT_RESEND);
    let again = p.a.links.poll_transmit().expect("sent again").data;
    assert_ne!(
        again[wire::INIT_MAC_AT..wire::INIT_MAC_AT + wire::COOKIE_LEN],
        [0; wire::COOKIE_LEN]
    );
}

#[test]
fn the_shell_can_answer_only_a_share_of_a_flood_but_proven_inits_are_all_served() {
    let mut p = Pair::new(None);
    // Spend the budget for strangers.
    flood(&mut p.b.links, p.now, 0, 1000);
    p.b.links.set_cookie_share(0.25);
    // Inits without a MAC (the odd ones of `spoofed_init`) beyond the budget.
    let now = p.now;
    let mut out = vec![0u8; 2048];
    let before = p.b.links.transmits.len();
    for i in (10_001..30_000).step_by(2) {
        let (from, b) = spoofed_init(i);
        assert_eq!(
            p.b.links.handle_datagram(now, from, &b, &mut out),
            Recv::Dropped(DropReason::RateLimited)
        );
    }
    let replies = p.b.links.transmits.len() - before;
    assert!(
        (2000..3000).contains(&replies),
        "{replies} cookie replies to 10,000 inits at a share of 1/4"
    );
    // A real initiator draws a share of answers with each init it sends (four a second),
    // then its init with the cookie's MAC is served at once.
    let took = link_under_flood(&mut p);
    assert!(took <= Duration::from_secs(2), "linking took {took:?}");
}
