//! znets: private networks of one deployment, carried over the mesh.
//!
//! ```text
//!  container ─veth─ router namespace of znet Z ─ TUN ─► meshd: Node::znet_outbound(Z, packet)
//!     → member owning the destination subnet → Z's own end-to-end session with that member
//!       (Noise IKpsk1: the psk comes from Z's secret, the prologue names Z) → routed → …
//!  … → Node::inbound: a ZNET message for Z from key K: K must be a member of Z, the session
//!       must be Z's (psk), the packet's source must lie in K's subnet and its destination in
//!       ours → Inbound::Znet → Z's TUN → router namespace → container
//! ```
//!
//! This module is the sans-IO part (manifests, per-znet sessions and checks); the namespaces,
//! TUN devices and veth pairs are `daemon::znets`'s. A node outside Z has no psk: it can
//! complete no handshake of Z, so it can neither read Z's traffic nor inject into it, and its
//! attempts are dropped and counted (`handshake_failed`, `not_member`).
//!
//! **Egress through an exit member** (`egress = "<key>"`): a packet from a container for an
//! address outside the znet's ranges goes to the exit member, in the znet's session with it.
//! The exit takes it only if it is the exit (its manifest names it) and its operator allowed
//! it (`[znet] exit` in its configuration: [`Znet::exit`]); its router namespace sends it out,
//! NATed, and the replies (the only packets from outside that the namespace lets in) come back
//! through its TUN to the member whose subnet holds the destination. That member takes a
//! source outside the znet only from the exit member. Everything else keeps the checks above.
//!
//! ```text
//!  container on A → A's TUN → Node::znet_outbound: outside the ranges → exit member E
//!  … → E: Node::inbound: source in A's subnet, destination outside, E is the allowed exit
//!       → E's TUN → router namespace → NAT → uplink                         (exit_out)
//!  reply → uplink → de-NAT → E's TUN → znet_outbound: E is the exit, source outside,
//!       destination a member's → A                                          (exit_back)
//!  … → A: Node::inbound: source outside, from E = the exit → A's TUN → container
//! ```

pub mod manifest;

pub use manifest::{Egress, Manifest, Member};

use crate::e2e::{E2e, E2eConfig};
use crate::identity::{Identity, PublicKey};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Instant;

/// First byte of a routed payload that belongs to a znet: `ZNET | id (8 bytes) | e2e message`.
pub const ZNET: u8 = crate::codes::routed::ZNET;
/// Bytes before the end-to-end message.
pub const HEADER: usize = 9;

/// Drops and deliveries of one znet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZnetCounters {
    /// Packets sent to members.
    pub sent: u64,
    /// Packets delivered to the znet's TUN.
    pub delivered: u64,
    /// Messages from a node that is not a member (dropped).
    pub not_member: u64,
    /// Packets whose source is not in the sender's subnet (dropped).
    pub bad_source: u64,
    /// Packets for an address not in this node's subnet (dropped).
    pub not_for_us: u64,
    /// Packets from a container for an address no member owns (dropped).
    pub no_member: u64,
    /// Packets from a container whose source is not in this node's subnet (dropped).
    pub spoofed: u64,
    /// Packets too big for the path, answered with ICMP "packet too big" (IPv4: fragmentation
    /// needed) so that the container's TCP lowers its segment size.
    pub too_big: u64,
    /// Packets from a container for an address outside the znet when it has no exit member
    /// to send them to (no `egress`, or `egress = "local"` and they reached meshd) (dropped).
    pub no_egress: u64,
    /// Packets a member sent here for an address outside the znet while this node is not an
    /// exit allowed for the znet (not named by `egress`, or not in `[znet] exit`) (dropped).
    pub not_exit: u64,
    /// As the exit: packets from members sent out to the uplink.
    pub exit_out: u64,
    /// As the exit: replies from outside sent back to members.
    pub exit_back: u64,
}

/// One znet on this node.
pub struct Znet {
    /// The manifest in force.
    pub manifest: Manifest,
    /// The znet's own end-to-end sessions.
    pub e2e: E2e,
    me: PublicKey,
    /// Counters.
    pub counters: ZnetCounters,
    /// Packets for this znet's TUN made here (ICMP errors for the containers).
    pub tun_out: std::collections::VecDeque<Vec<u8>>,
    /// Whether this node acts as the znet's exit: `egress` names it and its operator allowed
    /// it (`[znet] exit`).
    pub exit: bool,
}

