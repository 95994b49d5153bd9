//! A restarted end-to-end peer is noticed at its first `E2E_STALE` hint, and a forged hint
//! costs a handshake, never the session.

use meshd::e2e::{E2e, E2eConfig, Encrypt, Received, wire};
use meshd::identity::Identity;
use std::net::Ipv6Addr;
use std::time::Instant;

fn packet(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[44..46].copy_from_slice(&8u16.to_be_bytes());
    p
}

/// Moves every pending message from `from` to `to` and back until both are quiet.
fn settle(now: Instant, a: &mut E2e, ia: &Identity, b: &mut E2e, ib: &Identity) -> usize {
    let mut delivered = 0;
    let mut out = vec![0u8; 4096];
    for _ in 0..8 {
        while let Some((_, m)) = a.poll_transmit() {
            if let Received::Deliver { .. } = b.handle(now, &ia.public_key(), &m, &mut out) {
                delivered += 1;
            }
        }
        while let Some((_, m)) = b.poll_transmit() {
            if let Received::Deliver { .. } = a.handle(now, &ib.public_key(), &m, &mut out) {
                delivered += 1;
            }
        }
    }
    delivered
}

/// A sends one packet to B on its session (it must have one); returns the DATA message.
fn data(now: Instant, a: &mut E2e, ia: &Identity, ib: &Identity) -> Vec<u8> {
    let mut out = Vec::new();
    let r = a.encrypt(
        now,
        &ib.public_key(),
        &packet(ia.address(), ib.address()),
        &mut out,
    );
    assert_eq!(r, Encrypt::Ready);
    out
}

#[test]
fn a_restarted_remote_is_noticed_at_the_first_stale_hint() {
    let (ia, ib) = (Identity::from_seed(&[3; 32]), Identity::from_seed(&[4; 32]));
    let now = Instant::now();
    let mut a = E2e::new(&ia, E2eConfig::default(), 1, now);
    let mut b = E2e::new(&ib, E2eConfig::default(), 2, now);
    let mut out = Vec::new();
    let p = packet(ia.address(), ib.address());
    assert_eq!(
        a.encrypt(now, &ib.public_key(), &p, &mut out),
        Encrypt::Queued
    );
    assert_eq!(settle(now, &mut a, &ia, &mut b, &ib), 1);

    // B restarts: no sessions. A's next packet is answered with a hint, not dropped silently.
    let mut b = E2e::new(&ib, E2eConfig::default(), 3, now);
    let msg = data(now, &mut a, &ia, &ib);
    let mut o = vec![0u8; 4096];
    assert_eq!(
        b.handle(now, &ia.public_key(), &msg, &mut o),
        Received::Consumed
    );
    let (to, hint) = b.poll_transmit().expect("a stale hint");
    assert_eq!(to, ia.public_key());
    assert_eq!(hint.len(), wire::STALE_LEN);
    assert!(hint.len() < msg.len(), "no amplification");
    // A handshakes again at once; the new session carries traffic right away.
    a.handle(now, &ib.public_key(), &hint, &mut o);
    let (_, init) = a.poll_transmit().expect("a new handshake");
    assert_eq!(init[0], wire::TYPE_INIT);
    assert_eq!(
        b.handle(now, &ia.public_key(), &init, &mut o),
        Received::Consumed
    );
    settle(now, &mut a, &ia, &mut b, &ib);
    let msg = data(now, &mut a, &ia, &ib);
    assert!(matches!(
        b.handle(now, &ia.public_key(), &msg, &mut o),
        Received::Deliver { .. }
    ));
}

#[test]
fn a_forged_stale_hint_never_costs_the_session() {
    let (ia, ib) = (Identity::from_seed(&[5; 32]), Identity::from_seed(&[6; 32]));
    let now = Instant::now();
    let mut a = E2e::new(&ia, E2eConfig::default(), 1, now);
    let mut b = E2e::new(&ib, E2eConfig::default(), 2, now);
    let mut out = Vec::new();
    let p = packet(ia.address(), ib.address());
    assert_eq!(
        a.encrypt(now, &ib.public_key(), &p, &mut out),
        Encrypt::Queued
    );
    assert_eq!(settle(now, &mut a, &ia, &mut b, &ib), 1);
    let mut o = vec![0u8; 4096];
    // A hint naming an index A does not use: nothing at all.
    for i in 0..100u32 {
        a.handle(now, &ib.public_key(), &wire::emit_stale(i), &mut o);
    }
    assert!(a.poll_transmit().is_none());
    // A hint naming the real index (an attacker on the path can read it): one handshake, and
    // meanwhile the live session still carries traffic both ways.
    let msg = data(now, &mut a, &ia, &ib);
    let real = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
    a.handle(now, &ib.public_key(), &wire::emit_stale(real), &mut o);
    assert!(
        a.poll_transmit()
            .is_some_and(|(_, m)| m[0] == wire::TYPE_INIT)
    );
    a.handle(now, &ib.public_key(), &wire::emit_stale(real), &mut o);
    assert!(
        a.poll_transmit().is_none(),
        "one handshake in flight at a time"
    );
    assert!(matches!(
        b.handle(now, &ia.public_key(), &msg, &mut o),
        Received::Deliver { .. }
    ));
    let back = data(now, &mut b, &ib, &ia);
    assert!(matches!(
        a.handle(now, &ib.public_key(), &back, &mut o),
        Received::Deliver { .. }
    ));
}
