//! Routing messages: those between two peers, and those routed across the tree.
//!
//! The first byte names the message. Peer messages travel one link:
//!
//! ```text
//! ANNOUNCE (1)   cost (varint, µs to the root) | chain digest (8) | n (≤ 5) | n tree records |
//!                0 or 1, then the sender's node record
//! SIG_REQ  (2)   seq                         "please sign me as your child at this seq"
//! SIG_RES  (3)   seq | port | root (32) | epoch | parent signature   (see `record::Consent`)
//! PPING    (4)   nonce (8)                    link RTT probes, for link costs
//! PPONG    (5)   nonce (8)
//! ANN_REQ  (6)   (empty)                      "send me all your records again"
//! ```
//!
//! A sender's chain (its record, its parent's, … up to the root) may not fit one datagram, so
//! ANNOUNCE carries any subset of it, usually just the records the peer has not seen; the
//! receiver keeps the records per peer and walks from the peer's record up to the root. The
//! digest (of the keys and sequence numbers of the sender's whole chain) tells the receiver
//! whether its walk matches what the sender holds; if not (a lost or reordered datagram), it
//! asks for everything again with ANN_REQ.
//!
//! Routed messages share one header, then a body:
//!
//! ```text
//! type | hop_limit (1) | watermark (1) | dest key (32) | dest place | src key (32) | src place | body
//!
//! TRAFFIC (16)  body: payload (opaque: meshd's end-to-end session messages)
//! FIND    (17)  body: nonce (8) | target id (16) | requester's node record
//! FOUND   (18)  body: nonce (8) | n | n node records
//! BROKEN  (19)  body: key of the destination that could not be reached
//! PING    (20)  body: nonce (8) | initial hop limit (1)
//! PONG    (21)  body: nonce (8) | hops the ping took (1)
//! NOTIFY  (22)  body: the sender's new node record (sent to the nodes it talks to when it moves)
//! NAME_PUT (23) body: nonce (8) | name record                 "store this" (see `name_record`)
//! NAME_ACK (24) body: nonce (8) | outcome (1) | 0, or 1 then the holder's key (32)
//! NAME_GET (25) body: nonce (8) | len (1) | name | n (≤ 4) | n authority keys (32)
//! NAME_VAL (26) body: nonce (8) | 0, or 1 then the first claim | n (≤ 4) | n delegated records
//!               | m (≤ 16) | m node records (closer nodes, as in FOUND: NAME_GET doubles as FIND)
//! RING    (30)  body: n (1 ≤ n ≤ 16) | n node records, the sender's own first: keyspace ring
//!               upkeep (see `ring`): an introduction, a stabilisation, or records delegated
//!               towards their place. Each record's signature is checked; paid from the
//!               arriving link's lookup budget, like FIND.
//! ```
//!
//! Kinds 16–31 are routed (27–29 and 31 reserved).
//!
//! The hop limit and the watermark sit at fixed offsets (1 and 2) so that a forwarding node
//! rewrites them in place. Distances never exceed 2 × [`MAX_DEPTH`], so the watermark fits a
//! byte; 255 means "none yet".

use crate::codec::{DecodeError, Key, Reader, Sig, put_varint};
use crate::coords::{
    Coords, MAX_DEPTH, MAX_NEAR, MAX_NEAR_HOPS, MAX_PLACE_PORTS, Near, Place, dist,
};
use crate::name_record::{MAX_NAME_LEN, NameRecord, validate_name};
use crate::name_store::{MAX_DELEGATED_PER_GET, Stored};
use crate::record::{Consent, NodeRecord, TreeRecord};

/// Message types.
pub mod kind {
    /// Tree announcement.
    pub const ANNOUNCE: u8 = 1;
    /// Parent signature request.
    pub const SIG_REQ: u8 = 2;
    /// Parent signature.
    pub const SIG_RES: u8 = 3;
    /// Link RTT probe.
    pub const PPING: u8 = 4;
    /// Link RTT answer.
    pub const PPONG: u8 = 5;
    /// Request for a full announcement.
    pub const ANN_REQ: u8 = 6;
    /// Routed payload.
    pub const TRAFFIC: u8 = 16;
    /// Lookup request.
    pub const FIND: u8 = 17;
    /// Lookup answer.
    pub const FOUND: u8 = 18;
    /// Path-broken feedback.
    pub const BROKEN: u8 = 19;
    /// Overlay ping.
    pub const PING: u8 = 20;
    /// Overlay ping answer.
    pub const PONG: u8 = 21;
    /// "I moved": the sender's new node record.
    pub const NOTIFY: u8 = 22;
    /// "Store this name record."
    pub const NAME_PUT: u8 = 23;
    /// What became of a stored name record.
    pub const NAME_ACK: u8 = 24;
    /// "What do you hold for this name?"
    pub const NAME_GET: u8 = 25;
    /// The name records held.
    pub const NAME_VAL: u8 = 26;
    /// The last routed kind (reserved up to here).
    pub const LAST_ROUTED: u8 = 31;
    /// Keyspace ring upkeep: node records (see [`crate::ring`]).
    pub const RING: u8 = 30;
}

