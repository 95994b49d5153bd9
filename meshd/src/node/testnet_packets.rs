//! Packet builders for the test network: the IPv6 UDP, ICMPv6 echo and IPv4 UDP packets that
//! tests hand to [`TestNet::send`](super::testnet::TestNet::send) and
//! [`TestNet::send_znet`](super::testnet::TestNet::send_znet), re-exported from
//! [`super::testnet`].
//!
//! Pure functions of their arguments: they must not touch a node or the network, nor grow
//! checks of their own (checksums stay zero: nothing on the overlay checks them).

use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv6 UDP packet (checksum left zero: nothing on the overlay checks it).
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut p = vec![0u8; 40 + 8];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&ports.0.to_be_bytes());
    p[42..44].copy_from_slice(&ports.1.to_be_bytes());
    p[44..46].copy_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 echo request with identifier `id`.
pub fn echo6(src: Ipv6Addr, dst: Ipv6Addr, id: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut p = vec![0u8; 40 + 8];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = 128;
    p[44..46].copy_from_slice(&id.to_be_bytes());
    p[46..48].copy_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv4 UDP packet (for znets; header checksum left zero).
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = 20 + 8 + payload.len();
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}
