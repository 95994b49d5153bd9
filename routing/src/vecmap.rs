//! A map kept as a vector sorted by key, for the small per-router tables (a handful of
//! entries, rarely changed) that a B-tree would hold in a whole node: 11 entries inline
//! whatever the count, which a simulation pays once per table per node. Iteration is in key
//! order, as a `BTreeMap`'s, so swapping one for the other changes no decision. Not for large
//! tables: an insertion moves the entries after it.
//!
//! Grown by a quarter (at least one entry), not doubled: most such tables hold one to a few
//! entries for good (a root heard, a peer's chain sent), and a doubled vector would hold up
//! to as many unused.

use std::borrow::Borrow;

/// Sorted by key, keys unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|e| e.0.borrow().cmp(k))
    }

    /// Inserts at `i` (see the module doc for the growth).
    fn insert_at(&mut self, i: usize, k: K, v: V) {
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact((self.0.len() / 4).max(1));
        }
        self.0.insert(i, (k, v));
    }

    /// The value of `k` (looked up by any borrowed form of the key, as a `BTreeMap`'s).
    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    /// The value of `k`, to change.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }

    /// Sets the value of `k`; returns the previous one.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.insert_at(i, k, v);
                None
            }
        }
    }

    /// The value of `k`, set to `v` first if there was none.
    pub fn get_or_insert(&mut self, k: K, v: V) -> &mut V {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.insert_at(i, k, v);
                i
            }
        };
        &mut self.0[i].1
    }

    /// Removes `k`; returns its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    /// Keeps the entries `keep` accepts (visited in key order).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|e| &e.0)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|e| &e.1)
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    /// The entries, in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    /// The entries, in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_btreemap() {
        let mut v = VecMap::new();
        let mut b = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..2000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 59) as u8;
            match step % 5 {
                0 | 1 => assert_eq!(v.insert(k, step), b.insert(k, step)),
                2 => assert_eq!(v.remove(&k), b.remove(&k)),
                3 => {
                    *v.get_or_insert(k, step) += 1;
                    *b.entry(k).or_insert(step) += 1;
                }
                _ => {
                    v.retain(|k, s| !(*k as u64 + *s).is_multiple_of(3));
                    b.retain(|k, s| !(*k as u64 + *s).is_multiple_of(3));
                }
            }
            if let (Some(x), Some(y)) = (v.get_mut(&k), b.get_mut(&k)) {
                *x += 1;
                *y += 1;
            }
            assert_eq!(v.get(&k), b.get(&k));
            assert_eq!(v.len(), b.len());
            assert!(v.iter().eq(b.iter()));
            assert!(v.values().eq(b.values()));
        }
        assert!(v.clone().into_iter().eq(b.clone().into_iter()));
        assert!((&v).into_iter().eq(&b));
        v.clear();
        assert!(v.is_empty());
    }
}