/// Offset of the hop limit in a routed message.
pub const HOP_LIMIT_AT: usize = 1;
/// Offset of the watermark in a routed message.
pub const WATERMARK_AT: usize = 2;
/// Offset of the destination's key in a routed message (its place follows, then the source's
/// key at [`RoutedHeader::src_key_at`] and place).
pub const DEST_KEY_AT: usize = 3;
/// Watermark of a message no node has forwarded yet.
pub const NO_WATERMARK: u8 = u8::MAX;
/// Most node records in one FOUND.
pub const MAX_FOUND: usize = 16;
/// Most tree records in one ANNOUNCE (5 × 240 bytes stays under a datagram).
pub const MAX_ANNOUNCE: usize = 5;

/// A message between two peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// Where the sender sits (part of it).
    Announce {
        /// The sender's path cost to its root, in microseconds.
        cost: u64,
        /// Digest of the sender's whole chain ([`chain_digest`]).
        digest: u64,
        /// Records of the sender's chain.
        records: Vec<TreeRecord>,
        /// The sender's node record (its coordinates, signed), if it changed.
        node: Option<NodeRecord>,
    },
    /// Asks for every record again.
    AnnounceReq,
    /// Asks the receiver to sign the sender as its child.
    SigReq {
        /// The sender's new sequence number.
        seq: u64,
    },
    /// The parent's signature.
    SigRes {
        /// The sequence number signed.
        seq: u64,
        /// What the parent consents to: port, root and epoch.
        consent: Consent,
        /// The signature.
        sig: Sig,
    },
    /// RTT probe.
    PeerPing {
        /// Echoed back.
        nonce: u64,
    },
    /// RTT answer.
    PeerPong {
        /// The probe's nonce.
        nonce: u64,
    },
}

impl PeerMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            PeerMsg::Announce {
                cost,
                digest,
                records,
                node,
            } => {
                b.push(kind::ANNOUNCE);
                put_varint(&mut b, *cost);
                b.extend_from_slice(&digest.to_be_bytes());
                put_varint(&mut b, records.len() as u64);
                for r in records {
                    r.encode(&mut b);
                }
                match node {
                    Some(n) => {
                        b.push(1);
                        n.encode(&mut b);
                    }
                    None => b.push(0),
                }
            }
            PeerMsg::AnnounceReq => b.push(kind::ANN_REQ),
            PeerMsg::SigReq { seq } => {
                b.push(kind::SIG_REQ);
                put_varint(&mut b, *seq);
            }
            PeerMsg::SigRes { seq, consent, sig } => {
                b.push(kind::SIG_RES);
                put_varint(&mut b, *seq);
                put_varint(&mut b, consent.port);
                b.extend_from_slice(&consent.root);
                put_varint(&mut b, consent.epoch);
                b.extend_from_slice(sig);
            }
            PeerMsg::PeerPing { nonce } => {
                b.push(kind::PPING);
                b.extend_from_slice(&nonce.to_be_bytes());
            }
            PeerMsg::PeerPong { nonce } => {
                b.push(kind::PPONG);
                b.extend_from_slice(&nonce.to_be_bytes());
            }
        }
        b
    }

    /// Decodes a peer message (signatures are checked by the tree, not here).
    pub fn decode(b: &[u8]) -> Result<PeerMsg, DecodeError> {
        let mut r = Reader::new(b);
        let m = match r.u8()? {
            kind::ANNOUNCE => {
                let cost = r.varint()?;
                let digest = u64::from_be_bytes(r.array()?);
                let n = r.count(MAX_ANNOUNCE)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    records.push(TreeRecord::decode(&mut r)?);
                }
                let node = match r.u8()? {
                    0 => None,
                    1 => Some(NodeRecord::decode(&mut r)?),
                    _ => return Err(DecodeError::UnknownType(kind::ANNOUNCE)),
                };
                PeerMsg::Announce {
                    cost,
                    digest,
                    records,
                    node,
                }
            }
            kind::ANN_REQ => PeerMsg::AnnounceReq,
            kind::SIG_REQ => PeerMsg::SigReq { seq: r.varint()? },
            kind::SIG_RES => PeerMsg::SigRes {
                seq: r.varint()?,
                consent: Consent {
                    port: r.varint()?,
                    root: r.array()?,
                    epoch: r.varint()?,
                },
                sig: r.array()?,
            },
            kind::PPING => PeerMsg::PeerPing {
                nonce: u64::from_be_bytes(r.array()?),
            },
            kind::PPONG => PeerMsg::PeerPong {
                nonce: u64::from_be_bytes(r.array()?),
            },
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(m)
    }
}

