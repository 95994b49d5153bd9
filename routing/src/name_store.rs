//! What a storing node keeps of other nodes' names, and the rules by which it takes a record.
//!
//! A node stores the names whose target ([`crate::name_record::name_target`]) lies near its id,
//! as owners publish them. Per name it keeps:
//! * **the first claim**: the first valid record it saw for the name, held until it expires
//!   unrenewed or its owner releases it. Only its owner replaces it, with a higher sequence
//!   number; a claim by another key is refused and told who holds the name;
//! * **delegated records**: one per authority, records that carry an authority's delegation.
//!   They do not compete with first claims; a resolver picks them only if it trusts the
//!   authority. An authority may re-delegate: the later delegation replaces the earlier.
//!
//! **Checks, cheapest first**: the expiry (past, or beyond [`MAX_TTL_SECS`]), then the
//! signatures. A record whose expiry has passed but that is newer than the owner's stored one
//! is its *release*: the stored record goes.
//!
//! **Bounds**: [`MAX_STORED`] records in all and [`MAX_PER_OWNER`] per owner key, so that one
//! key flooding claims fills at most its own share, and many keys at most the table (a storing
//! node's memory is bounded by `MAX_STORED × MAX_RECORD_LEN`, about 2.6 MB).
//!
//! This file must not send or schedule anything: it answers "take it?" and "what is held?".

use crate::codec::Key;
use crate::name_record::{MAX_TTL_SECS, NameRecord};
use std::collections::BTreeMap;

/// Records one node stores at most.
pub const MAX_STORED: usize = 4096;
/// Records one owner key may have stored at one node.
pub const MAX_PER_OWNER: usize = 16;
/// Delegated records returned per name and request.
pub const MAX_DELEGATED_PER_GET: usize = 4;

/// What became of a record offered for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Taken (new, or a newer record of the same owner).
    Stored,
    /// The same record again.
    Same,
    /// The owner's release: its stored record is gone.
    Released,
    /// Another key holds the name.
    Taken(Key),
    /// No room (for this owner, or at all).
    Full,
    /// A signature does not verify.
    BadSig,
    /// Not newer than what the owner stored before.
    OldSeq,
    /// Expired, or expiring too far ahead.
    Expired,
}

impl Stored {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Stored::Stored => 0,
            Stored::Same => 1,
            Stored::Released => 2,
            Stored::Taken(_) => 3,
            Stored::Full => 4,
            Stored::BadSig => 5,
            Stored::OldSeq => 6,
            Stored::Expired => 7,
        }
    }

    /// From the wire code (and the holder, for [`Stored::Taken`]).
    pub fn from_code(code: u8, holder: Option<Key>) -> Option<Self> {
        // The holder comes with `Taken` and nothing else: one meaning, one encoding.
        Some(match (code, holder) {
            (0, None) => Stored::Stored,
            (1, None) => Stored::Same,
            (2, None) => Stored::Released,
            (3, Some(k)) => Stored::Taken(k),
            (4, None) => Stored::Full,
            (5, None) => Stored::BadSig,
            (6, None) => Stored::OldSeq,
            (7, None) => Stored::Expired,
            _ => return None,
        })
    }
}

/// The records a node stores for others.
#[derive(Debug, Default)]
pub struct NameStore {
    claims: BTreeMap<String, NameRecord>,
    delegated: BTreeMap<(String, Key), NameRecord>,
    per_owner: BTreeMap<Key, usize>,
}

