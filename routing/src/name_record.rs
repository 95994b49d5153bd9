//! Name records: a human name bound to a key, signed by that key.
//!
//! ```text
//! record     = len (1) | name | key (32) | seq (varint) | expires (varint, unix s)
//!              | n (≤ 4) | n services | 0, or 1 then a delegation | sig (64)
//! service    = 1 | IPv6 address (16)            a service address
//!            | 2 | len (1) | gateway name       a published gateway's name (a name, as below)
//! delegation = authority (32) | expires (varint, unix s) | sig (64)
//! ```
//!
//! A **name** is one DNS label: 1 to [`MAX_NAME_LEN`] bytes of `a`–`z`, `0`–`9` and `-`, not
//! starting or ending with `-`. [`validate_name`] lowercases what a person typed; on the wire
//! only the lowercase form is valid, so one name has one encoding and one storage place
//! ([`name_target`]).
//!
//! The owner signs everything before its signature, delegation included, under a domain tag.
//! A **delegation** is an authority's statement "this name belongs to this key until then",
//! signed under its own tag, so an owner cannot forge it and an authority's signature cannot be
//! moved to another name or key.

use crate::address::NODE_ADDR_BYTE;
use crate::codec::{DecodeError, Key, Reader, Sig, put_varint};
use crate::record::verify;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha512};
use std::fmt;
use std::net::Ipv6Addr;

const NAME_RECORD_TAG: &[u8] = b"planetary-lan/name-record/v1";
const DELEGATION_TAG: &[u8] = b"planetary-lan/name-delegation/v1";
const TARGET_TAG: &[u8] = b"planetary-lan/name-target/v1";

/// Longest name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;
/// Most services in one record.
pub const MAX_SERVICES: usize = 4;
/// A record may not expire later than this after the storing node's clock (one day): an old
/// record cannot be made to outlive its owner's key by far.
pub const MAX_TTL_SECS: u64 = 86_400;
/// Largest encoding of a record (what a storing node ever holds per record).
pub const MAX_RECORD_LEN: usize =
    1 + MAX_NAME_LEN + 32 + 10 + 10 + 1 + MAX_SERVICES * (2 + MAX_NAME_LEN) + 1 + 32 + 10 + 64 + 64;

const SERVICE_ADDR: u8 = 1;
const SERVICE_GATEWAY: u8 = 2;

/// Why a name, record or token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// The name holds a character outside `a-z 0-9 -`.
    BadChar(char),
    /// The name starts or ends with `-`.
    Hyphen,
    /// The router was not given the wall clock ([`crate::Router::set_wall_clock`]).
    NoClock,
    /// This node already claims as many names as it may.
    TooManyClaims,
    /// More than [`MAX_SERVICES`] services.
    TooManyServices,
    /// A gateway service name is not a valid name.
    BadService,
    /// The expiry is in the past or further than [`MAX_TTL_SECS`] ahead.
    BadExpiry,
    /// A delegation token that does not decode.
    BadToken,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "the name is empty: give 1 to 63 letters, digits or '-'"),
            NameError::TooLong => write!(
                f,
                "the name is longer than {MAX_NAME_LEN} characters: a name is one DNS label"
            ),
            NameError::BadChar(c) => write!(
                f,
                "the name holds {c:?}: use only letters a-z, digits and '-' (one DNS label, no dots)"
            ),
            NameError::Hyphen => write!(f, "a name may not start or end with '-'"),
            NameError::NoClock => write!(
                f,
                "the router has no wall clock yet (call set_wall_clock before claiming names)"
            ),
            NameError::TooManyClaims => write!(
                f,
                "this node claims {} names already: release one first",
                crate::names::MAX_CLAIMS
            ),
            NameError::TooManyServices => {
                write!(f, "a name record holds at most {MAX_SERVICES} services")
            }
            NameError::BadService => write!(f, "a gateway service must be a valid name"),
            NameError::BadExpiry => write!(
                f,
                "the expiry must lie in the future and at most {MAX_TTL_SECS} s ahead"
            ),
            NameError::BadToken => write!(
                f,
                "the delegation token does not decode: copy it whole from `meshctl name delegate`"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a name as a person typed it and returns it in lowercase.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    check_name(&lower)?;
    Ok(lower)
}

/// Checks a name exactly as it stands (lowercase only).
fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar(c));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Hyphen);
    }
    Ok(())
}

/// Where a name is stored: an id in the lookup table's space (see [`crate::dht::id_of`]),
/// from a hash of the name, so that nobody chooses where a name lands.
pub fn name_target(name: &str) -> u128 {
    let mut h = Sha512::new();
    h.update(TARGET_TAG);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut t = [0u8; 16];
    t[0] = NODE_ADDR_BYTE;
    t[1..].copy_from_slice(&d[..15]);
    u128::from_be_bytes(t)
}

/// What a name leads to beside its owner's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// A service address (answered instead of the node's address).
    Addr(Ipv6Addr),
    /// The name of a gateway that publishes the service.
    Gateway(String),
}