/// Digest of a chain: which records, at which sequence numbers, in which order.
pub fn chain_digest<R: std::borrow::Borrow<TreeRecord>>(chain: &[R]) -> u64 {
    use sha2::{Digest, Sha512};
    let mut h = Sha512::new();
    for r in chain {
        let r = r.borrow();
        h.update(r.node);
        h.update(r.seq.to_be_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Is this type byte a routed message?
pub fn is_routed(t: u8) -> bool {
    (kind::TRAFFIC..=kind::LAST_ROUTED).contains(&t)
}

/// A [`Place`] decoded onto the stack: no allocation on the forwarding path.
#[derive(Clone, Copy)]
pub struct PlaceBuf {
    ports: [u64; MAX_PLACE_PORTS],
    /// End of the node's own coordinates, then of each neighbour's.
    ends: [u8; 1 + MAX_NEAR],
    /// Hops of each neighbour (index 0 unused: the node itself).
    hops: [u8; 1 + MAX_NEAR],
    /// 1 + the number of neighbours.
    n: usize,
}

impl PlaceBuf {
    /// The node's own coordinates.
    pub fn at(&self) -> &[u64] {
        &self.ports[..self.ends[0] as usize]
    }

    /// The positions around it: hops from it, coordinates.
    pub fn near(&self) -> impl Iterator<Item = (u8, &[u64])> {
        (1..self.n).map(|i| {
            (
                self.hops[i],
                &self.ports[self.ends[i - 1] as usize..self.ends[i] as usize],
            )
        })
    }

    /// Distance from a node at `c` to this place (as [`Place::dist`]).
    pub fn dist(&self, c: &[u64]) -> u64 {
        self.near()
            .map(|(h, n)| dist(n, c) + h as u64)
            .fold(dist(self.at(), c), u64::min)
    }

    /// Distance from us, at `ours`, to this place, for a node that is not our peer: a
    /// position one hop from it *at our own coordinates* says it was our peer when it signed
    /// the place; that link is gone, so the position leads nowhere and is left out (else we
    /// would find ourselves nearest and drop our own traffic until a newer place comes).
    pub fn dist_from_us(&self, ours: &[u64]) -> u64 {
        self.near()
            .filter(|(h, n)| !(*h == 1 && *n == ours))
            .map(|(h, n)| dist(n, ours) + h as u64)
            .fold(dist(self.at(), ours), u64::min)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut b = PlaceBuf {
            ports: [0; MAX_PLACE_PORTS],
            ends: [0; 1 + MAX_NEAR],
            hops: [0; 1 + MAX_NEAR],
            n: 0,
        };
        let mut len = 0;
        let mut read = |r: &mut Reader<'_>, b: &mut PlaceBuf| -> Result<(), DecodeError> {
            if b.n > 0 {
                let h = r.u8()?;
                if !(1..=MAX_NEAR_HOPS).contains(&h) {
                    return Err(DecodeError::Invalid);
                }
                b.hops[b.n] = h;
            }
            let k = r.count(MAX_DEPTH)?;
            if len + k > MAX_PLACE_PORTS {
                return Err(DecodeError::TooMany);
            }
            for p in b.ports[len..len + k].iter_mut() {
                *p = r.varint()?;
            }
            len += k;
            b.ends[b.n] = len as u8;
            b.n += 1;
            Ok(())
        };
        read(r, &mut b)?;
        let near = r.count(MAX_NEAR)?;
        for _ in 0..near {
            read(r, &mut b)?;
        }
        Ok(b)
    }

    /// As an owned place.
    pub fn to_place(&self) -> Place {
        Place {
            at: Coords(self.at().to_vec()),
            near: self
                .near()
                .map(|(hops, n)| Near {
                    hops,
                    at: Coords(n.to_vec()),
                })
                .collect(),
        }
    }
}

/// Where a place lies in a routed message: checked when the header is decoded, read only when
/// needed (a destination never needs the copy forwarding works on).
#[derive(Debug, Clone, Copy)]
pub struct PlaceAt {
    start: usize,
    end: usize,
}

impl PlaceAt {
    /// Checks a place's encoding and notes where it lies.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let mut total = 0;
        let mut coords = |r: &mut Reader<'_>| -> Result<(), DecodeError> {
            let k = r.count(MAX_DEPTH)?;
            total += k;
            if total > MAX_PLACE_PORTS {
                return Err(DecodeError::TooMany);
            }
            for _ in 0..k {
                r.varint()?;
            }
            Ok(())
        };
        coords(r)?;
        for _ in 0..r.count(MAX_NEAR)? {
            if !(1..=MAX_NEAR_HOPS).contains(&r.u8()?) {
                return Err(DecodeError::Invalid);
            }
            coords(r)?;
        }
        Ok(PlaceAt {
            start,
            end: r.position(),
        })
    }

    fn reader<'m>(&self, msg: &'m [u8]) -> Result<Reader<'m>, DecodeError> {
        msg.get(self.start..self.end)
            .map(Reader::new)
            .ok_or(DecodeError::Truncated)
    }

    /// The place, for forwarding (on the stack).
    pub fn buf(&self, msg: &[u8]) -> Result<PlaceBuf, DecodeError> {
        PlaceBuf::decode(&mut self.reader(msg)?)
    }

    /// The place, owned.
    pub fn to_place(&self, msg: &[u8]) -> Result<Place, DecodeError> {
        Place::decode(&mut self.reader(msg)?)
    }

    /// Whether the place names only the node's coordinates, and they are `at`.
    pub fn is_only(&self, msg: &[u8], at: &[u64]) -> bool {
        let Ok(mut r) = self.reader(msg) else {
            return false;
        };
        let Ok(k) = r.count(MAX_DEPTH) else {
            return false;
        };
        if k != at.len() {
            return false;
        }
        for p in at {
            if r.varint().ok() != Some(*p) {
                return false;
            }
        }
        r.count(MAX_NEAR).ok() == Some(0)
    }
}