/// The source and destination addresses of an IPv4 or IPv6 packet.
pub fn ip_ends(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let a = |i: usize| IpAddr::from([p[i], p[i + 1], p[i + 2], p[i + 3]]);
            Some((a(12), a(16)))
        }
        6 if p.len() >= 40 => {
            let a = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&p[i..i + 16]);
                IpAddr::from(o)
            };
            Some((a(8), a(24)))
        }
        _ => None,
    }
}

impl Znet {
    /// The znet of `manifest` on the node `identity`; `None` if the node is not a member.
    /// `exit_allowed`: this node's operator allows it to be the znet's exit (it is, if the
    /// manifest's `egress` names it too).
    pub fn new(
        identity: &Identity,
        manifest: Manifest,
        exit_allowed: bool,
        mut cfg: E2eConfig,
        seed: u64,
        now: Instant,
    ) -> Option<Znet> {
        let me = identity.public_key();
        manifest.member(&me)?;
        cfg.bind = Some(crate::noise::Bind {
            id: manifest.id,
            psk: manifest.psk(),
        });
        Some(Znet {
            e2e: E2e::new(identity, cfg, seed, now),
            exit: exit_allowed && manifest.exit_member() == Some(&me),
            manifest,
            me,
            counters: ZnetCounters::default(),
            tun_out: Default::default(),
        })
    }

    /// Puts a new version of the manifest in force (same id and secret): sessions with nodes
    /// that are no longer members are closed at once.
    pub fn update(&mut self, manifest: Manifest, exit_allowed: bool) {
        let gone: Vec<PublicKey> = self
            .e2e
            .remotes()
            .filter(|k| manifest.member(k).is_none())
            .copied()
            .collect();
        for k in gone {
            self.e2e.close(&k);
        }
        self.exit = exit_allowed && manifest.exit_member() == Some(&self.me);
        self.manifest = manifest;
    }

    /// Whether a packet from this node's TUN may leave: its source lies in this node's subnet
    /// (one container cannot speak for another node's; the router namespace's reverse-path
    /// filter keeps it from speaking for a neighbour), or, on the exit, it is a reply from
    /// outside (a source outside the znet for a member's container: the router namespace lets
    /// in from its uplink only replies). Counts what it refuses.
    pub fn from_here(&mut self, packet: &[u8]) -> bool {
        let Some((src, dst)) = ip_ends(packet) else {
            self.counters.spoofed += 1;
            return false;
        };
        if self.manifest.member(&self.me).is_some_and(|m| m.holds(src)) {
            return true;
        }
        if self.exit && !self.manifest.in_range(src) && self.manifest.in_range(dst) {
            self.counters.exit_back += 1;
            return true;
        }
        self.counters.spoofed += 1;
        false
    }

    /// The member a packet from this node's TUN goes to, if any: the owner of its
    /// destination, or, for a destination outside the znet, the exit member.
    pub fn destination(&mut self, packet: &[u8]) -> Option<PublicKey> {
        let (_, dst) = ip_ends(packet)?;
        if let Some(m) = self.manifest.owner_of(dst) {
            if m.key != self.me {
                return Some(m.key);
            }
        } else if !self.manifest.in_range(dst) {
            return match self.manifest.exit_member() {
                Some(k) if *k != self.me => Some(*k),
                _ => {
                    self.counters.no_egress += 1;
                    None
                }
            };
        }
        self.counters.no_member += 1;
        None
    }

    /// Whether a packet that `from`'s session delivered may go to the TUN: `from` is a member,
    /// the source lies in its subnet (or outside the znet, if `from` is the exit member), the
    /// destination in ours (or outside the znet, if this node is the allowed exit). Counts
    /// what it drops.
    pub fn accept(&mut self, from: &PublicKey, packet: &[u8]) -> bool {
        let Some((src, dst)) = ip_ends(packet) else {
            self.counters.bad_source += 1;
            return false;
        };
        let Some(m) = self.manifest.member(from) else {
            self.counters.not_member += 1;
            return false;
        };
        let from_member = m.holds(src);
        let from_exit = !from_member
            && !self.manifest.in_range(src)
            && *from != self.me
            && self.manifest.exit_member() == Some(from);
        if !from_member && !from_exit {
            self.counters.bad_source += 1;
            return false;
        }
        if self
            .manifest
            .member(&self.me)
            .is_some_and(|me| me.holds(dst))
        {
            self.counters.delivered += 1;
            return true;
        }
        if from_member && !self.manifest.in_range(dst) {
            if self.exit {
                self.counters.exit_out += 1;
                return true;
            }
            self.counters.not_exit += 1;
            return false;
        }
        self.counters.not_for_us += 1;
        false
    }

