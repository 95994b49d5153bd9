//! A sequence of datagrams from the network into a link core that has a live peer: whatever
//! arrives, the core must not panic, and it must never deliver a packet (nothing here can carry
//! a valid tag for the live session), on either path (into a buffer, or in place).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::identity::Identity;
use meshd::link::{LinkConfig, Links, Recv};
use meshd::uri::Endpoint;
use std::time::{Duration, Instant};

fn linked() -> (Links, Endpoint, Instant) {
    let now = Instant::now();
    let a_addr = Endpoint::udp("10.0.0.1:7820".parse().unwrap());
    let b_addr = Endpoint::udp("10.0.0.2:7820".parse().unwrap());
    let mut a = Links::new(
        &Identity::from_seed(&[1; 32]),
        LinkConfig::default(),
        1,
        now,
    );
    let mut b = Links::new(
        &Identity::from_seed(&[2; 32]),
        LinkConfig::default(),
        2,
        now,
    );
    a.add_peer(b_addr.to_string().parse().unwrap(), now);
    a.handle_timeout(now);
    let mut out = vec![0u8; 4096];
    for _ in 0..4 {
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, a_addr, &t.data, &mut out);
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, b_addr, &t.data, &mut out);
        }
    }
    assert_eq!(b.peers().count(), 1, "fixture did not link");
    (b, a_addr, now)
}

fuzz_target!(|data: &[u8]| {
    let (mut b, from, mut now) = linked();
    let mut out = vec![0u8; 70_000];
    // Input: [len_hi len_lo time_step bytes...]*
    let mut rest = data;
    while rest.len() >= 3 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 3);
        let step = rest[2];
        now += Duration::from_millis(step as u64 * 20);
        let d = &rest[3..3 + len];
        rest = &rest[3 + len..];
        // An odd time step takes the daemon's path: decrypted where the datagram lies.
        let r = if step % 2 == 1 {
            let mut own = d.to_vec();
            b.handle_datagram_in_place(now, from, &mut own)
        } else {
            b.handle_datagram(now, from, d, &mut out)
        };
        assert!(!matches!(r, Recv::Frame { .. }), "delivered a forged frame");
        b.handle_timeout(now);
        while b.poll_transmit().is_some() {}
    }
});
