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
