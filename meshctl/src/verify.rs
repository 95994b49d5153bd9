//! `meshctl verify ADDRESS KEY`: whether an overlay address belongs to a public key, offline.
//!
//! It reads the key as meshd does (64 hex digits naming a usable ed25519 point) and asks the
//! `routing` crate, which owns the address derivation; it needs neither meshd nor a network.

use api::Verification;
use ed25519_dalek::VerifyingKey;
use std::fmt;
use std::net::Ipv6Addr;

/// Why a public key string was rejected (the same words as meshd's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not 64 characters.
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    NotHex(char),
    /// 32 bytes, but not a usable point (not on the curve, small order, non-canonical).
    NotAPoint,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Length(n) => {
                write!(
                    f,
                    "a public key is 64 hex digits, this one has {n} characters"
                )
            }
            KeyError::NotHex(c) => write!(f, "a public key is 64 hex digits, found {c:?}"),
            KeyError::NotAPoint => f.write_str("not a valid ed25519 public key"),
        }
    }
}

/// The key's 32 bytes, checked as meshd checks a peer's key: a canonical, not small-order
/// ed25519 point (a weak key would let anybody complete a handshake as it).
pub fn parse_key(s: &str) -> Result<[u8; 32], KeyError> {
    if s.len() != 64 {
        return Err(KeyError::Length(s.chars().count()));
    }
    let mut out = [0u8; 32];
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(KeyError::NotHex(c as char))
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s.as_bytes()[2 * i])? << 4 | digit(s.as_bytes()[2 * i + 1])?;
    }
    let vk = VerifyingKey::from_bytes(&out).map_err(|_| KeyError::NotAPoint)?;
    if vk.is_weak() || vk.to_bytes() != out || vk.to_montgomery().to_bytes() == [0; 32] {
        return Err(KeyError::NotAPoint);
    }
    Ok(out)
}

/// Whether `address` is `key`'s node address or in its /64.
pub fn check(address: &Ipv6Addr, key: &str) -> Result<Verification, KeyError> {
    let k = parse_key(key)?;
    Ok(Verification {
        address: address.to_string(),
        public_key: k.iter().map(|b| format!("{b:02x}")).collect(),
        belongs: routing::address::key_owns(&k, address),
        node_address: routing::address::node_address(&k).to_string(),
        subnet: format!("{}/64", routing::address::node_subnet(&k)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_like_meshd() {
        assert_eq!(parse_key("ab"), Err(KeyError::Length(2)));
        assert_eq!(parse_key(&"g".repeat(64)), Err(KeyError::NotHex('g')));
        // The identity point has small order: refused.
        let mut weak = "01".to_string();
        weak.push_str(&"0".repeat(62));
        assert_eq!(parse_key(&weak), Err(KeyError::NotAPoint));
        // The ed25519 base point is a usable key; its address is its own.
        let base = "5866666666666666666666666666666666666666666666666666666666666666";
        let k = parse_key(base).unwrap_or_default();
        let addr = routing::address::node_address(&k);
        let v = check(&addr, &base.to_uppercase()).map(|v| (v.belongs, v.public_key));
        assert_eq!(v, Ok((true, base.to_string())));
        let other: Ipv6Addr = "600::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(check(&other, base).map(|v| v.belongs), Ok(false));
    }
}
