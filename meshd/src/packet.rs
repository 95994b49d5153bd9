//! A checked view of the IPv6 header of a packet from the TUN device or from a peer.

use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// The fields of an IPv6 header the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Header plus payload, as the header states it (never more than the buffer).
    pub total_len: usize,
    /// Next header (protocol).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
}

/// Why bytes are not an IPv6 packet we forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the fixed header.
    #[error("shorter than an IPv6 header ({0} bytes)")]
    Short(usize),
    /// Version nibble is not 6.
    #[error("IP version {0}, only IPv6 is carried")]
    Version(u8),
    /// The payload length field points past the end, or is a jumbogram (0 with payload).
    #[error("payload length {stated} does not fit in {actual} bytes")]
    Length {
        /// What the header says.
        stated: usize,
        /// What the buffer holds.
        actual: usize,
    },
}

impl Ipv6Header {
    /// Parses and validates the fixed header of `p`.
    pub fn parse(p: &[u8]) -> Result<Self, PacketError> {
        if p.len() < IPV6_HEADER_LEN {
            return Err(PacketError::Short(p.len()));
        }
        let version = p[0] >> 4;
        if version != 6 {
            return Err(PacketError::Version(version));
        }
        let payload = u16::from_be_bytes([p[4], p[5]]) as usize;
        let total_len = IPV6_HEADER_LEN + payload;
        if total_len > p.len() {
            return Err(PacketError::Length {
                stated: payload,
                actual: p.len(),
            });
        }
        let mut src = [0u8; 16];
        src.copy_from_slice(&p[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&p[24..40]);
        Ok(Ipv6Header {
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
            total_len,
            next_header: p[6],
            hop_limit: p[7],
        })
    }
}

/// ICMPv6 errors this node sends to its own TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmp6Error {
    /// Packet Too Big, with the MTU that fits (type 2).
    PacketTooBig(u32),
    /// Destination Unreachable: address unreachable (type 1, code 3).
    AddressUnreachable,
    /// Destination Unreachable: communication administratively prohibited (type 1, code 1):
    /// the circle policy does not allow this packet.
    AdminProhibited,
}

/// Builds an ICMPv6 error about `original` (an IPv6 packet from the TUN device), as if sent by
/// its destination, so that the local stack reacts (TCP lowers its segment size; ping prints
/// the error). At most 1280 bytes, as RFC 4443 asks.
pub fn icmp6_error(err: Icmp6Error, original: &[u8]) -> Option<Vec<u8>> {
    let h = Ipv6Header::parse(original).ok()?;
    if h.next_header == 58 && original.get(IPV6_HEADER_LEN).is_some_and(|t| *t < 128) {
        return None; // never answer an ICMPv6 error with another
    }
    let (ty, code, param) = match err {
        Icmp6Error::PacketTooBig(mtu) => (2u8, 0u8, mtu),
        Icmp6Error::AddressUnreachable => (1, 3, 0),
        Icmp6Error::AdminProhibited => (1, 1, 0),
    };
    let quoted = original
        .len()
        .min(h.total_len)
        .min(1280 - IPV6_HEADER_LEN - 8);
    let icmp_len = 8 + quoted;
    let mut p = Vec::with_capacity(IPV6_HEADER_LEN + icmp_len);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(icmp_len as u16).to_be_bytes());
    p.push(58);
    p.push(64);
    p.extend_from_slice(&h.dst.octets());
    p.extend_from_slice(&h.src.octets());
    p.extend_from_slice(&[ty, code, 0, 0]);
    p.extend_from_slice(&param.to_be_bytes());
    p.extend_from_slice(&original[..quoted]);
    let ck = icmp6_checksum(&h.dst, &h.src, &p[IPV6_HEADER_LEN..]);
    p[IPV6_HEADER_LEN + 2..IPV6_HEADER_LEN + 4].copy_from_slice(&ck.to_be_bytes());
    Some(p)
}

/// The ICMPv6 checksum (RFC 4443) of `msg` (with its checksum field zero).
pub fn icmp6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn packet(src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER_LEN + payload];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        p[6] = 59; // no next header
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p
    }

    #[test]
    fn icmp_errors_are_well_formed() {
        let a: Ipv6Addr = "600::1".parse().expect("lit");
        let b: Ipv6Addr = "600::2".parse().expect("lit");
        let big = packet(a, b, 1400);
        let e = icmp6_error(Icmp6Error::PacketTooBig(1300), &big).expect("error");
        assert!(e.len() <= 1280);
        let h = Ipv6Header::parse(&e).expect("valid IPv6");
        assert_eq!((h.src, h.dst, h.next_header), (b, a, 58));
        assert_eq!(&e[40..42], &[2, 0]);
        assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1300);
        // The checksum verifies: summing with it included gives zero.
        assert_eq!(icmp6_checksum(&b, &a, &e[40..]), 0);
        // No error about an error.
        assert_eq!(icmp6_error(Icmp6Error::AddressUnreachable, &e), None);
    }

    #[test]
    fn parses_and_checks_lengths() {
        let a: Ipv6Addr = "600::1".parse().expect("lit");
        let b: Ipv6Addr = "600::2".parse().expect("lit");
        let p = packet(a, b, 10);
        let h = Ipv6Header::parse(&p).expect("valid");
        assert_eq!((h.src, h.dst, h.total_len), (a, b, 50));
        assert_eq!(Ipv6Header::parse(&p[..39]), Err(PacketError::Short(39)));
        assert_eq!(
            Ipv6Header::parse(&p[..45]),
            Err(PacketError::Length {
                stated: 10,
                actual: 45
            })
        );
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert_eq!(Ipv6Header::parse(&v4), Err(PacketError::Version(4)));
    }
}