impl NameStore {
    /// An empty store.
    pub const fn new() -> Self {
        NameStore {
            claims: BTreeMap::new(),
            delegated: BTreeMap::new(),
            per_owner: BTreeMap::new(),
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.claims.len() + self.delegated.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offers a record; `verify` checks its signatures (passed in so that callers can cache).
    pub fn put(
        &mut self,
        rec: NameRecord,
        unix_now: u64,
        verify: impl FnOnce(&NameRecord) -> bool,
    ) -> Stored {
        if rec.expires > unix_now.saturating_add(MAX_TTL_SECS) {
            return Stored::Expired;
        }
        let slot = match rec.delegated_by(unix_now) {
            Some(a) => Slot::Delegated(rec.name.clone(), a),
            None => Slot::Claim(rec.name.clone()),
        };
        let held = self.get_slot(&slot).filter(|h| h.expires > unix_now);
        if rec.expires <= unix_now {
            // Only a release is worth a signature check: a newer, expired record of the
            // holder. For a delegated record the delegation must still hold to find its slot,
            // so an owner releases a delegated name within its delegation.
            if held.is_some_and(|h| h.key == rec.key && rec.seq > h.seq) && verify(&rec) {
                self.remove_slot(&slot);
                return Stored::Released;
            }
            return Stored::Expired;
        }
        if let Some(h) = held {
            if h.key == rec.key {
                if rec.seq < h.seq {
                    return Stored::OldSeq;
                }
                if rec.seq == h.seq {
                    return if *h == rec {
                        Stored::Same
                    } else {
                        Stored::OldSeq
                    };
                }
            } else {
                let later = match (&rec.delegation, &h.delegation) {
                    (Some(new), Some(old)) => new.expires > old.expires,
                    _ => false,
                };
                if !later {
                    return Stored::Taken(h.key);
                }
            }
        }
        if !verify(&rec) {
            return Stored::BadSig;
        }
        // Room: the slot's previous record (any owner, expired or not) makes way.
        let replaces = self.get_slot(&slot).map(|h| h.key);
        if replaces != Some(rec.key) {
            if self.per_owner.get(&rec.key).copied().unwrap_or(0) >= MAX_PER_OWNER {
                return Stored::Full;
            }
            if replaces.is_none() && self.len() >= MAX_STORED {
                self.purge(unix_now);
                if self.len() >= MAX_STORED {
                    return Stored::Full;
                }
            }
        }
        self.remove_slot(&slot);
        *self.per_owner.entry(rec.key).or_default() += 1;
        match slot {
            Slot::Claim(n) => self.claims.insert(n, rec),
            Slot::Delegated(n, a) => self.delegated.insert((n, a), rec),
        };
        Stored::Stored
    }

    /// The first claim on `name` and its records delegated by `authorities` (at most
    /// [`MAX_DELEGATED_PER_GET`]), unexpired.
    pub fn get(
        &self,
        name: &str,
        authorities: &[Key],
        unix_now: u64,
    ) -> (Option<NameRecord>, Vec<NameRecord>) {
        let claim = self
            .claims
            .get(name)
            .filter(|r| r.expires > unix_now)
            .cloned();
        let delegated = authorities
            .iter()
            .filter_map(|a| self.delegated.get(&(name.to_string(), *a)))
            .filter(|r| r.delegated_by(unix_now).is_some() && r.expires > unix_now)
            .take(MAX_DELEGATED_PER_GET)
            .cloned()
            .collect();
        (claim, delegated)
    }

    /// Drops what expired.
    pub fn purge(&mut self, unix_now: u64) {
        let per_owner = &mut self.per_owner;
        let mut gone = |r: &NameRecord| {
            if let Some(n) = per_owner.get_mut(&r.key) {
                *n -= 1;
                if *n == 0 {
                    per_owner.remove(&r.key);
                }
            }
        };
        self.claims.retain(|_, r| {
            let keep = r.expires > unix_now;
            if !keep {
                gone(r);
            }
            keep
        });
        self.delegated.retain(|_, r| {
            let keep = r.expires > unix_now && r.delegated_by(unix_now).is_some();
            if !keep {
                gone(r);
            }
            keep
        });
    }

    fn get_slot(&self, s: &Slot) -> Option<&NameRecord> {
        match s {
            Slot::Claim(n) => self.claims.get(n),
            Slot::Delegated(n, a) => self.delegated.get(&(n.clone(), *a)),
        }
    }

    fn remove_slot(&mut self, s: &Slot) {
        let old = match s {
            Slot::Claim(n) => self.claims.remove(n),
            Slot::Delegated(n, a) => self.delegated.remove(&(n.clone(), *a)),
        };
        if let Some(r) = old
            && let Some(n) = self.per_owner.get_mut(&r.key)
        {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(&r.key);
            }
        }
    }
}

enum Slot {
    Claim(String),
    Delegated(String, Key),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name_record::Delegation;
    use ed25519_dalek::SigningKey;

    fn sk(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }
    fn key(n: u8) -> Key {
        sk(n).verifying_key().to_bytes()
    }
    fn rec(owner: u8, name: &str, seq: u64, expires: u64) -> NameRecord {
        NameRecord::new(&sk(owner), name, seq, expires, vec![], None).expect("valid")
    }
    fn put(s: &mut NameStore, r: NameRecord, now: u64) -> Stored {
        s.put(r, now, |r| r.verify())
    }

