//! A table of deadlines keyed by what wants them (a peer, a handshake, a remote node), after
//! quinn's `connection/timer.rs` but for thousands of entries: the next deadline is the first
//! of an ordered set, and handling timeouts pops only the entries that are due.
//!
//! ```text
//!   entry changed ──► set(key, slot, Some(t))   O(log n), old (slot, key) replaced
//!   poll_timeout  ──► next()                    O(log n), the first of the set
//!   handle_timeout ─► pop_due(now) until None   O(log n) per due entry; none due: O(log n)
//! ```
//!
//! Each entry's owner keeps the instant it is filed under in a `slot` of its own (the peer's
//! struct, say), so a hot path checks "is the filed deadline already early enough?" without a
//! lookup, and moves the entry only when a deadline gets *earlier*. The filed instant may be
//! earlier than the entry's true deadline (a packet pushed the deadline back): the owner then
//! wakes, finds nothing to do, and files the true deadline. It must never be later.
//!
//! A popped `(at, key)` whose owner is gone, or whose slot no longer says `at`, is stale and
//! the caller ignores it (lazy invalidation): removing an owner without its entry is safe.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines of many owners, in order.
#[derive(Debug)]
pub struct TimerTable<K: Ord + Copy> {
    order: BTreeSet<(Instant, K)>,
    /// Entries looked at by `pop_due` (a test counts the work of `handle_timeout`).
    #[cfg(test)]
    pub(crate) touched: u64,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            order: BTreeSet::new(),
            #[cfg(test)]
            touched: 0,
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Files `key` under `at` (or nowhere, for `None`); `slot` is where its owner keeps the
    /// instant it is filed under.
    pub fn set(&mut self, key: K, slot: &mut Option<Instant>, at: Option<Instant>) {
        if *slot == at {
            return;
        }
        if let Some(old) = slot.take() {
            self.order.remove(&(old, key));
        }
        if let Some(t) = at {
            self.order.insert((t, key));
        }
        *slot = at;
    }

    /// Files `key` under `at` if that is earlier than where it is filed (or it is not).
    pub fn lower(&mut self, key: K, slot: &mut Option<Instant>, at: Instant) {
        if slot.is_none_or(|s| at < s) {
            self.set(key, slot, Some(at));
        }
    }

    /// The earliest filed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Takes the earliest entry if it is due at `now`. The caller must then clear its owner's
    /// slot if it still says the returned instant (else the entry was stale).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        #[cfg(test)]
        {
            self.touched += 1;
        }
        let first = *self.order.first()?;
        if first.0 > now {
            return None;
        }
        self.order.pop_first()
    }

    /// How many entries are filed (live and stale).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_order_and_only_what_is_due() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut table = TimerTable::default();
        let mut slots = [None; 3];
        table.set(0u32, &mut slots[0], Some(s(3)));
        table.set(1, &mut slots[1], Some(s(1)));
        table.set(2, &mut slots[2], Some(s(2)));
        assert_eq!(table.next(), Some(s(1)));
        assert_eq!(table.pop_due(s(0)), None);
        assert_eq!(table.pop_due(s(2)), Some((s(1), 1)));
        assert_eq!(table.pop_due(s(2)), Some((s(2), 2)));
        assert_eq!(table.pop_due(s(2)), None);
        assert_eq!(table.next(), Some(s(3)));
    }

    #[test]
    fn moving_and_lowering_keep_one_entry_per_owner() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut table = TimerTable::default();
        let mut slot = None;
        table.set(9u32, &mut slot, Some(s(5)));
        table.lower(9, &mut slot, s(7));
        assert_eq!(
            (table.next(), table.len()),
            (Some(s(5)), 1),
            "later is not lower"
        );
        table.lower(9, &mut slot, s(2));
        assert_eq!((table.next(), table.len()), (Some(s(2)), 1));
        table.set(9, &mut slot, Some(s(8)));
        assert_eq!((table.next(), table.len()), (Some(s(8)), 1));
        table.set(9, &mut slot, None);
        assert!(table.is_empty());
        assert_eq!(slot, None);
    }
}
