//! Messages in flight, held compactly: the engine's queue holds every message between its
//! sending and its arrival, and in a large network most of those bytes are node records that
//! lookup answers and ring messages carry again and again (at the peak of a 2,000-node run,
//! 11.4 MB of records in flight were 0.7 MB of distinct ones). Such a message is held as the
//! bytes before its records and the slots of its records in [`Records`], which holds each
//! distinct record once; any other message as its bytes. Either way in one allocation, with
//! the link it crosses (a 10,000-node run has hundreds of thousands of messages in flight at
//! its peak: a box for the message, one for its bytes and one for its records' handles cost
//! about 80 bytes more each). A message is rebuilt byte for byte before a router sees it.
//!
//! A routed message's header is held the same way: the destination's key and place, and the
//! source's, are two more shared pieces (most messages in flight go to a few ring and table
//! neighbours of their sender, and every message of a sender names the same source), so that
//! the bytes held per message are the three first bytes of the header (kind, hop limit,
//! watermark) and those of the body before its records.

use std::collections::HashMap;
use std::sync::Arc;

/// Bytes before the records' slots: the sender, the receiver, the number of records.
const PREFIX: usize = 4 + 4 + 1;

/// A message on its way: `from` (4 bytes), `to` (4), the number of shared pieces `n` (1),
/// their `n` slots in [`Records`] (4 each), then the bytes of the message not shared.
///
/// With no shared piece, those bytes are the message. Otherwise it is routed, and it is: the
/// first [`DEST_KEY_AT`] bytes held, the first two pieces (destination key and place, source
/// key and place), the rest of the bytes held (the body before its records), then the other
/// pieces (its records).
pub struct InFlight(Box<[u8]>);

impl InFlight {
    fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_le_bytes(b)
    }

    /// The node that sent it.
    pub fn from(&self) -> u32 {
        self.u32_at(0)
    }

    /// The node it goes to.
    pub fn to(&self) -> u32 {
        self.u32_at(4)
    }

    /// The slots of its records, in order.
    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.0[8] as usize).map(|i| self.u32_at(PREFIX + 4 * i))
    }

    /// Its bytes not shared.
    fn head(&self) -> &[u8] {
        &self.0[PREFIX + 4 * self.0[8] as usize..]
    }
}

/// Where the destination's key begins: the part of a routed header held as it is ends there.
const DEST_KEY_AT: usize = routing::wire::DEST_KEY_AT;

/// One part of a message in flight, in order: bytes it holds, or a shared piece.
enum Part<'a> {
    Held(&'a [u8]),
    Shared(u32),
}

/// The records carried by messages in flight, each held once, in a slot counted by the
/// messages that carry it.
#[derive(Default)]
pub struct Records {
    /// Record → its slot.
    held: HashMap<Arc<[u8]>, u32>,
    /// By slot: the record (none: free) and how many times messages in flight carry it.
    slots: Vec<(Option<Arc<[u8]>>, u32)>,
    /// Free slots.
    free: Vec<u32>,
}

impl Records {
    /// A message from `from` to `to` to hold in flight.
    pub fn pack(&mut self, from: u32, to: u32, msg: &[u8]) -> InFlight {
        let Ok(h) = routing::wire::RoutedHeader::decode(msg) else {
            return Self::hold(from, to, &[], &[msg]);
        };
        let offsets = routing::wire::record_offsets(msg).unwrap_or_default();
        let first = offsets.first().copied().unwrap_or(msg.len());
        let ends = offsets.iter().skip(1).copied().chain([msg.len()]);
        let src_at = h.src_key_at();
        let mut slots = vec![
            self.share(&msg[DEST_KEY_AT..src_at]),
            self.share(&msg[src_at..h.body_at]),
        ];
        for (&a, b) in offsets.iter().zip(ends) {
            slots.push(self.share(&msg[a..b]));
        }
        Self::hold(
            from,
            to,
            &slots,
            &[&msg[..DEST_KEY_AT], &msg[h.body_at..first]],
        )
    }

