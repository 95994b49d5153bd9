//! A bulk TCP transfer over the overlay, checked end to end with SHA-256.

use crate::Node;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Deterministic bytes that do not compress or repeat.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Sends `total` bytes from `a` to `b`'s overlay address over TCP, and checks that exactly
/// those bytes arrived (SHA-256). Returns the seconds it took; fails the test otherwise.
pub fn intact(a: &Node, b: &Node, total: usize) -> f64 {
    intact_on(a, b, total, 5001)
}

/// As [`intact`], to TCP port `port` of `b` (transfers on different ports may run at once).
pub fn intact_on(a: &Node, b: &Node, total: usize, port: u16) -> f64 {
    let (b_addr, _) = b.identity();
    let listen = SocketAddr::new(b_addr.into(), port);
    let listener =
        b.ns.enter(move || TcpListener::bind(listen).expect("bind on B's overlay address"));
    let receiver = b.ns.spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k;
                }
                Err(e) => panic!("receive failed after {n} bytes: {e}"),
            }
        }
        (n, h.finalize().to_vec())
    });
    let started = Instant::now();
    let sent = a.ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&listen, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut left = total;
        while left > 0 {
            let k = left.min(buf.len());
            fill(&mut buf[..k], &mut state);
            s.write_all(&buf[..k]).expect("send");
            h.update(&buf[..k]);
            left -= k;
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        h.finalize().to_vec()
    });
    let (received, got) = receiver.join().expect("receiver thread");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(received, total);
    assert_eq!(
        got, sent,
        "SHA-256 of what arrived differs from what was sent"
    );
    secs
}
