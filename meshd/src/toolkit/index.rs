//! Session indexes: the 32-bit numbers a peer puts in the `receiver` field of what it sends us,
//! so that we find the session without trying every key.
//!
//! Indexes are drawn from the owner's seeded [`SplitMix64`] (deterministic under test, and
//! not guessable from outside without the seed) and never collide with one in use: the caller
//! says which are taken, since the tables differ (the link core has sessions, handshakes it
//! started and handshakes it answers; the end-to-end layer one map for all).

use super::rng::SplitMix64;

/// A fresh index: one that `taken` refuses. The tables behind `taken` are bounded far below
/// 2^32 entries, so this ends after a try or two.
pub fn fresh(rng: &mut SplitMix64, taken: impl Fn(u32) -> bool) -> u32 {
    loop {
        let i = rng.next_u64() as u32;
        if !taken(i) {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn never_hands_out_an_index_in_use() {
        let mut rng = SplitMix64::new(7, 0);
        let mut first = rng.clone();
        let collide = first.next_u64() as u32;
        let taken: HashSet<u32> = [collide].into();
        let i = fresh(&mut rng, |i| taken.contains(&i));
        assert_ne!(i, collide);
    }

    #[test]
    fn is_deterministic_for_a_seed() {
        let (mut a, mut b) = (SplitMix64::new(42, 1), SplitMix64::new(42, 1));
        for _ in 0..100 {
            assert_eq!(fresh(&mut a, |_| false), fresh(&mut b, |_| false));
        }
    }
}
