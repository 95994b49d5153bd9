//! Overlay addresses derived from public keys.
//!
//! Every node's overlay IPv6 address is a function of its ed25519 public key, so anyone holding
//! the key can check the address and nobody can claim an address without the key.
//!
//! ```text
//!   h = SHA-512("planetary-lan/address/v1" || public_key)
//!
//!   node address  0600::/8  = 0x06 || h[0..15]           (120 bits of hash)
//!   node subnet   0700::/8  = 0x07 || h[0..7]  :: /64     (56 bits of hash)
//! ```
//!
//! Together these fill the overlay prefix `0600::/7`. It overlaps neither Yggdrasil's `200::/7`
//! nor Mycelium's `400::/7`, so all three can run on one host. Like those, it sits in space the
//! IETF reserves (`0400::/6`), not in global unicast, so it never collides with real Internet
//! addresses.
//!
//! **Strength.** Claiming somebody's node address means finding a key whose hash matches 120
//! chosen bits: a second preimage of SHA-512 truncated to 120 bits, about 2^120 work. Two keys
//! with the *same* (unchosen) address take about 2^60 work, which gives an attacker nothing over
//! another node. A subnet carries only 56 bits, so stealing a *specific* node's subnet costs about
//! 2^56 hashes: feasible for a determined, well-funded attacker, which is why subnet traffic is
//! still checked against the key the session authenticated, and why anything that must resist
//! such an attacker should use node addresses (see `docs/ARCHITECTURE.md`).

use sha2::{Digest, Sha512};
use std::net::Ipv6Addr;

/// Length in bytes of an ed25519 public key, the identity of a node.
pub const KEY_LEN: usize = 32;

/// First byte of every node address (`0600::/8`).
pub const NODE_ADDR_BYTE: u8 = 0x06;
/// First byte of every node subnet (`0700::/8`).
pub const SUBNET_BYTE: u8 = 0x07;
/// The overlay prefix that holds both node addresses and subnets.
pub const OVERLAY_PREFIX: Ipv6Addr = Ipv6Addr::new(0x0600, 0, 0, 0, 0, 0, 0, 0);
/// Length of [`OVERLAY_PREFIX`].
pub const OVERLAY_PREFIX_LEN: u8 = 7;
/// Prefix length of the subnet each node owns.
pub const SUBNET_PREFIX_LEN: u8 = 64;

const DOMAIN: &[u8] = b"planetary-lan/address/v1";

fn key_hash(public_key: &[u8; KEY_LEN]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(DOMAIN);
    hasher.update(public_key);
    hasher.finalize().into()
}

/// The node address owned by `public_key`.
pub fn node_address(public_key: &[u8; KEY_LEN]) -> Ipv6Addr {
    let h = key_hash(public_key);
    let mut a = [0u8; 16];
    a[0] = NODE_ADDR_BYTE;
    a[1..].copy_from_slice(&h[..15]);
    Ipv6Addr::from(a)
}

/// The first address of the /64 subnet owned by `public_key`.
pub fn node_subnet(public_key: &[u8; KEY_LEN]) -> Ipv6Addr {
    let h = key_hash(public_key);
    let mut a = [0u8; 16];
    a[0] = SUBNET_BYTE;
    a[1..8].copy_from_slice(&h[..7]);
    Ipv6Addr::from(a)
}

/// What an IPv6 address is, as far as the overlay is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKind {
    /// A node address (`0600::/8`).
    Node,
    /// An address inside some node's subnet (`0700::/8`).
    Subnet,
    /// Not an overlay address.
    Outside,
}

/// Classifies `addr` by its first byte.
pub fn classify(addr: &Ipv6Addr) -> AddrKind {
    match addr.octets()[0] {
        NODE_ADDR_BYTE => AddrKind::Node,
        SUBNET_BYTE => AddrKind::Subnet,
        _ => AddrKind::Outside,
    }
}

/// The part of an overlay address that identifies its owner: the whole address for a node
/// address, the /64 prefix (host bits zeroed) for a subnet address. Two addresses with the same
/// owner id belong to the same key. `None` outside the overlay.
pub fn owner_id(addr: &Ipv6Addr) -> Option<Ipv6Addr> {
    match classify(addr) {
        AddrKind::Node => Some(*addr),
        AddrKind::Subnet => {
            let mut o = addr.octets();
            o[8..].fill(0);
            Some(Ipv6Addr::from(o))
        }
        AddrKind::Outside => None,
    }
}

/// True if `addr` is `public_key`'s node address or lies in its subnet.
///
/// This is the check anybody can run to see that an address belongs to a key.
pub fn key_owns(public_key: &[u8; KEY_LEN], addr: &Ipv6Addr) -> bool {
    match classify(addr) {
        AddrKind::Node => node_address(public_key) == *addr,
        AddrKind::Subnet => owner_id(addr) == Some(node_subnet(public_key)),
        AddrKind::Outside => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; KEY_LEN] {
        [n; KEY_LEN]
    }

    #[test]
    fn addresses_fall_in_the_overlay_and_nowhere_else() {
        for n in 0..=255u8 {
            let a = node_address(&key(n));
            let s = node_subnet(&key(n));
            assert_eq!(classify(&a), AddrKind::Node);
            assert_eq!(classify(&s), AddrKind::Subnet);
            // Inside 0600::/7 ...
            assert_eq!(a.octets()[0] >> 1, 0x03);
            assert_eq!(s.octets()[0] >> 1, 0x03);
            // ... and so outside Yggdrasil's 200::/7 and Mycelium's 400::/7.
            for b in [a.octets()[0], s.octets()[0]] {
                assert_ne!(b >> 1, 0x01, "overlaps 200::/7");
                assert_ne!(b >> 1, 0x02, "overlaps 400::/7");
            }
            assert_eq!(&s.octets()[8..], &[0u8; 8]);
        }
    }

    #[test]
    fn ownership_is_checked_against_the_key() {
        let a = node_address(&key(1));
        assert!(key_owns(&key(1), &a));
        assert!(!key_owns(&key(2), &a));
        let mut host = node_subnet(&key(1)).octets();
        host[15] = 0x42;
        host[9] = 0x99;
        let host = Ipv6Addr::from(host);
        assert!(key_owns(&key(1), &host));
        assert!(!key_owns(&key(2), &host));
        assert!(!key_owns(&key(1), &"2001:db8::1".parse().expect("literal")));
        // One bit flipped in the node address is someone else's.
        let mut o = a.octets();
        o[15] ^= 1;
        assert!(!key_owns(&key(1), &Ipv6Addr::from(o)));
    }

    #[test]
    fn derivation_is_stable() {
        // Pinned so that a change to the derivation (which would move every node) is noticed.
        assert_eq!(
            node_address(&key(7)).to_string(),
            "662:7c82:7613:6f30:bd5f:e311:f9df:60f1"
        );
        assert_eq!(node_subnet(&key(7)).to_string(), "762:7c82:7613:6f30::");
    }
}