    #[test]
    fn the_first_claim_holds_until_it_expires_or_is_released() {
        let mut s = NameStore::default();
        assert_eq!(put(&mut s, rec(1, "shop", 1, 100), 10), Stored::Stored);
        assert_eq!(put(&mut s, rec(1, "shop", 1, 100), 10), Stored::Same);
        assert_eq!(
            put(&mut s, rec(2, "shop", 9, 200), 10),
            Stored::Taken(key(1))
        );
        assert_eq!(put(&mut s, rec(1, "shop", 0, 300), 10), Stored::OldSeq);
        assert_eq!(put(&mut s, rec(1, "shop", 2, 300), 10), Stored::Stored);
        assert_eq!(s.get("shop", &[], 10).0.map(|r| r.seq), Some(2));
        // Expired unrenewed: free for anyone.
        assert_eq!(s.get("shop", &[], 300).0, None);
        assert_eq!(put(&mut s, rec(2, "shop", 1, 400), 300), Stored::Stored);
        // Released: an expired successor from the holder frees it at once; from anyone else
        // (or an older one) it is just expired.
        assert_eq!(put(&mut s, rec(1, "shop", 5, 350), 350), Stored::Expired);
        assert_eq!(put(&mut s, rec(2, "shop", 2, 350), 350), Stored::Released);
        assert_eq!(s.get("shop", &[], 350).0, None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn bad_records_are_refused_and_say_why() {
        let mut s = NameStore::default();
        let mut forged = rec(1, "shop", 1, 100);
        forged.key = key(2);
        assert_eq!(put(&mut s, forged, 10), Stored::BadSig);
        assert_eq!(put(&mut s, rec(1, "shop", 1, 9), 10), Stored::Expired);
        assert_eq!(
            put(&mut s, rec(1, "shop", 1, 10 + MAX_TTL_SECS + 1), 10),
            Stored::Expired
        );
        assert!(s.is_empty());
    }

    #[test]
    fn delegations_have_their_own_slots_and_later_ones_win() {
        let mut s = NameStore::default();
        assert_eq!(put(&mut s, rec(1, "shop", 1, 1000), 10), Stored::Stored);
        let d = Delegation::new(&sk(9), "shop", &key(2), 500).expect("valid");
        let r2 = NameRecord::new(&sk(2), "shop", 1, 1000, vec![], Some(d)).expect("valid");
        assert_eq!(put(&mut s, r2.clone(), 10), Stored::Stored);
        let d3 = Delegation::new(&sk(9), "shop", &key(3), 400).expect("valid");
        let r3 = NameRecord::new(&sk(3), "shop", 1, 1000, vec![], Some(d3)).expect("valid");
        assert_eq!(put(&mut s, r3, 10), Stored::Taken(key(2)));
        let (claim, del) = s.get("shop", &[key(9), key(8)], 10);
        assert_eq!(claim.map(|r| r.key), Some(key(1)));
        assert_eq!(del, vec![r2]);
        assert!(s.get("shop", &[key(8)], 10).1.is_empty());
        let d4 = Delegation::new(&sk(9), "shop", &key(4), 900).expect("valid");
        let r4 = NameRecord::new(&sk(4), "shop", 1, 1000, vec![], Some(d4)).expect("valid");
        assert_eq!(put(&mut s, r4, 10), Stored::Stored);
        assert_eq!(s.get("shop", &[key(9)], 10).1[0].key, key(4));
        assert_eq!(s.len(), 2);
        // The delegation's end ends the record.
        assert!(s.get("shop", &[key(9)], 900).1.is_empty());
        s.purge(900);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn one_owner_fills_only_its_share() {
        let mut s = NameStore::default();
        for i in 0..MAX_PER_OWNER {
            assert_eq!(
                put(&mut s, rec(1, &format!("n{i}"), 1, 100), 10),
                Stored::Stored
            );
        }
        assert_eq!(put(&mut s, rec(1, "more", 1, 100), 10), Stored::Full);
        // Renewing what it holds still works; others are unaffected.
        assert_eq!(put(&mut s, rec(1, "n0", 2, 100), 10), Stored::Stored);
        assert_eq!(put(&mut s, rec(2, "more", 1, 100), 10), Stored::Stored);
        assert_eq!(s.len(), MAX_PER_OWNER + 1);
        // Expiry gives the share back.
        s.purge(100);
        assert!(s.is_empty());
        assert_eq!(put(&mut s, rec(1, "more", 2, 200), 100), Stored::Stored);
    }
}
