//! Joining TCP segments for the TUN device: what is joined, what is not, and that the kernel's
//! segmentation of a joined packet (tun-rs' `gso_split`, which does what the kernel does)
//! gives back the very segments that went in.

use super::*;
use std::io;

const OFF: usize = VIRTIO_NET_HDR_LEN;
const CAP: usize = 2 * VIRTIO_NET_HDR_LEN + 65_535;

/// A TCP segment with a valid checksum, in a buffer with header room and room to grow.
#[derive(Clone, Copy)]
struct Seg {
    v6: bool,
    sport: u16,
    seq: u32,
    len: usize,
    flags: u8,
    ip_id: u16,
    df: bool,
}

fn seg(seq: u32, len: usize) -> Seg {
    Seg {
        v6: true,
        sport: 40_000,
        seq,
        len,
        flags: ACK,
        ip_id: 0,
        df: true,
    }
}

fn build(s: Seg) -> Vec<u8> {
    let ip_len = if s.v6 { 40 } else { 20 };
    let tcp_len = 32; // with 12 bytes of options (NOP NOP timestamp)
    let total = ip_len + tcp_len + s.len;
    let mut p = vec![0u8; total];
    let (src, dst) = if s.v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = TCP;
        p[7] = 64;
        p[8] = 0x02;
        p[23] = 1;
        p[24] = 0x02;
        p[39] = 2;
        (8..24, 24..40)
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&s.ip_id.to_be_bytes());
        p[6] = if s.df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = TCP;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let sum = !tun_rs::checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        (12..16, 16..20)
    };
    let t = ip_len;
    p[t..t + 2].copy_from_slice(&s.sport.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&s.seq.to_be_bytes());
    p[t + 8..t + 12].copy_from_slice(&7u32.to_be_bytes());
    p[t + 12] = ((tcp_len / 4) as u8) << 4;
    p[t + 13] = s.flags;
    p[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
    p[t + 20..t + 24].copy_from_slice(&[1, 1, 8, 10]);
    p[t + 24..t + 28].copy_from_slice(&99u32.to_be_bytes());
    for (i, b) in p[t + tcp_len..].iter_mut().enumerate() {
        *b = (s.seq as usize + i) as u8;
    }
    let tl = (tcp_len + s.len) as u16;
    let sum = tun_rs::checksum_no_fold(&p[src], 0);
    let sum = tun_rs::checksum_no_fold(&p[dst], sum);
    let sum = tun_rs::checksum_no_fold(&[0, TCP, (tl >> 8) as u8, tl as u8], sum);
    let csum = !tun_rs::checksum(&p[t..], sum);
    p[t + 16..t + 18].copy_from_slice(&csum.to_be_bytes());
    let mut b = Vec::with_capacity(CAP);
    b.resize(OFF, 0xee); // header room holds junk: coalesce must overwrite it
    b.extend_from_slice(&p);
    b
}

fn run(segs: &[Seg]) -> (GROTable, Vec<Vec<u8>>) {
    let mut bufs: Vec<Vec<u8>> = segs.iter().map(|s| build(*s)).collect();
    let mut gro = GROTable::default();
    gro.coalesce(&mut bufs, OFF).expect("coalesce");
    (gro, bufs)
}

/// What the kernel makes of a written buffer: its segments, as tun-rs' `gso_split` cuts them.
fn kernel_view(buf: &[u8], v6: bool) -> Vec<Vec<u8>> {
    let hdr = VirtioNetHdr::decode(&buf[..OFF]).expect("header");
    if hdr.gso_type == 0 {
        assert_eq!(hdr.flags, 0, "a packet written alone has an empty header");
        return vec![buf[OFF..].to_vec()];
    }
    assert_eq!(hdr.flags, F_NEEDS_CSUM);
    let mut input = buf[OFF..].to_vec();
    let mut out = vec![vec![0u8; 2048]; 64];
    let mut sizes = vec![0usize; 64];
    let n = tun_rs::gso_split(&mut input, hdr, &mut out, &mut sizes, 0, v6).expect("split");
    (0..n).map(|i| out[i][..sizes[i]].to_vec()).collect()
}

/// The bytes one `writev` of buffer `i`'s pieces hands the kernel.
fn joined(gro: &GROTable, bufs: &[Vec<u8>], i: usize) -> Vec<u8> {
    let mut iov = [io::IoSlice::new(&[]); MAX_PIECES];
    let n = gro.pieces(i, bufs, OFF, &mut iov);
    iov[..n].iter().flat_map(|p| p.iter().copied()).collect()
}

fn written(gro: &GROTable, bufs: &[Vec<u8>], v6: bool) -> Vec<Vec<u8>> {
    gro.to_write
        .iter()
        .flat_map(|&i| kernel_view(&joined(gro, bufs, i), v6))
        .collect()
}

fn originals(segs: &[Seg]) -> Vec<Vec<u8>> {
    segs.iter().map(|s| build(*s)[OFF..].to_vec()).collect()
}

