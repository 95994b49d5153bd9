//! Messages in flight, held compactly: the engine's queue holds every message between its
//! sending and its arrival, and in a large network most of those bytes are node records that
//! lookup answers and ring messages carry again and again (at the peak of a 2,000-node run,
//! 11.4 MB of records in flight were 0.7 MB of distinct ones). Such a message is held as the
//! bytes before its records and one shared copy of each record; any other message as its bytes.
//! A message is rebuilt byte for byte before a router sees it.

use std::collections::HashSet;
use std::sync::Arc;

/// A message on its way.
pub struct InFlight {
    /// The bytes before the records (all of them, for a message without records).
    head: Box<[u8]>,
    /// The records, which fill the rest of the message, each shared with the other messages
    /// in flight that carry it.
    records: Box<[Arc<[u8]>]>,
}

impl InFlight {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.records.iter().map(|r| r.len()).sum::<usize>()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        for r in self.records.iter() {
            v.extend_from_slice(r);
        }
        v
    }
}

/// The records carried by messages in flight, each held once.
#[derive(Default)]
pub struct Records {
    held: HashSet<Arc<[u8]>>,
}

impl Records {
    /// A message to hold in flight.
    pub fn pack(&mut self, msg: &[u8]) -> Box<InFlight> {
        let offsets = routing::wire::record_offsets(msg).unwrap_or_default();
        let Some(&first) = offsets.first() else {
            return Box::new(InFlight {
                head: msg.into(),
                records: Box::new([]),
            });
        };
        let ends = offsets.iter().skip(1).copied().chain([msg.len()]);
        let records = offsets
            .iter()
            .zip(ends)
            .map(|(&a, b)| self.share(&msg[a..b]))
            .collect();
        Box::new(InFlight {
            head: msg[..first].into(),
            records,
        })
    }

    /// `msg`, which a router handled as `was` and passes on (it changed at most the header):
    /// held again with the records `was` held, or packed afresh if they are not its records.
    pub fn repack(&mut self, was: InFlight, msg: &[u8]) -> Box<InFlight> {
        let head = was.head.len();
        let mut rest = msg.get(head..).unwrap_or_default();
        let same = msg.len() == was.len()
            && was.records.iter().all(|r| {
                let (a, b) = rest.split_at(r.len());
                rest = b;
                **r == *a
            });
        if same {
            return Box::new(InFlight {
                head: msg[..head].into(),
                records: was.records,
            });
        }
        self.release(was);
        self.pack(msg)
    }

    /// A message arrived or was lost: its records are no longer held for it.
    pub fn release(&mut self, m: InFlight) {
        for r in m.records.iter() {
            // Ours and the table's: the last message in flight that carried it.
            if Arc::strong_count(r) == 2 {
                self.held.remove(&**r);
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

    fn share(&mut self, rec: &[u8]) -> Arc<[u8]> {
        if let Some(r) = self.held.get(rec) {
            return Arc::clone(r);
        }
        let r: Arc<[u8]> = rec.into();
        self.held.insert(Arc::clone(&r));
        r
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
        let (p1, p2) = (t.pack(&m1), t.pack(&m2));
        assert_eq!((p1.bytes(), p2.bytes()), (m1.clone(), m2));
        assert_eq!(t.len(), 2);
        // Passed on with a new hop limit: the same records.
        let mut f = p1.bytes();
        f[routing::wire::HOP_LIMIT_AT] -= 1;
        let p1 = t.repack(*p1, &f);
        assert_eq!(p1.bytes(), f);
        assert_eq!(t.len(), 2);
        t.release(*p1);
        assert_eq!(t.len(), 1);
        t.release(*p2);
        assert!(t.is_empty());
        // A message without records is held as it is.
        let plain = b"\x01plain".to_vec();
        let p = t.pack(&plain);
        assert_eq!(p.bytes(), plain);
        assert!(t.is_empty());
    }
}