impl std::fmt::Debug for PlaceBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_place())
    }
}

/// The header of a routed message, checked and decoded without allocating.
#[derive(Debug, Clone, Copy)]
pub struct RoutedHeader {
    /// The message type.
    pub kind: u8,
    /// Hops left.
    pub hop_limit: u8,
    /// Smallest tree distance to the destination reached so far.
    pub watermark: u8,
    /// Who it is for.
    pub dest_key: Key,
    /// Where the sender believed the destination to be.
    pub dest: PlaceAt,
    /// Who sent it.
    pub src_key: Key,
    /// Where the sender was.
    pub src: PlaceAt,
    /// Offset of the body.
    pub body_at: usize,
}

impl RoutedHeader {
    /// Decodes the header of a routed message.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let kind = r.u8()?;
        if !is_routed(kind) {
            return Err(DecodeError::UnknownType(kind));
        }
        let hop_limit = r.u8()?;
        let watermark = r.u8()?;
        let dest_key = r.array()?;
        let dest = PlaceAt::decode(&mut r)?;
        let src_key = r.array()?;
        let src = PlaceAt::decode(&mut r)?;
        Ok(RoutedHeader {
            kind,
            hop_limit,
            watermark,
            dest_key,
            dest,
            src_key,
            src,
            body_at: r.position(),
        })
    }

    /// Offset of the source's key (the destination's key and place end there).
    pub fn src_key_at(&self) -> usize {
        self.dest.end
    }
}

/// Appends a routed header.
#[allow(clippy::too_many_arguments)]
pub fn encode_routed_header(
    out: &mut Vec<u8>,
    kind: u8,
    hop_limit: u8,
    dest_key: &Key,
    dest: &Place,
    src_key: &Key,
    src: &Place,
) {
    encode_routed_header_src(out, kind, hop_limit, dest_key, dest, src_key, src, true);
}

/// Appends a routed header whose source place is whole, or (`whole` false) names only the
/// sender's coordinates: what a sender does once the destination has its whole place, so that
/// traffic need not carry it in every packet.
#[allow(clippy::too_many_arguments)]
pub fn encode_routed_header_src(
    out: &mut Vec<u8>,
    kind: u8,
    hop_limit: u8,
    dest_key: &Key,
    dest: &Place,
    src_key: &Key,
    src: &Place,
    whole: bool,
) {
    out.push(kind);
    out.push(hop_limit);
    out.push(NO_WATERMARK);
    out.extend_from_slice(dest_key);
    dest.encode(out);
    out.extend_from_slice(src_key);
    if whole {
        src.encode(out);
    } else {
        src.at.encode(out);
        put_varint(out, 0);
    }
}