    fn hold(from: u32, to: u32, slots: &[u32], held: &[&[u8]]) -> InFlight {
        let len = held.iter().map(|h| h.len()).sum::<usize>();
        let mut b = Vec::with_capacity(PREFIX + 4 * slots.len() + len);
        b.extend_from_slice(&from.to_le_bytes());
        b.extend_from_slice(&to.to_le_bytes());
        // (At most `MAX_FOUND` records and the header's two pieces: a message with more
        // records is not decoded by `record_offsets`, and holds its records as bytes.)
        b.push(slots.len() as u8);
        for s in slots {
            b.extend_from_slice(&s.to_le_bytes());
        }
        for h in held {
            b.extend_from_slice(h);
        }
        InFlight(b.into_boxed_slice())
    }

    /// Its parts, in order.
    fn parts<'a>(m: &'a InFlight) -> impl Iterator<Item = Part<'a>> + 'a {
        let head = m.head();
        let mut slots = m.slots();
        let routed = m.0[8] > 0;
        let (a, b) = if routed {
            head.split_at(DEST_KEY_AT)
        } else {
            (head, &[][..])
        };
        let header = if routed {
            let (d, s) = (slots.next(), slots.next());
            [
                Some(Part::Held(a)),
                Some(Part::Shared(d.unwrap_or_default())),
                Some(Part::Shared(s.unwrap_or_default())),
                Some(Part::Held(b)),
            ]
        } else {
            [Some(Part::Held(a)), None, None, None]
        };
        header.into_iter().flatten().chain(slots.map(Part::Shared))
    }

    fn part<'a>(&'a self, p: &Part<'a>) -> &'a [u8] {
        match p {
            Part::Held(b) => b,
            Part::Shared(s) => self.record(*s),
        }
    }

    /// Its length in bytes.
    pub fn len_of(&self, m: &InFlight) -> usize {
        Self::parts(m).map(|p| self.part(&p).len()).sum()
    }

    /// Its bytes.
    pub fn bytes(&self, m: &InFlight) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len_of(m));
        for p in Self::parts(m) {
            v.extend_from_slice(self.part(&p));
        }
        v
    }

    /// `msg`, which a router handled as `was` and passes on to `to` (it changed at most the
    /// bytes `was` held, as a forwarding router changes only the hop limit and watermark):
    /// held again with the pieces `was` shared, or packed afresh if they are not its pieces.
    pub fn repack(&mut self, was: InFlight, to: u32, msg: &[u8]) -> InFlight {
        let from = was.to();
        let mut at = 0;
        let mut held: Vec<&[u8]> = Vec::with_capacity(2);
        let mut same = msg.len() == self.len_of(&was);
        if same {
            for p in Self::parts(&was) {
                let part = self.part(&p);
                let Some(now) = msg.get(at..at + part.len()) else {
                    same = false;
                    break;
                };
                match p {
                    Part::Held(_) => held.push(now),
                    Part::Shared(_) => {
                        if now != part {
                            same = false;
                            break;
                        }
                    }
                }
                at += part.len();
            }
        }
        if same {
            let slots: Vec<u32> = was.slots().collect();
            return Self::hold(from, to, &slots, &held);
        }
        self.release(was);
        self.pack(from, to, msg)
    }

    /// A message arrived or was lost: its records are no longer held for it.
    pub fn release(&mut self, m: InFlight) {
        for s in m.slots() {
            let slot = &mut self.slots[s as usize];
            slot.1 -= 1;
            // The last message in flight that carried it.
            if slot.1 == 0
                && let Some(r) = slot.0.take()
            {
                self.held.remove(&r);
                self.free.push(s);
            }
        }
    }

    /// Distinct records held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn record(&self, slot: u32) -> &[u8] {
        self.slots[slot as usize].0.as_deref().unwrap_or_default()
    }

    /// The slot of `rec`, counted once more.
    fn share(&mut self, rec: &[u8]) -> u32 {
        if let Some(&s) = self.held.get(rec) {
            self.slots[s as usize].1 += 1;
            return s;
        }
        let r: Arc<[u8]> = rec.into();
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = (Some(Arc::clone(&r)), 1);
                s
            }
            None => {
                self.slots.push((Some(Arc::clone(&r)), 1));
                (self.slots.len() - 1) as u32
            }
        };
        self.held.insert(r, s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing::Coords;
    use routing::record::NodeRecord;
    use routing::wire::{RoutedBody, encode_routed_header};

    fn ring(recs: Vec<NodeRecord>) -> Vec<u8> {
        let body = RoutedBody::Ring {
            stabilise: false,
            nodes: recs,
        };
        let mut m = Vec::new();
        let place = Coords(vec![1]).into();
        encode_routed_header(&mut m, body.kind(), 64, &[1; 32], &place, &[2; 32], &place);
        body.encode(&mut m);
        m
    }

    #[test]
    fn messages_come_back_byte_for_byte_and_records_are_held_once() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let a = NodeRecord::new(&sk, 1, &[7; 32], Coords(vec![3]).into());
        let b = NodeRecord::new(&sk, 2, &[7; 32], Coords(vec![3, 4]).into());
        let mut t = Records::default();
        let m1 = ring(vec![a.clone(), b.clone()]);
        let m2 = ring(vec![b.clone()]);
        let (p1, p2) = (t.pack(1, 2, &m1), t.pack(3, 4, &m2));
        assert_eq!((t.bytes(&p1), t.bytes(&p2)), (m1.clone(), m2));
        assert_eq!((p1.from(), p1.to(), p2.from(), p2.to()), (1, 2, 3, 4));
        // The two records, and the destination and source (key and place) both name.
        assert_eq!(t.len(), 4);
        // Passed on with a new hop limit: the same records.
        let mut f = t.bytes(&p1);
        f[routing::wire::HOP_LIMIT_AT] -= 1;
        let p1 = t.repack(p1, 5, &f);
        assert_eq!(t.bytes(&p1), f);
        assert_eq!((p1.from(), p1.to()), (2, 5));
        assert_eq!(t.len(), 4);
        // Passed on changed: packed afresh, with the records it carries now.
        let p3 = t.repack(p1, 6, &ring(vec![a.clone()]));
        assert_eq!(t.bytes(&p3), ring(vec![a.clone()]));
        assert_eq!(t.len(), 4);
        t.release(p3);
        assert_eq!(t.len(), 3);
        t.release(p2);
        assert!(t.is_empty());
        // Freed slots are used again.
        let p4 = t.pack(7, 8, &m1);
        assert_eq!(t.bytes(&p4), m1);
        assert_eq!(t.slots.len(), 4);
        t.release(p4);
        assert!(t.is_empty());
        // A routed message without records shares its header's pieces only.
        let mut m = Vec::new();
        let place = Coords(vec![1, 2]).into();
        encode_routed_header(
            &mut m,
            routing::wire::kind::TRAFFIC,
            9,
            &[3; 32],
            &place,
            &[4; 32],
            &place,
        );
        m.extend_from_slice(b"payload");
        let p5 = t.pack(1, 2, &m);
        assert_eq!(t.bytes(&p5), m);
        assert_eq!(t.len(), 2);
        let mut f = m.clone();
        f[routing::wire::WATERMARK_AT] = 3;
        let p5 = t.repack(p5, 3, &f);
        assert_eq!(t.bytes(&p5), f);
        assert_eq!(t.len(), 2);
        t.release(p5);
        assert!(t.is_empty());
        // A message without records is held as it is.
        let plain = b"\x01plain".to_vec();
        let p = t.pack(9, 10, &plain);
        assert_eq!(t.bytes(&p), plain);
        assert_eq!((p.from(), p.to()), (9, 10));
        assert!(t.is_empty());
    }
}
