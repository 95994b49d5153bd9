//! The writers against a stand-in for the TUN device (a Unix datagram socket pair: one write
//! is one datagram, as one TUN write is one packet): every packet arrives, each flow's in the
//! order it was handed over, joined where the device takes a virtio-net header.

use super::*;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A TCP segment of flow `port` with sequence number `seq` and `len` payload bytes, after
/// header room.
fn segment(port: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
    let mut p = vec![0u8; 60 + len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    p[6] = 6;
    p[7] = 64;
    p[8] = 0x02;
    p[24] = 0x02;
    p[39] = 1;
    p[40..42].copy_from_slice(&port.to_be_bytes());
    p[42..44].copy_from_slice(&5201u16.to_be_bytes());
    p[44..48].copy_from_slice(&seq.to_be_bytes());
    p[52] = 5 << 4;
    p[53] = 0x10;
    for (i, x) in p[60..].iter_mut().enumerate() {
        *x = (seq as usize + i) as u8;
    }
    b.extend_from_slice(&p);
    b
}

/// Reads datagrams until none comes for a while.
fn drain(sock: &UnixDatagram) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// The (port, seq) of each TCP segment in what was written, in order.
fn segments_of(written: &[Vec<u8>], vnet: bool) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    for w in written {
        let p = if vnet {
            &w[VIRTIO_NET_HDR_LEN..]
        } else {
            &w[..]
        };
        let port = u16::from_be_bytes([p[40], p[41]]);
        let seq = u32::from_be_bytes([p[44], p[45], p[46], p[47]]);
        let payload = p.len() - 60;
        // a joined packet holds 100-byte segments back to back
        for k in 0..payload.div_ceil(100) {
            out.push((port, seq + 100 * k as u32));
        }
    }
    out
}

fn run_flows(writers: usize, vnet: bool) {
    let (tun, reader) = UnixDatagram::pair().expect("pair");
    reader.set_nonblocking(false).expect("blocking");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut w = TunWriters::start(tun.as_fd(), writers, vnet, 64, 4096).expect("start");
    assert_eq!(w.len(), writers);
    let ports = [40_000u16, 40_001, 40_002, 40_003, 40_004];
    let reader_thread = std::thread::spawn(move || drain(&reader));
    let mut next = [0u32; 5];
    rt.block_on(async {
        for round in 0..40usize {
            for i in 0..64usize {
                let f = (i + round) % ports.len();
                let (port, seq) = (ports[f], next[f]);
                next[f] += 100;
                let mut b = w.spare();
                b.clear();
                b.extend_from_slice(&segment(port, seq, 100));
                w.push(b);
            }
            w.flush().await;
        }
    });
    drop(w);
    let written = reader_thread.join().expect("reader");
    let got = segments_of(&written, vnet);
    assert_eq!(got.len(), 40 * 64, "every packet arrives once");
    for port in ports {
        let seqs: Vec<u32> = got.iter().filter(|s| s.0 == port).map(|s| s.1).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "flow {port} in order");
        sorted.dedup();
        assert_eq!(sorted.len(), seqs.len(), "flow {port}: no packet twice");
        assert_eq!(seqs.len(), 40 * 64 / ports.len());
    }
    if vnet {
        assert!(written.len() < 40 * 64, "segments of a flow were joined");
    }
}

#[test]
fn every_packet_arrives_and_each_flow_keeps_its_order() {
    run_flows(1, true);
    run_flows(2, true);
    run_flows(3, false);
}

#[test]
fn a_flow_always_goes_to_one_lane_and_flows_spread() {
    let mut seen = [0usize; 4];
    for port in 0..400u16 {
        let p = segment(port, 0, 10);
        let lane = lane_of(&p[VIRTIO_NET_HDR_LEN..], 4);
        assert_eq!(
            lane,
            lane_of(&segment(port, 777, 50)[VIRTIO_NET_HDR_LEN..], 4)
        );
        seen[lane] += 1;
    }
    assert!(
        seen.iter().all(|&n| n > 50),
        "flows spread over the lanes: {seen:?}"
    );
    // anything that is not IP goes to the first lane, never panics
    for len in 0..80 {
        for first in [0u8, 0x45, 0x4f, 0x60, 0xff] {
            let mut p = vec![0x11u8; len];
            if let Some(f) = p.first_mut() {
                *f = first;
            }
            assert!(lane_of(&p, 3) < 3);
        }
    }
    assert_eq!(lane_of(&[], 3), 0);
    assert_eq!(lane_of(&segment(1, 0, 10), 1), 0);
}

#[test]
fn buffers_come_back_and_the_pool_is_bounded() {
    let (tun, reader) = UnixDatagram::pair().expect("pair");
    let reader_thread = std::thread::spawn(move || drain(&reader));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut w = TunWriters::start(tun.as_fd(), 2, false, 16, 4096).expect("start");
    rt.block_on(async {
        for _ in 0..200 {
            for i in 0..16u16 {
                let mut b = w.spare();
                b.clear();
                b.extend_from_slice(&segment(i, 0, 10));
                w.push(b);
            }
            w.flush().await;
        }
    });
    // wait for the writers to give everything back, then take it all
    std::thread::sleep(Duration::from_millis(100));
    w.collect();
    assert!(
        w.pool.len() <= w.pool_max,
        "{} > {}",
        w.pool.len(),
        w.pool_max
    );
    assert!(w.pool.len() > 16, "written buffers were given back");
    // A buffer grown past a packet (the loop sizes one to a datagram before it knows what it
    // is: garbage can be 64 KB) is freed, not kept.
    w.pool.clear();
    rt.block_on(async {
        for i in 0..16u16 {
            let mut b = segment(i, 0, 10);
            b.reserve_exact(60_000);
            w.push(b);
        }
        w.flush().await;
    });
    std::thread::sleep(Duration::from_millis(100));
    w.collect();
    assert!(w.pool.is_empty(), "{} grown buffers kept", w.pool.len());
    drop(w);
    assert_eq!(reader_thread.join().expect("reader").len(), 201 * 16);
}