    /// Answers a packet too big for the path with an ICMP error (so the container's TCP
    /// adapts); `mtu` is the largest packet that fits.
    pub fn too_big(&mut self, packet: &[u8], mtu: usize) {
        self.counters.too_big += 1;
        let reply = match packet.first().map(|b| b >> 4) {
            Some(4) => icmp4_frag_needed(packet, mtu as u16),
            // IPv6 paths carry at least 1280 bytes; below that nothing helps (and Linux would
            // raise the figure to 1280 anyway): the packet is dropped, counted.
            Some(6) if mtu >= 1280 => crate::packet::icmp6_error(
                crate::packet::Icmp6Error::PacketTooBig(mtu as u32),
                packet,
            ),
            _ => None,
        };
        if let Some(r) = reply {
            self.tun_out.push_back(r);
        }
    }

    /// Whether `key` is a member.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.manifest.member(key).is_some()
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMPv4 "fragmentation needed" (type 3, code 4) about `original`, as if from its
/// destination (an address the router namespace routes back through the TUN, so that no
/// source check drops it), when the original forbids fragmenting (DF); `None` otherwise
/// (such a packet is dropped).
pub fn icmp4_frag_needed(original: &[u8], mtu: u16) -> Option<Vec<u8>> {
    if original.len() < 20 || original[0] >> 4 != 4 || original[6] & 0x40 == 0 {
        return None;
    }
    let ihl = usize::from(original[0] & 0x0f) * 4;
    if ihl < 20 || u16::from_be_bytes([original[6], original[7]]) & 0x1fff != 0 {
        return None; // malformed, or not the first fragment
    }
    if original[9] == 1
        && original
            .get(ihl)
            .is_some_and(|t| *t < 128 && *t != 0 && *t != 8)
    {
        return None; // never an error about an error
    }
    let quoted = &original[..(ihl + 8).min(original.len())];
    let total = 20 + 8 + quoted.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&original[16..20]);
    p[16..20].copy_from_slice(&original[12..16]);
    let ck = checksum(&p[..20]);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    p[20] = 3;
    p[21] = 4;
    p[26..28].copy_from_slice(&mtu.to_be_bytes());
    p[28..].copy_from_slice(quoted);
    let ck = checksum(&p[20..]);
    p[22..24].copy_from_slice(&ck.to_be_bytes());
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_with_another_secret_completes_no_handshake() {
        use crate::e2e::{E2eConfig, Received};
        use crate::identity::Identity;
        let (a, b) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let manifest = |secret: u8| {
            Manifest::parse(&format!(
                "name = \"z\"\nid = \"00000000000000aa\"\nsecret = \"{}\"\nipv4 = \"10.50.0.0/16\"\n\
                 [[members]]\nkey = \"{}\"\n[[members]]\nkey = \"{}\"\n",
                format!("{secret:02x}").repeat(32),
                a.public_key(),
                b.public_key()
            ))
            .expect("manifest")
        };
        let now = Instant::now();
        let handshake = |sa: u8, sb: u8| {
            let mut za =
                Znet::new(&a, manifest(sa), false, E2eConfig::default(), 1, now).expect("member");
            let mut zb =
                Znet::new(&b, manifest(sb), false, E2eConfig::default(), 2, now).expect("member");
            let mut pkt = vec![0u8; 20];
            pkt[0] = 0x45;
            let mut out = Vec::new();
            let _ = za.e2e.encrypt(now, &b.public_key(), &pkt, &mut out);
            let (_, init) = za.e2e.poll_transmit().expect("an init");
            let mut buf = vec![0u8; 256];
            zb.e2e.handle(now, &a.public_key(), &init, &mut buf)
        };
        assert_eq!(
            handshake(7, 7),
            Received::Consumed,
            "same secret: the init is answered"
        );
        assert_eq!(
            handshake(7, 8),
            Received::Dropped,
            "another secret: refused"
        );
    }

    #[test]
    fn frag_needed_is_well_formed() {
        let mut orig = vec![0u8; 1400];
        orig[0] = 0x45;
        orig[6] = 0x40; // DF
        orig[9] = 6;
        orig[12..16].copy_from_slice(&[10, 50, 1, 2]);
        orig[16..20].copy_from_slice(&[10, 50, 2, 2]);
        let r = icmp4_frag_needed(&orig, 1300).expect("an error");
        assert_eq!(checksum(&r[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&r[20..]), 0, "ICMP checksum");
        assert_eq!((r[20], r[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([r[26], r[27]]), 1300);
        assert_eq!(&r[16..20], &[10, 50, 1, 2]);
        orig[6] = 0;
        assert_eq!(&r[12..16], &[10, 50, 2, 2]);
        assert!(icmp4_frag_needed(&orig, 1300).is_none(), "no DF: no error");
    }
}