/// Bodies of routed control messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutedBody {
    /// Lookup request.
    Find {
        /// Matches the answer to the request.
        nonce: u64,
        /// The id looked for.
        target: u128,
        /// The requester, so the receiver can answer and remember it.
        requester: NodeRecord,
    },
    /// Lookup answer: the closest nodes to the target the answerer knows.
    Found {
        /// The request's nonce.
        nonce: u64,
        /// Node records.
        nodes: Vec<NodeRecord>,
    },
    /// A message for this key was dropped: no way on from where it was.
    Broken {
        /// The unreachable destination.
        key: Key,
    },
    /// Overlay ping.
    Ping {
        /// Echoed back.
        nonce: u64,
        /// The hop limit it started with.
        initial_hops: u8,
    },
    /// Overlay ping answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// Hops the ping took.
        hops: u8,
    },
    /// The sender moved in the tree: its new record.
    Notify {
        /// Signed by the sender.
        record: NodeRecord,
    },
    /// "Store this name record."
    NamePut {
        /// Matches the answer to the request.
        nonce: u64,
        /// Signed by its owner (checked by the storing node).
        record: NameRecord,
    },
    /// What became of a stored name record.
    NameAck {
        /// The request's nonce.
        nonce: u64,
        /// The outcome.
        outcome: Stored,
    },
    /// "What do you hold for this name?"
    NameGet {
        /// Matches the answer to the request.
        nonce: u64,
        /// The name (valid, lowercase).
        name: String,
        /// Authorities whose delegated records the asker wants.
        authorities: Vec<Key>,
    },
    /// The name records held.
    NameVal {
        /// The request's nonce.
        nonce: u64,
        /// The first claim, if any.
        claim: Option<NameRecord>,
        /// Records delegated by the authorities asked for.
        delegated: Vec<NameRecord>,
        /// The closest nodes to the name's target the answerer knows (as in `Found`).
        nodes: Vec<NodeRecord>,
    },
    /// Keyspace ring upkeep: the sender's record first, then records for the receiver's
    /// ring (at most [`MAX_FOUND`] in all).
    Ring {
        /// The sender stabilises towards us: it takes us for its nearest neighbour on our
        /// side (a delegation does not).
        stabilise: bool,
        /// Node records.
        nodes: Vec<NodeRecord>,
    },
}

impl RoutedBody {
    /// The message type of this body.
    pub fn kind(&self) -> u8 {
        match self {
            RoutedBody::Find { .. } => kind::FIND,
            RoutedBody::Found { .. } => kind::FOUND,
            RoutedBody::Broken { .. } => kind::BROKEN,
            RoutedBody::Ping { .. } => kind::PING,
            RoutedBody::Pong { .. } => kind::PONG,
            RoutedBody::Notify { .. } => kind::NOTIFY,
            RoutedBody::NamePut { .. } => kind::NAME_PUT,
            RoutedBody::NameAck { .. } => kind::NAME_ACK,
            RoutedBody::NameGet { .. } => kind::NAME_GET,
            RoutedBody::NameVal { .. } => kind::NAME_VAL,
            RoutedBody::Ring { .. } => kind::RING,
        }
    }

    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RoutedBody::Find {
                nonce,
                target,
                requester,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&target.to_be_bytes());
                requester.encode(out);
            }
            RoutedBody::Found { nonce, nodes } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                put_varint(out, nodes.len() as u64);
                for n in nodes {
                    n.encode(out);
                }
            }
            RoutedBody::Broken { key } => out.extend_from_slice(key),
            RoutedBody::Ping {
                nonce,
                initial_hops,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(*initial_hops);
            }
            RoutedBody::Pong { nonce, hops } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(*hops);
            }
            RoutedBody::Notify { record } => record.encode(out),
            RoutedBody::NamePut { nonce, record } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                record.encode(out);
            }
            RoutedBody::NameAck { nonce, outcome } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(outcome.code());
                match outcome {
                    Stored::Taken(k) => {
                        out.push(1);
                        out.extend_from_slice(k);
                    }
                    _ => out.push(0),
                }
            }
            RoutedBody::NameGet {
                nonce,
                name,
                authorities,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
                put_varint(out, authorities.len() as u64);
                for a in authorities {
                    out.extend_from_slice(a);
                }
            }
            RoutedBody::NameVal {
                nonce,
                claim,
                delegated,
                nodes,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                match claim {
                    Some(c) => {
                        out.push(1);
                        c.encode(out);
                    }
                    None => out.push(0),
                }
                put_varint(out, delegated.len() as u64);
                for d in delegated {
                    d.encode(out);
                }
                put_varint(out, nodes.len() as u64);
                for n in nodes {
                    n.encode(out);
                }
            }
            RoutedBody::Ring { stabilise, nodes } => {
                out.push(u8::from(*stabilise));
                put_varint(out, nodes.len() as u64);
                for n in nodes {
                    n.encode(out);
                }
            }
        }
    }

    /// Decodes the body of a routed control message of type `kind`.
    pub fn decode(kind: u8, b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let m = match kind {
            kind::FIND => RoutedBody::Find {
                nonce: u64::from_be_bytes(r.array()?),
                target: u128::from_be_bytes(r.array()?),
                requester: NodeRecord::decode(&mut r)?,
            },
            kind::FOUND => {
                let nonce = u64::from_be_bytes(r.array()?);
                let n = r.count(MAX_FOUND)?;
                let mut nodes = Vec::with_capacity(n);
                for _ in 0..n {
                    nodes.push(NodeRecord::decode(&mut r)?);
                }
                RoutedBody::Found { nonce, nodes }
            }
            kind::BROKEN => RoutedBody::Broken { key: r.array()? },
            kind::PING => RoutedBody::Ping {
                nonce: u64::from_be_bytes(r.array()?),
                initial_hops: r.u8()?,
            },
            kind::PONG => RoutedBody::Pong {
                nonce: u64::from_be_bytes(r.array()?),
                hops: r.u8()?,
            },
            kind::NOTIFY => RoutedBody::Notify {
                record: NodeRecord::decode(&mut r)?,
            },
            kind::NAME_PUT => RoutedBody::NamePut {
                nonce: u64::from_be_bytes(r.array()?),
                record: NameRecord::decode(&mut r)?,
            },
            kind::NAME_ACK => {
                let nonce = u64::from_be_bytes(r.array()?);
                let code = r.u8()?;
                let holder = match r.u8()? {
                    0 => None,
                    1 => Some(r.array()?),
                    _ => return Err(DecodeError::Invalid),
                };
                RoutedBody::NameAck {
                    nonce,
                    outcome: Stored::from_code(code, holder).ok_or(DecodeError::Invalid)?,
                }
            }
            kind::NAME_GET => {
                let nonce = u64::from_be_bytes(r.array()?);
                let n = r.count(MAX_NAME_LEN)?;
                let name = std::str::from_utf8(r.bytes(n)?).map_err(|_| DecodeError::Invalid)?;
                if validate_name(name).ok().as_deref() != Some(name) {
                    return Err(DecodeError::Invalid);
                }
                let na = r.count(MAX_DELEGATED_PER_GET)?;
                let mut authorities = Vec::with_capacity(na);
                for _ in 0..na {
                    authorities.push(r.array()?);
                }
                RoutedBody::NameGet {
                    nonce,
                    name: name.to_string(),
                    authorities,
                }
            }
            kind::NAME_VAL => {
                let nonce = u64::from_be_bytes(r.array()?);
                let claim = match r.u8()? {
                    0 => None,
                    1 => Some(NameRecord::decode(&mut r)?),
                    _ => return Err(DecodeError::Invalid),
                };
                let n = r.count(MAX_DELEGATED_PER_GET)?;
                let mut delegated = Vec::with_capacity(n);
                for _ in 0..n {
                    delegated.push(NameRecord::decode(&mut r)?);
                }
                let n = r.count(MAX_FOUND)?;
                let mut nodes = Vec::with_capacity(n);
                for _ in 0..n {
                    nodes.push(NodeRecord::decode(&mut r)?);
                }
                RoutedBody::NameVal {
                    nonce,
                    claim,
                    delegated,
                    nodes,
                }
            }
            kind::RING => {
                let stabilise = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid),
                };
                let n = r.count(MAX_FOUND)?;
                if n == 0 {
                    return Err(DecodeError::Invalid);
                }
                let mut nodes = Vec::with_capacity(n);
                for _ in 0..n {
                    nodes.push(NodeRecord::decode(&mut r)?);
                }
                RoutedBody::Ring { stabilise, nodes }
            }
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.finish()?;
        Ok(m)
    }
}

