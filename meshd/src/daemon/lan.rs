//! LAN discovery on the host: the multicast socket, the interfaces it uses, announcing every
//! second and handing checked announcements to the link core. The announcement format and
//! its checks are [`crate::discovery`]'s (sans-IO); this file only does the I/O.
//!
//! Interfaces come from `/proc/net/if_inet6` (those with a usable link-local address) and
//! `/sys/class/net/NAME/flags` (up, multicast, not loopback), filtered by `[discovery]`, and
//! are looked at again every few seconds, so a cable plugged in later is used.

use crate::config::DiscoveryConfig;
use crate::discovery::{self, Receiver, Rejected};
use crate::identity::Identity;
use crate::link::Discovered;
use crate::node::Node;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Interfaces are looked for again this often.
const RESCAN: Duration = Duration::from_secs(1);
/// Receive buffer of the discovery socket: room for a burst of a flood (about 8,000
/// announcements), so that one of a real neighbour's is not lost in the kernel before the
/// receiver's cheap checks see it.
const RECV_BUFFER: usize = 1 << 20;
/// Announcements read per wake-up before the loop looks at other work.
const READ_BUDGET: usize = 256;

/// Counters shown by `meshctl status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LanCounters {
    /// Announcements sent.
    pub sent: u64,
    /// Announcements accepted (signature good, newer than the last from that key).
    pub accepted: u64,
    /// New neighbours handed to the link core to dial.
    pub new_neighbours: u64,
    /// Neighbours the circle policy does not allow to link.
    pub denied: u64,
    /// Dropped: over the rate of their source or of all sources.
    pub rate_limited: u64,
    /// Dropped: not an announcement.
    pub malformed: u64,
    /// Dropped: the signature does not verify for the key named (a forgery).
    pub bad_signature: u64,
    /// Dropped: a replay, or older than one already seen.
    pub stale: u64,
    /// Dropped: not from a link-local address on an interface in use.
    pub wrong_source: u64,
}

/// What `meshctl status` shows of discovery.
#[derive(Debug, Clone, Serialize)]
pub struct LanInfo {
    /// Interfaces announced on and listened to.
    pub interfaces: Vec<String>,
    /// Counters.
    pub counters: LanCounters,
}

/// Discovery's socket and state.
pub struct Lan {
    sock: UdpSocket,
    cfg: DiscoveryConfig,
    /// Devices of this node itself (its TUN), never used.
    own_devices: Vec<String>,
    /// The link port announced (an IPv6 listen socket's).
    port: u16,
    receiver: Receiver,
    /// Interfaces joined: index → name.
    joined: BTreeMap<u32, String>,
    seq: u64,
    last_scan: Option<Instant>,
    counters: LanCounters,
}

