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

/// Most neighbours a [`Place`] names.
pub const MAX_NEAR: usize = 12;

/// Farthest (in hops) a neighbour named in a [`Place`] may be.
pub const MAX_NEAR_HOPS: u8 = 2;

/// Most ports a [`Place`] holds in all (its own and its neighbours' coordinates).
pub const MAX_PLACE_PORTS: usize = 3 * MAX_DEPTH;

/// A position near a node: the coordinates of a node `hops` links away from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Near {
    /// Links from the node (1: a direct peer, 2: a peer's peer).
    pub hops: u8,
    /// That node's coordinates.
    pub at: Coords,
}

/// Where a node can be reached: its own coordinates, and those of a few nodes around it that
/// are not its tree neighbours (`near`).
///
/// Tree distance alone makes a path climb towards the root until it meets the destination's
/// branch; the links off the tree next to the destination are invisible to it. Naming a few
/// nodes around the destination lets greedy forwarding aim at its neighbourhood through any
/// branch that touches it: the distance to a place is the least, over the node and each
/// position named, of the tree distance to that position plus its hops from the node. The
/// node signs its place in its node record, so only the node itself can say where it is
/// reachable (and a lie only misdirects traffic to itself).
///
/// Greedy forwarding stays loop-free with this distance: from any node, the tree neighbour
/// one hop nearer the closest named position is strictly nearer the place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Place {
    /// The node's own coordinates.
    pub at: Coords,
    /// Positions around it (at most [`MAX_NEAR`]).
    pub near: Vec<Near>,
}

impl From<Coords> for Place {
    fn from(at: Coords) -> Place {
        Place {
            at,
            near: Vec::new(),
        }
    }
}

impl Place {
    /// Distance from a node at `c` to this place.
    pub fn dist(&self, c: &[u64]) -> u64 {
        self.near
            .iter()
            .map(|n| dist(&n.at.0, c) + n.hops as u64)
            .fold(dist(&self.at.0, c), u64::min)
    }

    /// Least distance between any position of `self` and any of `other`, counting the hops
    /// from a named position to its node on both sides.
    pub fn dist_place(&self, other: &Place) -> u64 {
        let mut best = other.dist(&self.at.0);
        for n in &self.near {
            best = best.min(other.dist(&n.at.0) + n.hops as u64);
        }
        best
    }

    /// Appends the encoding: the node's coordinates, a count, then each position as its hops
    /// (one byte) and coordinates.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.at.encode(out);
        put_varint(out, self.near.len() as u64);
        for n in &self.near {
            out.push(n.hops);
            n.at.encode(out);
        }
    }

    /// Reads a place written by [`Place::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Place, DecodeError> {
        let at = Coords::decode(r)?;
        let n = r.count(MAX_NEAR)?;
        let mut near = Vec::with_capacity(n);
        let mut total = at.depth();
        for _ in 0..n {
            let hops = r.u8()?;
            if !(1..=MAX_NEAR_HOPS).contains(&hops) {
                return Err(DecodeError::Invalid);
            }
            let c = Coords::decode(r)?;
            total += c.depth();
            if total > MAX_PLACE_PORTS {
                return Err(DecodeError::TooMany);
            }
            near.push(Near { hops, at: c });
        }
        Ok(Place { at, near })
    }

    /// Ports held in all.
    pub fn ports(&self) -> usize {
        self.at.depth() + self.near.iter().map(|n| n.at.depth()).sum::<usize>()
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
    fn place_distance_counts_the_hop_from_a_neighbour() {
        let near = |hops, c: &[u64]| Near {
            hops,
            at: Coords(c.to_vec()),
        };
        let p = Place {
            at: Coords(vec![1, 2, 3, 4]),
            near: vec![near(1, &[5]), near(1, &[1, 7]), near(2, &[6])],
        };
        assert_eq!(p.dist(&[1, 2, 3, 4]), 0);
        assert_eq!(p.dist(&[5]), 1);
        assert_eq!(p.dist(&[5, 9]), 2);
        assert_eq!(p.dist(&[]), 2); // root → [5] → the node
        assert_eq!(p.dist(&[1, 2]), 2);
        assert_eq!(p.dist(&[6]), 2); // [6] → a peer → the node
        assert_eq!(p.dist(&[6, 1, 1]), 4);
        let q = Place::from(Coords(vec![5, 9, 9]));
        assert_eq!(q.dist_place(&p), 3);
        assert_eq!(p.dist_place(&q), 3);
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(Place::decode(&mut Reader::new(&b)), Ok(p));
        // Zero hops, or more than allowed, is not a place.
        for bad in [0u8, MAX_NEAR_HOPS + 1] {
            let mut b = Vec::new();
            Coords(vec![1]).encode(&mut b);
            put_varint(&mut b, 1);
            b.push(bad);
            Coords(vec![2]).encode(&mut b);
            assert!(Place::decode(&mut Reader::new(&b)).is_err());
        }
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
