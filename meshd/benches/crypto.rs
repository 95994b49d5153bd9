//! Crypto back-end figures behind the choice of snow's ring resolver and of the cipher suites:
//! encrypt + decrypt of 1,400-byte packets through snow's stateless transport, and the cost of a
//! whole XX handshake, for snow's default (RustCrypto) and ring resolvers.
//!
//! Run: `cargo bench -p meshd --bench crypto`. Prints a table; no pass/fail.

use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
use snow::{Builder, StatelessTransportState};
use std::time::Instant;

fn builder(name: &str, ring: bool) -> Builder<'static> {
    let params = name.parse().expect("noise params");
    if ring {
        Builder::with_resolver(
            params,
            Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
        )
    } else {
        Builder::with_resolver(params, Box::new(DefaultResolver))
    }
}

fn pair(name: &str, ring: bool) -> (StatelessTransportState, StatelessTransportState) {
    let ki = builder(name, ring).generate_keypair().expect("keypair");
    let kr = builder(name, ring).generate_keypair().expect("keypair");
    let mut i = builder(name, ring)
        .local_private_key(&ki.private)
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut r = builder(name, ring)
        .local_private_key(&kr.private)
        .and_then(|b| b.build_responder())
        .expect("responder");
    let (mut m, mut p) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(&[], &mut m).expect("m1");
    r.read_message(&m[..n], &mut p).expect("m1");
    let n = r.write_message(&[], &mut m).expect("m2");
    i.read_message(&m[..n], &mut p).expect("m2");
    let n = i.write_message(&[], &mut m).expect("m3");
    r.read_message(&m[..n], &mut p).expect("m3");
    (
        i.into_stateless_transport_mode().expect("transport"),
        r.into_stateless_transport_mode().expect("transport"),
    )
}

fn main() {
    println!(
        "| resolver | suite | ns per packet (encrypt+decrypt, 1400 B) | Gbit/s | XX handshake (both sides) µs |"
    );
    println!("|---|---|---|---|---|");
    for ring in [false, true] {
        for suite in ["ChaChaPoly", "AESGCM"] {
            let name = format!("Noise_XX_25519_{suite}_BLAKE2s");
            let (i, r) = pair(&name, ring);
            let pt = vec![7u8; 1400];
            let (mut ct, mut out) = (vec![0u8; 1500], vec![0u8; 1500]);
            let n = 200_000u64;
            let t = Instant::now();
            for k in 0..n {
                let l = i.write_message(k, &pt, &mut ct).expect("encrypt");
                r.read_message(k, &ct[..l], &mut out).expect("decrypt");
            }
            let s = t.elapsed().as_secs_f64();
            let hs = 300;
            let t = Instant::now();
            for _ in 0..hs {
                let _ = pair(&name, ring);
            }
            let hs_us = t.elapsed().as_secs_f64() * 1e6 / hs as f64;
            println!(
                "| {} | {suite} | {:.0} | {:.2} | {hs_us:.0} |",
                if ring { "ring" } else { "default (RustCrypto)" },
                s * 1e9 / n as f64,
                n as f64 * 1400.0 * 8.0 / s / 1e9,
            );
        }
    }
}