/// Where the node records of a routed lookup or ring message begin (`FIND`'s requester,
/// `FOUND`'s and `RING`'s nodes), which fill the rest of the message one after the other: the
/// offset of each in `msg`, in order. `None` for other messages and for malformed ones. For a
/// simulator, whose many messages in flight carry the same records again and again.
pub fn record_offsets(msg: &[u8]) -> Option<Vec<usize>> {
    let h = RoutedHeader::decode(msg).ok()?;
    let mut r = Reader::new(msg.get(h.body_at..)?);
    let n = match h.kind {
        kind::FIND => {
            r.bytes(8 + 16).ok()?; // nonce, target
            1
        }
        kind::FOUND => {
            r.bytes(8).ok()?; // nonce
            r.count(MAX_FOUND).ok()?
        }
        kind::RING => {
            r.u8().ok()?; // stabilise
            r.count(MAX_FOUND).ok()?
        }
        _ => return None,
    };
    let mut at = Vec::with_capacity(n);
    for _ in 0..n {
        at.push(h.body_at + r.position());
        NodeRecord::decode(&mut r).ok()?;
    }
    r.finish().ok()?;
    Some(at)
}

/// Reads past a node record, checking its encoding as [`NodeRecord::decode`] reads it
/// (the place as [`PlaceAt`] checks it), without allocating.
fn skip_node_record(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let _key: Key = r.array()?;
    r.varint()?;
    let _tree: [u8; 8] = r.array()?;
    PlaceAt::decode(r)?;
    let _sig: Sig = r.array()?;
    Ok(())
}