impl Lan {
    /// Opens discovery if the config enables it and the node has an IPv6 socket whose port can
    /// be announced. Problems are logged: discovery is a convenience, never a reason not to run.
    pub fn open(
        cfg: &DiscoveryConfig,
        own_devices: Vec<String>,
        listen: &[SocketAddr],
        identity: &Identity,
        seq: u64,
        now: Instant,
        protect: &crate::protect::Protect,
    ) -> Option<Lan> {
        if !cfg.enabled {
            return None;
        }
        let Some(port) = listen
            .iter()
            .find(|a| a.is_ipv6() && a.ip().is_unspecified())
            .map(|a| a.port())
        else {
            tracing::warn!(
                "LAN discovery needs a listen address on all IPv6 interfaces (udp://[::]:PORT); \
                 discovery is off"
            );
            return None;
        };
        let sock = match bind(protect) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "LAN discovery cannot listen on [::]:{} ({e}); discovery is off",
                    discovery::PORT
                );
                return None;
            }
        };
        Some(Lan {
            sock,
            cfg: cfg.clone(),
            own_devices,
            port,
            receiver: Receiver::new(identity.public_key(), now),
            joined: BTreeMap::new(),
            seq,
            last_scan: None,
            counters: LanCounters::default(),
        })
    }

    /// Once a second: looks for interfaces (every few seconds) and announces on each.
    pub async fn tick(&mut self, identity: &Identity, now: Instant) {
        if self.last_scan.is_none_or(|t| now >= t + RESCAN) {
            self.last_scan = Some(now);
            self.rescan();
        }
        for (&index, name) in &self.joined {
            self.seq += 1;
            let bytes = discovery::announce(identity, self.port, self.seq);
            let to = SocketAddrV6::new(discovery::GROUP, discovery::PORT, 0, index);
            match self.sock.send_to(&bytes, to).await {
                Ok(_) => self.counters.sent += 1,
                Err(e) => tracing::debug!(interface = %name, "discovery announcement: {e}"),
            }
        }
    }

    fn rescan(&mut self) {
        let now: BTreeMap<u32, String> = interfaces()
            .into_iter()
            .filter(|(_, name)| self.cfg.allows(name) && !self.own_devices.contains(name))
            .collect();
        for (index, name) in &self.joined {
            if !now.contains_key(index) {
                let _ = self.sock.leave_multicast_v6(&discovery::GROUP, *index);
                tracing::info!(interface = %name, "LAN discovery: interface gone");
            }
        }
        let mut joined = BTreeMap::new();
        for (index, name) in now {
            if self.joined.contains_key(&index) {
                joined.insert(index, name);
                continue;
            }
            match self.sock.join_multicast_v6(&discovery::GROUP, index) {
                Ok(()) => {
                    tracing::info!(interface = %name, "LAN discovery: announcing and listening");
                    joined.insert(index, name);
                }
                Err(e) => {
                    tracing::debug!(interface = %name, "cannot join the discovery group: {e}")
                }
            }
        }
        self.joined = joined;
    }

    /// Waits for an announcement and handles every one that is queued.
    pub async fn readable(&self) {
        let _ = self.sock.readable().await;
    }

    /// Reads what is queued and hands good announcements to the node's link core.
    pub fn receive(&mut self, node: &mut Node, now: Instant) {
        let mut buf = [0u8; 512];
        for _ in 0..READ_BUDGET {
            let (len, from) = match self.sock.try_recv_from(&mut buf) {
                Ok(r) => r,
                Err(_) => return,
            };
            let SocketAddr::V6(from6) = from else {
                self.counters.wrong_source += 1;
                continue;
            };
            let ip = *from6.ip();
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            if !link_local || !self.joined.contains_key(&from6.scope_id()) {
                self.counters.wrong_source += 1;
                continue;
            }
            let a = match self.receiver.handle(now, from, &buf[..len]) {
                Ok(a) => a,
                Err(why) => {
                    let c = &mut self.counters;
                    match why {
                        Rejected::RateLimited => c.rate_limited += 1,
                        Rejected::Malformed => c.malformed += 1,
                        Rejected::Own => {}
                        Rejected::BadSignature => {
                            c.bad_signature += 1;
                            tracing::debug!(%from, "forged discovery announcement ignored");
                        }
                        Rejected::Stale => c.stale += 1,
                    }
                    continue;
                }
            };
            self.counters.accepted += 1;
            let at = SocketAddr::V6(SocketAddrV6::new(ip, a.port, 0, from6.scope_id()));
            match node.links.discovered(a.key, at, now) {
                Discovered::New => self.counters.new_neighbours += 1,
                Discovered::Denied => self.counters.denied += 1,
                Discovered::Known | Discovered::Full => {}
            }
        }
    }

    /// For `meshctl status`.
    pub fn info(&self) -> LanInfo {
        LanInfo {
            interfaces: self.joined.values().cloned().collect(),
            counters: self.counters.clone(),
        }
    }
}

/// The discovery socket: `[::]:7822`, shared with other nodes on this host (each gets every
/// announcement), not looping our own back, hop limit 1 (link-local anyway).
fn bind(protect: &crate::protect::Protect) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    protect.socket(
        &s,
        crate::protect::SocketKind::Discovery,
        format_args!("[::]:{}", discovery::PORT),
    )?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    s.set_multicast_loop_v6(false)?;
    s.set_multicast_hops_v6(1)?;
    s.set_nonblocking(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(RECV_BUFFER);
    let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, discovery::PORT, 0, 0);
    s.bind(&SockAddr::from(addr))?;
    UdpSocket::from_std(s.into())
}

/// Interfaces that are up, can multicast, are not loopback, and have a link-local address
/// past duplicate address detection: index → name.
fn interfaces() -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return out;
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, index, _plen, scope, flags, name] = f[..] else {
            continue;
        };
        let (Ok(index), Ok(scope), Ok(flags)) = (
            u32::from_str_radix(index, 16),
            u32::from_str_radix(scope, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        // Link scope; not tentative (0x40) or failed duplicate detection (0x08).
        if scope != 0x20 || flags & 0x48 != 0 || !addr.starts_with("fe8") {
            continue;
        }
        let dev_flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|t| u32::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        const IFF_UP: u32 = 0x1;
        const IFF_LOOPBACK: u32 = 0x8;
        const IFF_MULTICAST: u32 = 0x1000;
        if dev_flags & IFF_UP != 0
            && dev_flags & IFF_LOOPBACK == 0
            && dev_flags & IFF_MULTICAST != 0
        {
            out.insert(index, name.to_string());
        }
    }
    out
}
