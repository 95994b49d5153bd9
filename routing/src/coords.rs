//! Tree coordinates and tree distance.
//!
//! A node's coordinates are the ports along the tree path from the root down to it: the root
//! is `[]`, a child of the root `[p1]`, its child `[p1, p2]`, and so on, where each port is the
//! number the parent gave that child. The tree distance between two nodes is the number of tree
//! hops between them: up from one to their deepest common ancestor, then down to the other.
//!
//! ```text
//!   dist(a, b) = len(a) + len(b) - 2 * common_prefix(a, b)
//! ```

use crate::codec::{DecodeError, Reader, put_varint};

/// Deepest tree accepted (a deeper one is a malfunction or an attack).
pub const MAX_DEPTH: usize = 64;

/// A position in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Coords(pub Vec<u64>);

impl Coords {
    /// The root's coordinates.
    pub fn root() -> Coords {
        Coords(Vec::new())
    }

    /// Depth in the tree (the root is 0).
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// Tree distance to `other`.
    pub fn dist(&self, other: &[u64]) -> u64 {
        dist(&self.0, other)
    }

    /// Appends the encoding: a count, then each port as a varint.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.0.len() as u64);
        for p in &self.0 {
            put_varint(out, *p);
        }
    }

    /// Reads coordinates written by [`Coords::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Coords, DecodeError> {
        let n = r.count(MAX_DEPTH)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(r.varint()?);
        }
        Ok(Coords(v))
    }
}

impl std::fmt::Display for Coords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{p}")?;
        }
        write!(f, "]")
    }
}

/// Tree distance between two coordinate paths.
pub fn dist(a: &[u64], b: &[u64]) -> u64 {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (a.len() + b.len() - 2 * common) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(dist(&[], &[]), 0);
        assert_eq!(dist(&[], &[1, 2]), 2);
        assert_eq!(dist(&[1, 2], &[1, 3]), 2);
        assert_eq!(dist(&[1, 2, 5], &[1]), 2);
        assert_eq!(dist(&[4], &[1, 2]), 3);
    }

    #[test]
    fn encoding_roundtrips_and_bounds_depth() {
        let c = Coords(vec![0, 1, 300, u64::MAX]);
        let mut b = Vec::new();
        c.encode(&mut b);
        let mut r = Reader::new(&b);
        assert_eq!(Coords::decode(&mut r), Ok(c));
        let mut deep = Vec::new();
        put_varint(&mut deep, MAX_DEPTH as u64 + 1);
        assert_eq!(
            Coords::decode(&mut Reader::new(&deep)),
            Err(DecodeError::TooMany)
        );
    }
}