/// A `FOUND` body's nonce and where each of its records lies in it, if it reads as
/// [`RoutedBody::decode`] reads it; `None` if not (see [`ring_records`]).
pub(crate) fn found_records(body: &[u8]) -> Option<(u64, Vec<std::ops::Range<usize>>)> {
    let mut r = Reader::new(body);
    let nonce = u64::from_be_bytes(r.array().ok()?);
    let n = r.count(MAX_FOUND).ok()?;
    let at = record_ranges(&mut r, n)?;
    Some((nonce, at))
}

/// A `RING` body's `stabilise` flag and where each of its records lies in it, if it reads as
/// [`RoutedBody::decode`] reads it; `None` if not (the caller then decodes it in full, and
/// meets the same error).
pub(crate) fn ring_records(body: &[u8]) -> Option<(bool, Vec<std::ops::Range<usize>>)> {
    let mut r = Reader::new(body);
    let stabilise = match r.u8().ok()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let n = r.count(MAX_FOUND).ok()?;
    if n == 0 {
        return None;
    }
    let at = record_ranges(&mut r, n)?;
    Some((stabilise, at))
}

/// Where each of the `n` node records that end the body `r` reads lies in it; `None` if one
/// does not read or bytes follow them.
fn record_ranges(r: &mut Reader, n: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let mut at = Vec::with_capacity(n);
    for _ in 0..n {
        let start = r.position();
        skip_node_record(r).ok()?;
        at.push(start..r.position());
    }
    r.finish().ok()?;
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn peer_messages_roundtrip() {
        let sk = SigningKey::from_bytes(&[1; 32]);
        let msgs = [
            PeerMsg::Announce {
                cost: 1234,
                digest: 99,
                records: vec![TreeRecord::root(&sk, 9)],
                node: Some(NodeRecord::new(&sk, 3, &[7; 32], Coords::root().into())),
            },
            PeerMsg::Announce {
                cost: 0,
                digest: 0,
                records: vec![],
                node: None,
            },
            PeerMsg::AnnounceReq,
            PeerMsg::SigReq { seq: 5 },
            PeerMsg::SigRes {
                seq: 5,
                consent: Consent {
                    port: 2,
                    root: [3; 32],
                    epoch: 1_700_000_000_000,
                },
                sig: [7; 64],
            },
            PeerMsg::PeerPing { nonce: 42 },
            PeerMsg::PeerPong { nonce: 42 },
        ];
        for m in msgs {
            assert_eq!(PeerMsg::decode(&m.encode()), Ok(m));
        }
        assert_eq!(PeerMsg::decode(&[99]), Err(DecodeError::UnknownType(99)));
        assert_eq!(
            PeerMsg::decode(&[kind::PPING, 1]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn routed_header_roundtrips_with_fixed_offsets() {
        let mut b = Vec::new();
        encode_routed_header(
            &mut b,
            kind::TRAFFIC,
            64,
            &[1; 32],
            &Place {
                at: Coords(vec![1, 2, 300]),
                near: vec![
                    Near {
                        hops: 1,
                        at: Coords(vec![7]),
                    },
                    Near {
                        hops: 2,
                        at: Coords(vec![1, 5]),
                    },
                ],
            },
            &[2; 32],
            &Coords(vec![4]).into(),
        );
        b.extend_from_slice(b"payload");
        let h = RoutedHeader::decode(&b).expect("valid");
        assert_eq!(
            (h.kind, h.hop_limit, h.watermark),
            (kind::TRAFFIC, 64, NO_WATERMARK)
        );
        assert_eq!(b[HOP_LIMIT_AT], 64);
        assert_eq!(b[WATERMARK_AT], NO_WATERMARK);
        let dest = h.dest.buf(&b).expect("checked");
        assert_eq!(dest.at(), &[1, 2, 300]);
        assert_eq!(
            dest.near().collect::<Vec<_>>(),
            [(1, &[7][..]), (2, &[1, 5][..])]
        );
        assert_eq!(dest.dist(&[7, 1]), 2);
        assert_eq!(dest.dist(&[1, 5]), 2);
        assert_eq!(h.dest.to_place(&b).expect("checked").near.len(), 2);
        let src = h.src.buf(&b).expect("checked");
        assert_eq!(src.at(), &[4]);
        assert_eq!(src.near().count(), 0);
        assert!(h.src.is_only(&b, &[4]));
        assert!(!h.src.is_only(&b, &[5]));
        assert!(!h.dest.is_only(&b, &[1, 2, 300]));
        assert_eq!(&b[h.body_at..], b"payload");
        for cut in 0..h.body_at {
            assert!(RoutedHeader::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn name_answers_have_one_encoding() {
        // A holder's key only with "taken" (found by the name_records fuzz target).
        let mut b = 7u64.to_be_bytes().to_vec();
        b.extend_from_slice(&[1, 1]);
        b.extend_from_slice(&[6; 32]);
        assert!(RoutedBody::decode(kind::NAME_ACK, &b).is_err());
        b[8] = 3;
        assert!(RoutedBody::decode(kind::NAME_ACK, &b).is_ok());
        let mut taken_without_holder = 7u64.to_be_bytes().to_vec();
        taken_without_holder.extend_from_slice(&[3, 0]);
        assert!(RoutedBody::decode(kind::NAME_ACK, &taken_without_holder).is_err());
        // Names on the wire are lowercase.
        let mut get = 7u64.to_be_bytes().to_vec();
        get.extend_from_slice(&[4, b'S', b'h', b'o', b'p', 0]);
        assert!(RoutedBody::decode(kind::NAME_GET, &get).is_err());
    }

    #[test]
    fn routed_bodies_roundtrip() {
        let sk = SigningKey::from_bytes(&[2; 32]);
        let rec = NodeRecord::new(&sk, 1, &[7; 32], Coords(vec![3]).into());
        let name = NameRecord::new(&sk, "shop", 1, 2, vec![], None).expect("valid");
        for body in [
            RoutedBody::Find {
                nonce: 1,
                target: 77,
                requester: rec.clone(),
            },
            RoutedBody::Found {
                nonce: 1,
                nodes: vec![rec.clone(), rec.clone()],
            },
            RoutedBody::Broken { key: [9; 32] },
            RoutedBody::Ping {
                nonce: 3,
                initial_hops: 64,
            },
            RoutedBody::Pong { nonce: 3, hops: 4 },
            RoutedBody::NamePut {
                nonce: 5,
                record: name.clone(),
            },
            RoutedBody::NameAck {
                nonce: 5,
                outcome: Stored::Taken([4; 32]),
            },
            RoutedBody::NameAck {
                nonce: 5,
                outcome: Stored::OldSeq,
            },
            RoutedBody::NameGet {
                nonce: 6,
                name: "shop".into(),
                authorities: vec![[1; 32], [2; 32]],
            },
            RoutedBody::NameVal {
                nonce: 6,
                claim: Some(name.clone()),
                delegated: vec![name],
                nodes: vec![rec.clone()],
            },
            RoutedBody::NameVal {
                nonce: 6,
                claim: None,
                delegated: vec![],
                nodes: vec![],
            },
            RoutedBody::Ring {
                stabilise: true,
                nodes: vec![rec.clone(); MAX_FOUND],
            },
            RoutedBody::Ring {
                stabilise: false,
                nodes: vec![rec.clone()],
            },
        ] {
            let mut b = Vec::new();
            body.encode(&mut b);
            assert_eq!(RoutedBody::decode(body.kind(), &b), Ok(body));
        }
        // A RING names at least its sender, and at most MAX_FOUND records.
        for n in [0, MAX_FOUND + 1] {
            let mut b = Vec::new();
            RoutedBody::Ring {
                stabilise: false,
                nodes: vec![rec.clone(); n],
            }
            .encode(&mut b);
            assert!(RoutedBody::decode(kind::RING, &b).is_err(), "{n} records");
        }
        assert!(is_routed(kind::RING));
    }

    #[test]
    fn record_offsets_find_each_record_of_lookup_and_ring_messages() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let a = NodeRecord::new(&sk, 1, &[7; 32], Coords(vec![3]).into());
        let b = NodeRecord::new(&sk, 2, &[7; 32], Coords(vec![3, 1]).into());
        let msg = |body: RoutedBody| {
            let mut m = Vec::new();
            let place: Place = Coords(vec![1, 2]).into();
            encode_routed_header(&mut m, body.kind(), 64, &[1; 32], &place, &[2; 32], &place);
            let at = m.len();
            body.encode(&mut m);
            (m, at)
        };
        let len = |r: &NodeRecord| {
            let mut e = Vec::new();
            r.encode(&mut e);
            e.len()
        };
        let (m, at) = msg(RoutedBody::Ring {
            stabilise: true,
            nodes: vec![a.clone(), b.clone()],
        });
        let first = at + 2; // stabilise, count
        assert_eq!(record_offsets(&m), Some(vec![first, first + len(&a)]));
        assert_eq!(first + len(&a) + len(&b), m.len());
        let (m, at) = msg(RoutedBody::Found {
            nonce: 9,
            nodes: vec![b.clone()],
        });
        assert_eq!(record_offsets(&m), Some(vec![at + 9]));
        let (m, at) = msg(RoutedBody::Find {
            nonce: 9,
            target: 5,
            requester: a.clone(),
        });
        assert_eq!(record_offsets(&m), Some(vec![at + 24]));
        // Other messages, and cut ones, have none.
        let (m, _) = msg(RoutedBody::Pong { nonce: 3, hops: 4 });
        assert_eq!(record_offsets(&m), None);
        let (m, _) = msg(RoutedBody::Found {
            nonce: 9,
            nodes: vec![b],
        });
        assert_eq!(record_offsets(&m[..m.len() - 1]), None);
    }
}
