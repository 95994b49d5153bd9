//! The link core's data path without syscalls: two `Links` linked in memory; packets of 1,400
//! bytes are encapsulated by one and decrypted, checked and delivered by the other. Shows what
//! the core costs per packet on top of the kernel.
//!
//! Run: `cargo bench -p meshd --bench datapath`. Prints figures; no pass/fail.

use meshd::identity::Identity;
use meshd::link::{FRAME_HEADROOM, LinkConfig, Links, Recv, Send};
use meshd::wire::{Suite, TRANSPORT_OVERHEAD};
use std::net::SocketAddr;
use std::time::Instant;

fn main() {
    for suite in [Suite::AesGcm, Suite::ChaChaPoly] {
        let now = Instant::now();
        let (ia, ib) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let cfg = LinkConfig {
            suite,
            ..LinkConfig::default()
        };
        let mut a = Links::new(&ia, cfg.clone(), 1, now);
        let mut b = Links::new(&ib, cfg, 2, now);
        let a_addr: SocketAddr = "10.0.0.1:7820".parse().expect("literal");
        let b_addr: SocketAddr = "10.0.0.2:7820".parse().expect("literal");
        a.add_peer(format!("udp://{b_addr}").parse().expect("uri"), now);
        a.handle_timeout(now);
        let mut out = vec![0u8; 2048];
        for _ in 0..3 {
            while let Some(t) = a.poll_transmit() {
                b.handle_datagram(now, a_addr, &t.data, &mut out);
            }
            while let Some(t) = b.poll_transmit() {
                a.handle_datagram(now, b_addr, &t.data, &mut out);
            }
        }
        // An IPv6 packet from A's address to B's, 1,400 bytes in all.
        let mut pkt = vec![0u8; FRAME_HEADROOM + 1400];
        let p = &mut pkt[FRAME_HEADROOM..];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(1360u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&ia.address().octets());
        p[24..40].copy_from_slice(&ib.address().octets());
        let mut wire = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
        let n = 300_000u64;
        let (mut enc, mut dec) = (0.0, 0.0);
        for _ in 0..n {
            let t = Instant::now();
            let Send::Transmit { len, .. } = a.encapsulate(now, &mut pkt, &mut wire) else {
                panic!("not sent")
            };
            let t2 = Instant::now();
            let r = b.handle_datagram(now, a_addr, &wire[..len], &mut out);
            let t3 = Instant::now();
            assert!(matches!(r, Recv::Deliver { len: 1400 }), "{r:?}");
            enc += (t2 - t).as_secs_f64();
            dec += (t3 - t2).as_secs_f64();
        }
        println!(
            "{:<18} encapsulate {:>5.0} ns/packet ({:.1} Gbit/s), receive {:>5.0} ns/packet ({:.1} Gbit/s)",
            suite.name(),
            enc * 1e9 / n as f64,
            n as f64 * 1400.0 * 8.0 / enc / 1e9,
            dec * 1e9 / n as f64,
            n as f64 * 1400.0 * 8.0 / dec / 1e9,
        );
    }
}
