//! Signed records: where a node sits in the tree, and where a node can be reached.
//!
//! **Tree records.** A node's position is `(node, parent, seq, port, root, epoch)`: "`node` is
//! the child of `parent`, which calls it `port`, as of `epoch` of `root`'s tree". Two
//! signatures make it: the parent's over `(parent, node, seq, port, root, epoch)`, given when
//! the child asks, then the node's over the whole, parent signature included. Nobody can claim
//! a parent that did not accept them, nor put a node under a parent it did not choose. A root
//! is its own parent, its epoch is its own sequence number, and it signs both halves.
//! Following records from a node up to a root gives the node's coordinates; every step of the
//! chain is checked.
//!
//! **Consent expires.** `epoch` is the root's sequence number as the parent knew it when it
//! signed: the root re-signs its record every refresh, so its sequence number is a clock that
//! every node of its tree reads from the same signed records. A consent older than
//! [`crate::RouterConfig::consent_epochs`] of those refreshes, or given in another root's tree,
//! is refused by whoever checks the chain (`crate::consent`), so a former child cannot go on
//! claiming its old place; children renew their parent's consent well before that.
//!
//! **Node records.** `(key, seq, tree, place)` signed by `key`: what a lookup returns, so that
//! the answer to "where is the owner of this address" comes signed by that owner and is checked
//! against its address. `tree` names the root whose tree the coordinates belong to
//! ([`tree_id`]): coordinates are ports counted from a root, so a record signed in another
//! tree (typically before the network settled on its root) points at a place that does not
//! exist in ours. A router uses only records of its own tree (`Router::learn`); without the tag,
//! such records went on circulating after the tree formed and most routed control messages
//! sent to them died on the way (docs/SIMULATIONS.md, "Records of another tree").

use crate::codec::{DecodeError, Key, Reader, Sig, put_varint};
use crate::coords::{Coords, Place};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::sync::Arc;

const TREE_PARENT_TAG: &[u8] = b"planetary-lan/tree/parent/v2";
const TREE_NODE_TAG: &[u8] = b"planetary-lan/tree/node/v2";
const NODE_RECORD_TAG: &[u8] = b"planetary-lan/node-record/v3";

/// The port of a root's farewell record ([`TreeRecord::retired`]).
pub const RETIRED: u64 = u64::MAX;

/// Verifies an ed25519 signature strictly (no weak keys, no malleable signatures).
pub fn verify(key: &Key, msg: &[u8], sig: &Sig) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    if vk.is_weak() {
        return false;
    }
    vk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}

/// What a parent's consent is given for: a port in a root's tree, as of one of its epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Consent {
    /// The port the parent gives the child.
    pub port: u64,
    /// The root of the parent's tree when it signed.
    pub root: Key,
    /// That root's sequence number as the parent knew it when it signed.
    pub epoch: u64,
}

fn parent_message(parent: &Key, node: &Key, seq: u64, c: &Consent) -> Vec<u8> {
    let mut m = Vec::with_capacity(TREE_PARENT_TAG.len() + 124);
    m.extend_from_slice(TREE_PARENT_TAG);
    m.extend_from_slice(parent);
    m.extend_from_slice(node);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&c.port.to_be_bytes());
    m.extend_from_slice(&c.root);
    m.extend_from_slice(&c.epoch.to_be_bytes());
    m
}

/// The parent's half of a tree record: its consent to having `node` as child at `c.port`, in
/// `c.root`'s tree as of `c.epoch`.
pub fn sign_as_parent(sk: &SigningKey, node: &Key, seq: u64, c: &Consent) -> Sig {
    let parent = sk.verifying_key().to_bytes();
    sk.sign(&parent_message(&parent, node, seq, c)).to_bytes()
}

/// A node's signed position in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreeRecord {
    /// The node.
    pub node: Key,
    /// Its parent (itself for a root).
    pub parent: Key,
    /// The node's sequence number; a higher one replaces a lower one.
    pub seq: u64,
    /// The port the parent gave the node (0 for a root).
    pub port: u64,
    /// The root of the tree the parent was in when it signed (the node itself for a root).
    pub root: Key,
    /// That root's sequence number as the parent knew it (`seq` for a root).
    pub epoch: u64,
    /// The parent's signature over `(parent, node, seq, port, root, epoch)`.
    pub parent_sig: Sig,
    /// The node's signature over all of the above.
    pub node_sig: Sig,
}

impl TreeRecord {
    /// Is this node a root (its own parent)?
    pub fn is_root(&self) -> bool {
        self.node == self.parent
    }

