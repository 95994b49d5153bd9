//! Any bytes as a LAN discovery announcement, from a few sources on a few interfaces: no
//! panic, and nothing that names a key is accepted unless that key signed it (the fuzzer
//! cannot sign for key 1).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::discovery::Receiver;
use meshd::identity::Identity;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let own = Identity::from_seed(&[2; 32]).public_key();
    let victim = Identity::from_seed(&[1; 32]).public_key();
    let mut now = Instant::now();
    let mut rx = Receiver::new(own, now);
    // Input: [source time_step len bytes...]*
    let mut rest = data;
    while rest.len() >= 3 {
        let from = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(rest[0] % 4)),
            7822,
            0,
            2 + u32::from(rest[0] >> 6),
        ));
        now += Duration::from_millis(u64::from(rest[1]) * 10);
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if let Ok(a) = rx.handle(now, from, bytes) {
            assert_ne!(
                a.key, victim,
                "accepted an announcement the victim never signed"
            );
        }
    }
});
