//! A replayed end-to-end handshake init must not take traffic away from the live session.
//!
//! The first IK message carries no freshness, so anyone who saw it on the path can send it
//! again, and the responder cannot tell. The responder therefore sends nothing on a session
//! until the initiator has sent on it; a replay yields a session that is never confirmed and
//! never used, and cannot push out the one in use.

use meshd::e2e::{E2e, E2eConfig, Encrypt, Received};
use meshd::identity::Identity;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

fn udp_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[44..46].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Delivers every pending message of `from` to `to`; returns the packets `to` delivered.
fn pump(now: Instant, from: &mut E2e, from_id: &Identity, to: &mut E2e) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some((_, msg)) = from.poll_transmit() {
        let mut out = vec![0u8; 4096];
        if let Received::Deliver { len, .. } = to.handle(now, &from_id.public_key(), &msg, &mut out)
        {
            got.push(out[..len].to_vec());
        }
    }
    got
}

#[test]
fn a_replayed_init_does_not_break_the_session() {
    let (ia, ic) = (Identity::from_seed(&[7; 32]), Identity::from_seed(&[9; 32]));
    let mut now = Instant::now();
    let mut a = E2e::new(&ia, E2eConfig::default(), 1, now);
    let mut c = E2e::new(&ic, E2eConfig::default(), 2, now);
    let (ka, kc) = (ia.public_key(), ic.public_key());
    let to_c = udp_packet(ia.address(), ic.address(), b"a to c");
    let to_a = udp_packet(ic.address(), ia.address(), b"c to a");

    let mut out = Vec::new();
    assert_eq!(a.encrypt(now, &kc, &to_c, &mut out), Encrypt::Queued);
    let (_, init) = a.poll_transmit().expect("an init");
    let mut scratch = vec![0u8; 4096];
    assert_eq!(c.handle(now, &ka, &init, &mut scratch), Received::Consumed);
    // Before the initiator has sent on it, the responder does not use the new session (it
    // queues, and may start a handshake of its own).
    assert_eq!(c.encrypt(now, &ka, &to_a, &mut out), Encrypt::Queued);
    let (mut at_a, mut at_c) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        at_a.extend(pump(now, &mut c, &ic, &mut a));
        at_c.extend(pump(now, &mut a, &ia, &mut c));
    }
    assert_eq!(at_c, vec![to_c.clone()]);
    assert_eq!(at_a, vec![to_a.clone()]);

    for round in 0..10 {
        now += Duration::from_secs(2);
        // Someone replays A's init: C answers (it cannot tell) and A ignores the answer.
        assert_eq!(c.handle(now, &ka, &init, &mut scratch), Received::Consumed);
        let mut got_a = pump(now, &mut c, &ic, &mut a);
        // C still sends on the live session, and A can read it.
        out.clear();
        assert_eq!(
            c.encrypt(now, &ka, &to_a, &mut out),
            Encrypt::Ready,
            "round {round}"
        );
        let mut o = vec![0u8; 4096];
        if let Received::Deliver { len, .. } = a.handle(now, &kc, &out, &mut o) {
            got_a.push(o[..len].to_vec());
        }
        assert!(
            got_a.contains(&to_a),
            "round {round}: A could not read C's packet"
        );
        out.clear();
        assert_eq!(a.encrypt(now, &kc, &to_c, &mut out), Encrypt::Ready);
        let mut o = vec![0u8; 4096];
        assert!(matches!(
            c.handle(now, &ka, &out, &mut o),
            Received::Deliver { .. }
        ));
    }
}