/// An authority's signed statement that a name belongs to a key until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The authority's key.
    pub authority: Key,
    /// Unix seconds.
    pub expires: u64,
    /// The authority's signature.
    pub sig: Sig,
}

impl Delegation {
    fn message(name: &str, key: &Key, expires: u64) -> Vec<u8> {
        let mut m = Vec::with_capacity(DELEGATION_TAG.len() + 1 + name.len() + 40);
        m.extend_from_slice(DELEGATION_TAG);
        m.push(name.len() as u8);
        m.extend_from_slice(name.as_bytes());
        m.extend_from_slice(key);
        m.extend_from_slice(&expires.to_be_bytes());
        m
    }

    /// The authority `authority` gives `name` to `key` until `expires` (unix seconds).
    pub fn new(
        authority: &SigningKey,
        name: &str,
        key: &Key,
        expires: u64,
    ) -> Result<Self, NameError> {
        let name = validate_name(name)?;
        let sig = authority
            .sign(&Self::message(&name, key, expires))
            .to_bytes();
        Ok(Delegation {
            authority: authority.verifying_key().to_bytes(),
            expires,
            sig,
        })
    }

    /// Whether the authority signed exactly this name and key.
    pub fn verify(&self, name: &str, key: &Key) -> bool {
        verify(
            &self.authority,
            &Self::message(name, key, self.expires),
            &self.sig,
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.authority);
        put_varint(out, self.expires);
        out.extend_from_slice(&self.sig);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Delegation {
            authority: r.array()?,
            expires: r.varint()?,
            sig: r.array()?,
        })
    }

    /// As a token a person can copy (lowercase hex).
    pub fn to_text(&self) -> String {
        let mut b = Vec::new();
        self.encode(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Reads a token made by [`Delegation::to_text`].
    pub fn from_text(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        if !s.len().is_multiple_of(2) || s.len() > 2 * (32 + 10 + 64) {
            return Err(NameError::BadToken);
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or(NameError::BadToken)?;
        let mut r = Reader::new(&bytes);
        let d = Delegation::decode(&mut r).map_err(|_| NameError::BadToken)?;
        r.finish().map_err(|_| NameError::BadToken)?;
        Ok(d)
    }
}

/// A name bound to a key, signed by the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    /// The name (lowercase, valid).
    pub name: String,
    /// The owner.
    pub key: Key,
    /// Higher replaces lower, for the same owner.
    pub seq: u64,
    /// Unix seconds after which nobody serves it.
    pub expires: u64,
    /// What the name leads to beside the owner's address.
    pub services: Vec<Service>,
    /// An authority's delegation of the name to the key, if any.
    pub delegation: Option<Delegation>,
    /// The owner's signature over all of the above.
    pub sig: Sig,
}

impl NameRecord {
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.key);
        put_varint(out, self.seq);
        put_varint(out, self.expires);
        out.push(self.services.len() as u8);
        for s in &self.services {
            match s {
                Service::Addr(a) => {
                    out.push(SERVICE_ADDR);
                    out.extend_from_slice(&a.octets());
                }
                Service::Gateway(g) => {
                    out.push(SERVICE_GATEWAY);
                    out.push(g.len() as u8);
                    out.extend_from_slice(g.as_bytes());
                }
            }
        }
        match &self.delegation {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                d.encode(out);
            }
        }
    }

    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(NAME_RECORD_TAG.len() + 160);
        m.extend_from_slice(NAME_RECORD_TAG);
        self.encode_unsigned(&mut m);
        m
    }

    /// Signs a record for `name` as the owner `sk`.
    pub fn new(
        sk: &SigningKey,
        name: &str,
        seq: u64,
        expires: u64,
        services: Vec<Service>,
        delegation: Option<Delegation>,
    ) -> Result<Self, NameError> {
        let name = validate_name(name)?;
        if services.len() > MAX_SERVICES {
            return Err(NameError::TooManyServices);
        }
        for s in &services {
            if let Service::Gateway(g) = s {
                check_name(g).map_err(|_| NameError::BadService)?;
            }
        }
        let mut rec = NameRecord {
            name,
            key: sk.verifying_key().to_bytes(),
            seq,
            expires,
            services,
            delegation,
            sig: [0; 64],
        };
        rec.sig = sk.sign(&rec.message()).to_bytes();
        Ok(rec)
    }

    /// Checks the owner's signature, and the delegation's if there is one.
    pub fn verify(&self) -> bool {
        verify(&self.key, &self.message(), &self.sig)
            && self
                .delegation
                .as_ref()
                .is_none_or(|d| d.verify(&self.name, &self.key))
    }

    /// The authority that delegated the name, if its delegation holds at `unix_now`.
    pub fn delegated_by(&self, unix_now: u64) -> Option<Key> {
        self.delegation
            .as_ref()
            .filter(|d| d.expires > unix_now)
            .map(|d| d.authority)
    }

    /// The service address, if the record names one.
    pub fn service_addr(&self) -> Option<Ipv6Addr> {
        self.services.iter().find_map(|s| match s {
            Service::Addr(a) => Some(*a),
            Service::Gateway(_) => None,
        })
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        out.extend_from_slice(&self.sig);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        self.encode(&mut b);
        b
    }

    /// Reads a record: the format is checked (name, services, bounds), not the signature.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count(MAX_NAME_LEN)?;
        let name = std::str::from_utf8(r.bytes(n)?).map_err(|_| DecodeError::Invalid)?;
        check_name(name).map_err(|_| DecodeError::Invalid)?;
        let key = r.array()?;
        let seq = r.varint()?;
        let expires = r.varint()?;
        let ns = r.count(MAX_SERVICES)?;
        let mut services = Vec::with_capacity(ns);
        for _ in 0..ns {
            services.push(match r.u8()? {
                SERVICE_ADDR => Service::Addr(Ipv6Addr::from(r.array::<16>()?)),
                SERVICE_GATEWAY => {
                    let n = r.count(MAX_NAME_LEN)?;
                    let g = std::str::from_utf8(r.bytes(n)?).map_err(|_| DecodeError::Invalid)?;
                    check_name(g).map_err(|_| DecodeError::Invalid)?;
                    Service::Gateway(g.to_string())
                }
                _ => return Err(DecodeError::Invalid),
            });
        }
        let delegation = match r.u8()? {
            0 => None,
            1 => Some(Delegation::decode(r)?),
            _ => return Err(DecodeError::Invalid),
        };
        Ok(NameRecord {
            name: name.to_string(),
            key,
            seq,
            expires,
            services,
            delegation,
            sig: r.array()?,
        })
    }

    /// Reads a whole buffer as one record.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let rec = NameRecord::decode(&mut r)?;
        r.finish()?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn names_follow_dns_label_rules() {
        assert_eq!(validate_name("Shop-2"), Ok("shop-2".into()));
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(64)), Err(NameError::TooLong));
        assert!(validate_name(&"a".repeat(63)).is_ok());
        assert_eq!(validate_name("a.b"), Err(NameError::BadChar('.')));
        assert_eq!(validate_name("é"), Err(NameError::BadChar('é')));
        assert_eq!(validate_name("-a"), Err(NameError::Hyphen));
        assert_eq!(validate_name("a-"), Err(NameError::Hyphen));
        assert_ne!(name_target("shop"), name_target("shoq"));
        assert_eq!((name_target("shop") >> 120) as u8, NODE_ADDR_BYTE);
    }

    #[test]
    fn records_roundtrip_and_every_field_is_signed() {
        let auth = sk(9);
        let owner = sk(1);
        let okey = owner.verifying_key().to_bytes();
        let d = Delegation::new(&auth, "shop", &okey, 2_000).expect("valid");
        let rec = NameRecord::new(
            &owner,
            "Shop",
            7,
            1_000,
            vec![
                Service::Addr("fd00::1".parse().expect("valid")),
                Service::Gateway("gw".into()),
            ],
            Some(d.clone()),
        )
        .expect("valid");
        assert!(rec.verify());
        assert_eq!(rec.name, "shop");
        let b = rec.to_bytes();
        assert!(b.len() <= MAX_RECORD_LEN);
        assert_eq!(NameRecord::from_bytes(&b), Ok(rec.clone()));
        assert_eq!(
            rec.delegated_by(1_999),
            Some(auth.verifying_key().to_bytes())
        );
        assert_eq!(rec.delegated_by(2_000), None);
        for change in 0..6 {
            let mut r = rec.clone();
            match change {
                0 => r.seq += 1,
                1 => r.expires += 1,
                2 => r.name = "shoq".into(),
                3 => r.services.pop().map(|_| ()).unwrap_or(()),
                4 => r.delegation = None,
                _ => r.key = sk(2).verifying_key().to_bytes(),
            }
            assert!(!r.verify(), "change {change} went unnoticed");
        }
        // A delegation for another name or key does not transfer.
        let other =
            NameRecord::new(&sk(2), "shop", 1, 1_000, vec![], Some(d.clone())).expect("valid");
        assert!(!other.verify());
        assert_eq!(Delegation::from_text(&d.to_text()), Ok(d));
        assert_eq!(Delegation::from_text("zz"), Err(NameError::BadToken));
        assert_eq!(Delegation::from_text("abc"), Err(NameError::BadToken));
    }

    #[test]
    fn malformed_records_are_refused_without_panic() {
        let rec = NameRecord::new(&sk(1), "shop", 1, 10, vec![], None).expect("valid");
        let b = rec.to_bytes();
        for cut in 0..b.len() {
            assert!(NameRecord::from_bytes(&b[..cut]).is_err());
        }
        let mut upper = b.clone();
        upper[1] = b'S';
        assert!(NameRecord::from_bytes(&upper).is_err());
        let mut long = b.clone();
        long[0] = 64;
        assert!(NameRecord::from_bytes(&long).is_err());
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(NameRecord::from_bytes(&trailing).is_err());
        assert!(
            NameRecord::new(
                &sk(1),
                "a",
                1,
                1,
                vec![Service::Gateway("a.b".into())],
                None
            )
            .is_err()
        );
    }
}
