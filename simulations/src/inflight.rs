//! Messages in flight, held compactly: the engine's queue holds every message between its
//! sending and its arrival, and in a large network most of those bytes are node records that
//! lookup answers and ring messages carry again and again (at the peak of a 2,000-node run,
//! 11.4 MB of records in flight were 0.7 MB of distinct ones). Such a message is held as the
//! bytes before its records and the slots of its records in [`Records`], which holds each
//! distinct record once; any other message as its bytes. Either way in one allocation, with
//! the link it crosses (a 10,000-node run has hundreds of thousands of messages in flight at
//! its peak: a box for the message, one for its bytes and one for its records' handles cost
//! about 80 bytes more each). A message is rebuilt byte for byte before a router sees it.

use std::collections::HashMap;
use std::sync::Arc;

/// Bytes before the records' slots: the sender, the receiver, the number of records.
const PREFIX: usize = 4 + 4 + 1;

/// A message on its way: `from` (4 bytes), `to` (4), the number of records `n` (1), their
/// `n` slots in [`Records`] (4 each), then the bytes before the records.
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

    /// The bytes before its records (all of them, for a message without records).
    fn head(&self) -> &[u8] {
        &self.0[PREFIX + 4 * self.0[8] as usize..]
    }
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
        let offsets = routing::wire::record_offsets(msg).unwrap_or_default();
        let first = offsets.first().copied().unwrap_or(msg.len());
        let ends = offsets.iter().skip(1).copied().chain([msg.len()]);
        let slots: Vec<u32> = offsets
            .iter()
            .zip(ends)
            .map(|(&a, b)| self.share(&msg[a..b]))
            .collect();
        Self::hold(from, to, &slots, &msg[..first])
    }

    fn hold(from: u32, to: u32, slots: &[u32], head: &[u8]) -> InFlight {
        let mut b = Vec::with_capacity(PREFIX + 4 * slots.len() + head.len());
        b.extend_from_slice(&from.to_le_bytes());
        b.extend_from_slice(&to.to_le_bytes());
        // (At most `MAX_FOUND` records: a message with more is not decoded by
        // `record_offsets`, and is held as its bytes.)
        b.push(slots.len() as u8);
        for s in slots {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b.extend_from_slice(head);
        InFlight(b.into_boxed_slice())
    }

    /// Its length in bytes.
    pub fn len_of(&self, m: &InFlight) -> usize {
        m.head().len() + m.slots().map(|s| self.record(s).len()).sum::<usize>()
    }

    /// Its bytes.
    pub fn bytes(&self, m: &InFlight) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len_of(m));
        v.extend_from_slice(m.head());
        for s in m.slots() {
            v.extend_from_slice(self.record(s));
        }
        v
    }

    /// `msg`, which a router handled as `was` and passes on to `to` (it changed at most the
    /// header): held again with the records `was` held, or packed afresh if they are not its
    /// records.
    pub fn repack(&mut self, was: InFlight, to: u32, msg: &[u8]) -> InFlight {
        let from = was.to();
        let head = was.head().len();
        let mut rest = msg.get(head..).unwrap_or_default();
        let same = msg.len() == self.len_of(&was)
            && was.slots().all(|s| {
                let r = self.record(s);
                let (a, b) = rest.split_at(r.len());
                rest = b;
                r == a
            });
        if same {
            let slots: Vec<u32> = was.slots().collect();
            return Self::hold(from, to, &slots, &msg[..head]);
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
        assert_eq!(t.len(), 2);
        // Passed on with a new hop limit: the same records.
        let mut f = t.bytes(&p1);
        f[routing::wire::HOP_LIMIT_AT] -= 1;
        let p1 = t.repack(p1, 5, &f);
        assert_eq!(t.bytes(&p1), f);
        assert_eq!((p1.from(), p1.to()), (2, 5));
        assert_eq!(t.len(), 2);
        // Passed on changed: packed afresh, with the records it carries now.
        let p3 = t.repack(p1, 6, &ring(vec![a.clone()]));
        assert_eq!(t.bytes(&p3), ring(vec![a.clone()]));
        assert_eq!(t.len(), 2);
        t.release(p3);
        assert_eq!(t.len(), 1);
        t.release(p2);
        assert!(t.is_empty());
        // Freed slots are used again.
        let p4 = t.pack(7, 8, &m1);
        assert_eq!(t.bytes(&p4), m1);
        assert_eq!(t.slots.len(), 2);
        t.release(p4);
        assert!(t.is_empty());
        // A message without records is held as it is.
        let plain = b"\x01plain".to_vec();
        let p = t.pack(9, 10, &plain);
        assert_eq!(t.bytes(&p), plain);
        assert_eq!((p.from(), p.to()), (9, 10));
        assert!(t.is_empty());
    }
}
