//! Datagrams (cookie replies above all) into a link core whose init is in flight: whatever
//! arrives, the core must not panic, must send its init again at most twice per init, and the
//! handshake must still complete afterwards: no forged datagram ends it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::identity::Identity;
use meshd::link::{LinkConfig, Links};
use meshd::uri::Endpoint;
use meshd::wire::{self, Message};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
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
    let init = a.poll_transmit().expect("an init").data;
    let Ok(Message::Init { sender, noise, .. }) = wire::parse(&init) else {
        panic!("not an init");
    };
    let mut echo = [0u8; wire::COOKIE_ECHO_LEN];
    echo.copy_from_slice(&noise[..wire::COOKIE_ECHO_LEN]);
    let mut out = vec![0u8; 70_000];
    let mut resent = 0;
    // Input: [kind len bytes...]*; kind 0: a cookie reply with the real index and echo and
    // the next 16 bytes as its cookie (an attacker on the path); otherwise the bytes as they are.
    let mut rest = data;
    while rest.len() >= 2 {
        let kind = rest[0];
        let len = usize::from(rest[1]).min(rest.len() - 2);
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let d = if kind == 0 {
            let mut c = [0u8; wire::COOKIE_LEN];
            for (x, y) in c.iter_mut().zip(bytes) {
                *x = *y;
            }
            let mut r = vec![0u8; wire::COOKIE_REPLY_LEN];
            wire::emit_cookie_reply(&mut r, sender, &echo, &c);
            r
        } else {
            bytes.to_vec()
        };
        a.handle_datagram(now, b_addr, &d, &mut out);
        while let Some(t) = a.poll_transmit() {
            if t.data.first() == Some(&wire::TYPE_INIT) {
                resent += 1;
            }
        }
    }
    assert!(resent <= 2, "init sent again {resent} times");
    // The real answer still completes the handshake.
    b.handle_datagram(now, a_addr, &init, &mut out);
    for _ in 0..4 {
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, b_addr, &t.data, &mut out);
        }
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, a_addr, &t.data, &mut out);
        }
    }
    assert_eq!(
        a.peers().count(),
        1,
        "a forged datagram ended the handshake"
    );
});