    /// What the parent signed for.
    pub fn consent(&self) -> Consent {
        Consent {
            port: self.port,
            root: self.root,
            epoch: self.epoch,
        }
    }

    fn node_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(TREE_NODE_TAG.len() + 220);
        m.extend_from_slice(TREE_NODE_TAG);
        m.extend_from_slice(&self.node);
        m.extend_from_slice(&self.parent);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.port.to_be_bytes());
        m.extend_from_slice(&self.root);
        m.extend_from_slice(&self.epoch.to_be_bytes());
        m.extend_from_slice(&self.parent_sig);
        m
    }

    /// Makes the node's half, given the parent's.
    pub fn new(sk: &SigningKey, parent: Key, seq: u64, c: Consent, parent_sig: Sig) -> Self {
        let mut r = TreeRecord {
            node: sk.verifying_key().to_bytes(),
            parent,
            seq,
            port: c.port,
            root: c.root,
            epoch: c.epoch,
            parent_sig,
            node_sig: [0; 64],
        };
        r.node_sig = sk.sign(&r.node_message()).to_bytes();
        r
    }

    /// A root's farewell: its own parent, port [`RETIRED`]. Whoever receives it knows the root
    /// stopped (on purpose) and re-forms the tree at once instead of waiting for the timeout.
    pub fn retired(sk: &SigningKey, seq: u64) -> Self {
        Self::own(sk, seq, RETIRED)
    }

    fn own(sk: &SigningKey, seq: u64, port: u64) -> Self {
        let key = sk.verifying_key().to_bytes();
        let c = Consent {
            port,
            root: key,
            epoch: seq,
        };
        let psig = sign_as_parent(sk, &key, seq, &c);
        Self::new(sk, key, seq, c, psig)
    }

    /// Is this a root's farewell?
    pub fn is_retired(&self) -> bool {
        self.is_root() && self.port == RETIRED
    }

    /// A root's record: its own parent, port 0, both halves signed by itself.
    pub fn root(sk: &SigningKey, seq: u64) -> Self {
        Self::own(sk, seq, 0)
    }

    /// Checks both signatures (and that a root's record is its own epoch in its own tree).
    pub fn verify(&self) -> bool {
        let pm = parent_message(&self.parent, &self.node, self.seq, &self.consent());
        let own_ok = !self.is_root()
            || ((self.port == 0 || self.port == RETIRED)
                && self.root == self.node
                && self.epoch == self.seq);
        own_ok
            && verify(&self.parent, &pm, &self.parent_sig)
            && verify(&self.node, &self.node_message(), &self.node_sig)
    }

    /// Appends the encoding. A root's record leaves out its root and epoch (itself and its
    /// sequence number).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&self.parent);
        put_varint(out, self.seq);
        put_varint(out, self.port);
        if !self.is_root() {
            out.extend_from_slice(&self.root);
            put_varint(out, self.epoch);
        }
        out.extend_from_slice(&self.parent_sig);
        out.extend_from_slice(&self.node_sig);
    }

    /// Reads a record (signatures not checked).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let node: Key = r.array()?;
        let parent: Key = r.array()?;
        let seq = r.varint()?;
        let port = r.varint()?;
        let (root, epoch) = if node == parent {
            (node, seq)
        } else {
            (r.array()?, r.varint()?)
        };
        Ok(TreeRecord {
            node,
            parent,
            seq,
            port,
            root,
            epoch,
            parent_sig: r.array()?,
            node_sig: r.array()?,
        })
    }
}

/// Where a node can be reached, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRecord {
    /// The node's key. (Its id is computed once, when first asked for: a record with another
    /// key is a new record, not this one changed.)
    pub key: Key,
    /// The node's sequence number for these records.
    pub seq: u64,
    /// The tree `place` belongs to: [`tree_id`] of its root's key.
    pub tree: u64,
    /// Where the node can be reached: its tree coordinates and a few neighbours'. Shared:
    /// copies of a record (a lookup table, the ring, a peer's record) hold one place.
    pub place: Arc<Place>,
    /// The node's signature.
    pub sig: Sig,
    id: IdOnce,
}

/// A record's node id ([`crate::dht::id_of`] its key, a SHA-512), computed when first asked
/// for: the lookup table, the ring and the delegations compare ids of shared records again
/// and again. A function of the key, so it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
struct IdOnce(std::sync::OnceLock<[u64; 2]>);

impl PartialEq for IdOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IdOnce {}