#[test]
fn one_flows_segments_become_one_packet_that_splits_back_into_them() {
    let mut segs: Vec<Seg> = (0..40).map(|i| seg(1000 + i * 1300, 1300)).collect();
    segs[39].flags = ACK | PSH;
    let (gro, bufs) = run(&segs);
    assert_eq!(gro.to_write, vec![0]);
    let hdr = VirtioNetHdr::decode(&bufs[0][..OFF]).expect("header");
    assert_eq!(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
    assert_eq!(hdr.gso_size, 1300);
    assert_eq!(joined(&gro, &bufs, 0).len(), OFF + 72 + 40 * 1300);
    // nothing was copied: the first buffer holds its own segment only
    assert_eq!(bufs[0].len(), OFF + 72 + 1300);
    assert_eq!(written(&gro, &bufs, true), originals(&segs));
}

#[test]
fn ipv4_with_dont_fragment_is_joined_and_its_header_checksum_is_right() {
    let segs: Vec<Seg> = (0..5)
        .map(|i| Seg {
            v6: false,
            ip_id: 300 + i as u16,
            ..seg(5 + i * 1000, 1000)
        })
        .collect();
    let (gro, bufs) = run(&segs);
    assert_eq!(gro.to_write, vec![0]);
    assert_eq!(
        tun_rs::checksum(&joined(&gro, &bufs, 0)[OFF..OFF + 20], 0),
        0xffff
    );
    assert_eq!(written(&gro, &bufs, false), originals(&segs));
    // without don't-fragment, nothing is joined
    let segs: Vec<Seg> = segs.iter().map(|s| Seg { df: false, ..*s }).collect();
    let (gro, _) = run(&segs);
    assert_eq!(gro.to_write, vec![0, 1, 2, 3, 4]);
}

#[test]
fn interleaved_flows_are_joined_each_and_keep_their_order() {
    let a = |i: u32| seg(i * 100, 100);
    let b = |i: u32| Seg {
        sport: 40_001,
        ..seg(7 + i * 100, 100)
    };
    let segs = [a(0), b(0), a(1), b(1), a(2), b(2)];
    let (gro, bufs) = run(&segs);
    assert_eq!(gro.to_write, vec![0, 1]);
    let out = written(&gro, &bufs, true);
    let want = originals(&[a(0), a(1), a(2), b(0), b(1), b(2)]);
    assert_eq!(out, want);
}

#[test]
fn a_segment_out_of_sequence_starts_a_new_packet_after_the_first() {
    let segs = [
        seg(0, 100),
        seg(200, 100),
        seg(100, 100),
        seg(300, 100),
        seg(400, 100),
    ];
    let (gro, bufs) = run(&segs);
    // 200 does not follow 0; 100 does not follow 200; 300 does not follow 100 (joining it to
    // 200 would put it before 100, which came first); 400 follows 300
    assert_eq!(gro.to_write, vec![0, 1, 2, 3]);
    assert_eq!(written(&gro, &bufs, true), originals(&segs));
}

#[test]
fn push_a_short_segment_and_control_flags_end_or_refuse_a_join() {
    // PSH: the segment joins, nothing after it does
    let mut p = seg(100, 100);
    p.flags = ACK | PSH;
    let (gro, _) = run(&[seg(0, 100), p, seg(200, 100)]);
    assert_eq!(gro.to_write, vec![0, 2]);
    // a shorter segment is the last; a longer one never joins
    let (gro, _) = run(&[seg(0, 100), seg(100, 50), seg(150, 100)]);
    assert_eq!(gro.to_write, vec![0, 2]);
    let (gro, _) = run(&[seg(0, 100), seg(100, 200)]);
    assert_eq!(gro.to_write, vec![0, 1]);
    for flags in [
        ACK | 0x01,
        ACK | 0x02,
        ACK | 0x04,
        ACK | 0x20,
        ACK | 0x40,
        ACK | 0x80,
        0,
    ] {
        let mut s = seg(100, 100);
        s.flags = flags;
        let (gro, bufs) = run(&[seg(0, 100), s]);
        assert_eq!(gro.to_write, vec![0, 1], "flags {flags:#x}");
        assert_eq!(written(&gro, &bufs, true), originals(&[seg(0, 100), s]));
    }
}

#[test]
fn no_join_past_64_kb_or_past_the_most_pieces_of_one_write() {
    let segs: Vec<Seg> = (0..60).map(|i| seg(i * 1400, 1400)).collect();
    let (gro, bufs) = run(&segs);
    assert!(gro.to_write.len() >= 2);
    for &i in &gro.to_write {
        assert!(joined(&gro, &bufs, i).len() - OFF <= MAX_LEN);
    }
    assert_eq!(written(&gro, &bufs, true), originals(&segs));
    // small segments: 64 KB would take more pieces than one write may have
    let segs: Vec<Seg> = (0..150).map(|i| seg(i * 10, 10)).collect();
    let (gro, bufs) = run(&segs);
    assert_eq!(gro.to_write, vec![0, MAX_PIECES, 2 * MAX_PIECES]);
    assert_eq!(written(&gro, &bufs, true), originals(&segs));
}

#[test]
fn hostile_bytes_are_written_alone_and_never_panic() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let template = build(seg(0, 64));
    for round in 0..3000 {
        let mut bufs = Vec::new();
        for k in 0..4 {
            let mut b = template.clone();
            // truncate, and flip bytes in the headers
            let cut = OFF + (next() as usize % (b.len() - OFF + 1));
            if round % 3 == 0 {
                b.truncate(cut);
            }
            for _ in 0..(next() % 4) {
                let at = OFF + (next() as usize % (b.len() - OFF).max(1));
                if at < b.len() {
                    b[at] ^= next() as u8;
                }
            }
            if k == 3 {
                b.truncate(next() as usize % (OFF + 1));
            }
            bufs.push(b);
        }
        let mut gro = GROTable::default();
        let _ = gro.coalesce(&mut bufs, OFF);
    }
    let mut gro = GROTable::default();
    assert!(gro.coalesce(&mut [vec![0; 4]], 2).is_err());
}
