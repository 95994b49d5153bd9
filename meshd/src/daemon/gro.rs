//! Receive offload for TUN writes (Linux, TUN with a virtio-net header): consecutive segments
//! of one TCP flow in a batch are joined into one packet of up to 64 KB that the kernel takes
//! with a GSO header, so its TCP stack handles a few large packets instead of many small ones.
//!
//! tun-rs does this too (`send_multiple`), but copies every packet into a new allocation and
//! sums the TCP checksum of every segment before joining it: 6-7% of the daemon's CPU under
//! one TCP stream (`perf`, `docs/BENCHMARKS.md`). Here nothing is allocated or copied: a
//! joined packet is written with one `writev` of its pieces ([`GROTable::pieces`]: the first
//! segment with its headers, then the payload of each segment joined to it, where they lie),
//! so no buffer needs room for 64 KB. Checksums are not verified: every packet written to
//! the TUN device was authenticated by an AEAD (an end-to-end or znet session) or made by this
//! node, so a checksum cannot catch anything the tag did not. A joined packet is marked
//! `NEEDS_CSUM` (the kernel finishes its checksum if it forwards it); a packet written alone
//! keeps an empty header, and the kernel verifies it as before.
//!
//! Joined: TCP over IPv6 (no extension headers) or IPv4 (no options, don't-fragment set, not a
//! fragment), ACK set and no flag but PSH, the same addresses, ports, traffic class or TOS,
//! hop limit, ACK number, header length and options, sequence numbers that follow on, and
//! segments no longer than the first (a shorter one, or one with PSH, is the last).

use std::hash::BuildHasher;
use std::io;
use tun_rs::{VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VirtioNetHdr};

use tun_rs::VIRTIO_NET_HDR_LEN;

const F_NEEDS_CSUM: u8 = 1;
const TCP: u8 = 6;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
/// Most bytes one joined packet may hold (the IP length fields are 16 bits).
const MAX_LEN: usize = 65_535;
/// Flows followed per batch; a packet of a flow beyond these is written alone.
const MAX_ITEMS: usize = 128;
/// Most pieces one joined packet is written in (its first segment and those joined to it).
pub const MAX_PIECES: usize = 64;
/// No buffer: the end of a chain of joined segments.
const NONE: u32 = u32::MAX;
/// Digests of flows (only compared within one batch, so a fixed seed does no harm).
const FLOW: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x706c_616e);

/// A packet others may be joined to.
struct Item {
    /// Index of its buffer.
    head: usize,
    /// A cheap digest of the flow (addresses and ports), compared before the bytes.
    flow: u64,
    v6: bool,
    ip_len: usize,
    /// IP and TCP headers.
    hdr_len: usize,
    /// Payload of the first segment: no later one may be longer.
    gso_size: usize,
    next_seq: u32,
    joined: usize,
    /// Bytes of the joined packet so far, from the IP header on.
    len: usize,
    /// Index of the buffer joined last (the head's, if none was).
    last: usize,
    /// A segment shorter than `gso_size`, or with PSH, was the last one.
    closed: bool,
}

/// The state of one batch's joining (kept between batches so that nothing is allocated).
#[derive(Default)]
pub struct GROTable {
    items: Vec<Item>,
    /// Whether each buffer of the batch was joined to an earlier one.
    consumed: Vec<bool>,
    /// For each buffer, the one joined after it ([`NONE`] if none), and where the payload of
    /// a joined buffer starts.
    next: Vec<u32>,
    payload_at: Vec<usize>,
    /// Indexes of the buffers to write, in order.
    pub(crate) to_write: Vec<usize>,
}