impl std::hash::Hash for IdOnce {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// The short name of the tree rooted at `root` that node records carry: the first 8 bytes of
/// the root's key. Only a hint of which tree coordinates belong to (a node can lie only about
/// its own record, which makes it unreachable), so 64 bits are plenty.
pub fn tree_id(root: &Key) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&root[..8]);
    u64::from_be_bytes(b)
}

impl NodeRecord {
    fn message(key: &Key, seq: u64, tree: u64, place: &Place) -> Vec<u8> {
        let mut m = Vec::with_capacity(NODE_RECORD_TAG.len() + 72);
        m.extend_from_slice(NODE_RECORD_TAG);
        m.extend_from_slice(key);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&tree.to_be_bytes());
        place.encode(&mut m);
        m
    }

    /// Signs a record for ourselves, at `place` in the tree of `root`.
    pub fn new(sk: &SigningKey, seq: u64, root: &Key, place: Place) -> Self {
        let key = sk.verifying_key().to_bytes();
        let tree = tree_id(root);
        let sig = sk.sign(&Self::message(&key, seq, tree, &place)).to_bytes();
        NodeRecord {
            key,
            seq,
            tree,
            place: Arc::new(place),
            sig,
            id: IdOnce::default(),
        }
    }

    /// The node's id: [`crate::dht::id_of`] its key.
    pub fn id(&self) -> u128 {
        let [hi, lo] = *self.id.0.get_or_init(|| {
            let id = crate::dht::id_of(&self.key);
            [(id >> 64) as u64, id as u64]
        });
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// The node's own tree coordinates.
    pub fn coords(&self) -> &Coords {
        &self.place.at
    }

    /// Checks the signature.
    pub fn verify(&self) -> bool {
        verify(
            &self.key,
            &Self::message(&self.key, self.seq, self.tree, &self.place),
            &self.sig,
        )
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        put_varint(out, self.seq);
        out.extend_from_slice(&self.tree.to_be_bytes());
        self.place.encode(out);
        out.extend_from_slice(&self.sig);
    }

    /// Reads a record (signature not checked).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NodeRecord {
            key: r.array()?,
            seq: r.varint()?,
            tree: u64::from_be_bytes(r.array()?),
            place: Arc::new(Place::decode(r)?),
            sig: r.array()?,
            id: IdOnce::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn tree_records_need_both_signatures() {
        let (parent, child, other) = (sk(1), sk(2), sk(3));
        let child_key = child.verifying_key().to_bytes();
        let c = Consent {
            port: 3,
            root: other.verifying_key().to_bytes(),
            epoch: 40,
        };
        let psig = sign_as_parent(&parent, &child_key, 7, &c);
        let rec = TreeRecord::new(&child, parent.verifying_key().to_bytes(), 7, c, psig);
        assert!(rec.verify());
        // A parent that did not sign.
        let forged = TreeRecord::new(&child, other.verifying_key().to_bytes(), 7, c, psig);
        assert!(!forged.verify());
        // Another port, seq, root or epoch than the parent agreed to.
        let mut r = rec.clone();
        r.port = 4;
        assert!(!r.verify());
        let mut r = rec.clone();
        r.seq = 8;
        assert!(!r.verify());
        let mut r = rec.clone();
        r.epoch = 41;
        assert!(!r.verify());
        let mut r = rec.clone();
        r.root = child_key;
        assert!(!r.verify());
        // Root records sign themselves, in their own tree at their own sequence number.
        let root = TreeRecord::root(&parent, 1);
        assert!(root.verify());
        let mut b = Vec::new();
        root.encode(&mut b);
        assert_eq!(TreeRecord::decode(&mut Reader::new(&b)), Ok(root.clone()));
        let mut r = root.clone();
        r.epoch = 5;
        assert!(!r.verify());
        let mut b = Vec::new();
        rec.encode(&mut b);
        let mut rd = Reader::new(&b);
        assert_eq!(TreeRecord::decode(&mut rd), Ok(rec));
        assert_eq!(rd.finish(), Ok(()));
    }

    #[test]
    fn node_records_are_signed_by_their_key() {
        let root = sk(1).verifying_key().to_bytes();
        let r = NodeRecord::new(&sk(5), 1, &root, Coords(vec![1, 2]).into());
        assert!(r.verify());
        assert_eq!(r.tree, tree_id(&root));
        let mut bad = r.clone();
        Arc::make_mut(&mut bad.place).at = Coords(vec![1, 3]);
        assert!(!bad.verify());
        // The tree is signed too: the same coordinates in another tree are another place.
        let mut bad = r.clone();
        bad.tree ^= 1;
        assert!(!bad.verify());
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(NodeRecord::decode(&mut Reader::new(&b)), Ok(r));
    }
}
