//! znets: private networks of one deployment, carried over the mesh.
//!
//! ```text
//!  container ─veth─ router namespace of znet Z ─ TUN ─► meshd: Node::znet_outbound(Z, packet)
//!     → member owning the destination subnet → Z's own end-to-end session with that member
//!       (Noise IKpsk2: the psk comes from Z's secret, the prologue names Z) → routed → …
//!  … → Node::inbound: a ZNET message for Z from key K: K must be a member of Z, the session
//!       must be Z's (psk), the packet's source must lie in K's subnet and its destination in
//!       ours → Inbound::Znet → Z's TUN → router namespace → container
//! ```
//!
//! This module is the sans-IO part (manifests, per-znet sessions and checks); the namespaces,
//! TUN devices and veth pairs are `daemon::znets`'s. A node outside Z has no psk: it can
//! complete no handshake of Z, so it can neither read Z's traffic nor inject into it, and its
//! attempts are dropped and counted (`handshake_failed`, `not_member`).

pub mod manifest;

pub use manifest::{Manifest, Member};

use crate::e2e::{E2e, E2eConfig};
use crate::identity::{Identity, PublicKey};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Instant;

/// First byte of a routed payload that belongs to a znet: `ZNET | id (8 bytes) | e2e message`.
pub const ZNET: u8 = 0x5a;
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
    pub fn new(
        identity: &Identity,
        manifest: Manifest,
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
            manifest,
            me,
            counters: ZnetCounters::default(),
        })
    }

    /// Puts a new version of the manifest in force (same id and secret): sessions with nodes
    /// that are no longer members are closed at once.
    pub fn update(&mut self, manifest: Manifest) {
        let gone: Vec<PublicKey> = self
            .e2e
            .remotes()
            .filter(|k| manifest.member(k).is_none())
            .copied()
            .collect();
        for k in gone {
            self.e2e.close(&k);
        }
        self.manifest = manifest;
    }

    /// The member a packet from a local container goes to, if any.
    pub fn destination(&mut self, packet: &[u8]) -> Option<PublicKey> {
        let (_, dst) = ip_ends(packet)?;
        match self.manifest.owner_of(dst) {
            Some(m) if m.key != self.me => Some(m.key),
            _ => {
                self.counters.no_member += 1;
                None
            }
        }
    }

    /// Whether a packet that `from`'s session delivered may go to the TUN: `from` is a member,
    /// the source lies in its subnet, the destination in ours. Counts what it drops.
    pub fn accept(&mut self, from: &PublicKey, packet: &[u8]) -> bool {
        let Some((src, dst)) = ip_ends(packet) else {
            self.counters.bad_source += 1;
            return false;
        };
        let Some(m) = self.manifest.member(from) else {
            self.counters.not_member += 1;
            return false;
        };
        if !m.holds(src) {
            self.counters.bad_source += 1;
            return false;
        }
        if !self
            .manifest
            .member(&self.me)
            .is_some_and(|me| me.holds(dst))
        {
            self.counters.not_for_us += 1;
            return false;
        }
        self.counters.delivered += 1;
        true
    }

    /// Whether `key` is a member.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.manifest.member(key).is_some()
    }
}