/// The parts of a TCP packet that decide whether it can be joined.
struct Segment {
    v6: bool,
    ip_len: usize,
    hdr_len: usize,
    seq: u32,
    flags: u8,
    flow: u64,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `pkt` as a TCP segment that may be joined, or `None`.
fn segment(pkt: &[u8]) -> Option<Segment> {
    let (v6, ip_len, addrs) = match pkt.first()? >> 4 {
        6 if pkt.len() >= 40 && pkt[6] == TCP && be16(pkt, 4) + 40 == pkt.len() => {
            (true, 40, 8..40)
        }
        4 if pkt.len() >= 20
            && pkt[0] == 0x45
            && pkt[9] == TCP
            && be16(pkt, 2) == pkt.len()
            // don't-fragment set, more-fragments clear, fragment offset zero
            && pkt[6] == 0x40
            && pkt[7] == 0 =>
        {
            (false, 20, 12..20)
        }
        _ => return None,
    };
    let tcp = pkt.get(ip_len..ip_len + 20)?;
    let tcp_len = usize::from(tcp[12] >> 4) * 4;
    let hdr_len = ip_len + tcp_len;
    if tcp_len < 20 || pkt.len() <= hdr_len {
        return None;
    }
    let flags = tcp[13];
    if flags & !PSH != ACK {
        return None;
    }
    let flow = FLOW.hash_one((&pkt[addrs], &tcp[..4]));
    Some(Segment {
        v6,
        ip_len,
        hdr_len,
        seq: be32(tcp, 4),
        flags,
        flow,
    })
}

/// Whether the headers of `pkt` (a segment `s`) match those of the head `head` of `item`
/// in every field that must be equal.
fn same_headers(item: &Item, head: &[u8], s: &Segment, pkt: &[u8]) -> bool {
    if item.flow != s.flow || item.v6 != s.v6 || item.hdr_len != s.hdr_len {
        return false;
    }
    let ip_same = if s.v6 {
        // version, traffic class, flow label; next header, hop limit; addresses
        head[..4] == pkt[..4] && head[6..40] == pkt[6..40]
    } else {
        // TOS; flags; TTL, protocol; addresses (the ID may differ)
        head[1] == pkt[1]
            && head[6] == pkt[6]
            && head[8..10] == pkt[8..10]
            && head[12..20] == pkt[12..20]
    };
    let t = s.ip_len;
    // ports; ACK number, header length, reserved bits; options
    ip_same
        && head[t..t + 4] == pkt[t..t + 4]
        && head[t + 8..t + 13] == pkt[t + 8..t + 13]
        && head[t + 20..s.hdr_len] == pkt[t + 20..s.hdr_len]
}

impl GROTable {
    /// Joins what can be joined in `bufs` (each a packet at `offset`, after room for the
    /// virtio-net header) and writes every header; `to_write` then lists the buffers to write.
    pub fn coalesce<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<()> {
        if offset < VIRTIO_NET_HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room for the header",
            ));
        }
        self.items.clear();
        self.to_write.clear();
        self.consumed.clear();
        self.consumed.resize(bufs.len(), false);
        self.next.clear();
        self.next.resize(bufs.len(), NONE);
        self.payload_at.clear();
        self.payload_at.resize(bufs.len(), 0);
        for i in 0..bufs.len() {
            let Some(pkt) = bufs[i].as_ref().get(offset..) else {
                continue;
            };
            let Some(s) = segment(pkt) else {
                continue;
            };
            let payload = pkt.len() - s.hdr_len;
            // The flow's latest head, if any: a packet that cannot join it becomes the new
            // head, so that a flow's packets keep their order.
            let latest = self.items.iter().rposition(|it| it.flow == s.flow);
            if let Some(k) = latest {
                let item = &self.items[k];
                let head = &bufs[item.head].as_ref()[offset..];
                if !item.closed
                    && s.seq == item.next_seq
                    && payload <= item.gso_size
                    && item.len + payload <= MAX_LEN
                    && item.joined + 1 < MAX_PIECES
                    && same_headers(item, head, &s, pkt)
                {
                    if s.flags & PSH != 0 {
                        // the joined packet carries PSH if any of its segments did
                        bufs[item.head].as_mut()[offset + s.ip_len + 13] |= PSH;
                    }
                    let item = &mut self.items[k];
                    self.next[item.last] = i as u32;
                    self.payload_at[i] = offset + s.hdr_len;
                    item.last = i;
                    item.len += payload;
                    item.next_seq = s.seq.wrapping_add(payload as u32);
                    item.joined += 1;
                    item.closed = payload < item.gso_size || s.flags & PSH != 0;
                    self.consumed[i] = true;
                    continue;
                }
            }
            if self.items.len() < MAX_ITEMS {
                self.items.push(Item {
                    head: i,
                    flow: s.flow,
                    v6: s.v6,
                    ip_len: s.ip_len,
                    hdr_len: s.hdr_len,
                    gso_size: payload,
                    next_seq: s.seq.wrapping_add(payload as u32),
                    joined: 0,
                    len: pkt.len(),
                    last: i,
                    closed: s.flags & PSH != 0,
                });
            }
        }
        for (i, b) in bufs.iter_mut().enumerate() {
            let b = b.as_mut();
            if self.consumed[i] || b.len() < offset {
                continue;
            }
            VirtioNetHdr::default().encode(&mut b[offset - VIRTIO_NET_HDR_LEN..offset])?;
            self.to_write.push(i);
        }
        for item in self.items.iter().filter(|it| it.joined > 0) {
            finish(item, bufs[item.head].as_mut(), offset)?;
        }
        Ok(())
    }

    /// The pieces of the packet `to_write` lists as `i`, into `out`: buffer `i` from its
    /// virtio-net header on, then the payload of every segment joined to it, in order.
    /// Returns how many pieces there are (at most [`MAX_PIECES`]).
    pub fn pieces<'a, B: AsRef<[u8]>>(
        &self,
        i: usize,
        bufs: &'a [B],
        offset: usize,
        out: &mut [io::IoSlice<'a>; MAX_PIECES],
    ) -> usize {
        let first = offset
            .checked_sub(VIRTIO_NET_HDR_LEN)
            .and_then(|room| bufs.get(i)?.as_ref().get(room..));
        let Some(first) = first else {
            return 0;
        };
        out[0] = io::IoSlice::new(first);
        let mut n = 1;
        let mut at = self.next.get(i).copied().unwrap_or(NONE);
        while at != NONE && n < MAX_PIECES {
            let j = at as usize;
            if let Some(p) = bufs
                .get(j)
                .and_then(|b| b.as_ref().get(self.payload_at[j]..))
            {
                out[n] = io::IoSlice::new(p);
                n += 1;
            }
            at = self.next[j];
        }
        n
    }
}

/// Lengths, the IPv4 header checksum, the TCP pseudo-header sum and the GSO header of a
/// joined packet, written into the headers of its first segment.
fn finish(item: &Item, buf: &mut [u8], offset: usize) -> io::Result<()> {
    let (room, pkt) = buf.split_at_mut(offset);
    let len = item.len;
    let tcp_len = len - item.ip_len;
    let (src, dst) = if item.v6 {
        pkt[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        (8..24, 24..40)
    } else {
        pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let sum = !tun_rs::checksum(&pkt[..item.ip_len], 0);
        pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        (12..16, 16..20)
    };
    let trailer = [0, TCP, (tcp_len >> 8) as u8, tcp_len as u8];
    let sum = tun_rs::checksum_no_fold(&pkt[src], 0);
    let sum = tun_rs::checksum_no_fold(&pkt[dst], sum);
    let pseudo = tun_rs::checksum(&trailer, sum);
    pkt[item.ip_len + 16..item.ip_len + 18].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if item.v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        },
        hdr_len: item.hdr_len as u16,
        gso_size: item.gso_size as u16,
        csum_start: item.ip_len as u16,
        csum_offset: 16,
    };
    hdr.encode(&mut room[offset - VIRTIO_NET_HDR_LEN..])
}

#[cfg(test)]
#[path = "gro_tests.rs"]
mod tests;
