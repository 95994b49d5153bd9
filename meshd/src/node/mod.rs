//! A whole node without I/O: the link layer, the router and the end-to-end sessions wired
//! together. The daemon feeds it TUN packets and datagrams and sends what it returns; tests run
//! several of them in memory.
//!
//! ```text
//!  TUN packet ─► outbound: address → key (router lookup, packets wait) → e2e encrypt
//!                → routed TRAFFIC → link frame → datagram
//!  datagram ──► inbound: link decrypt → router: Forward (re-encrypted for the next link)
//!                                            or Deliver → e2e decrypt + source check → TUN
//!  poll_transmit(): handshakes, keepalives, tree and lookup messages, flushed queues
//!  poll_tun():      ICMPv6 errors for the local stack (Packet Too Big, unreachable)
//! ```
//!
//! The node is split by concern: this file holds the API types, the state and the
//! small accessors; [`outbound`] takes packets from the local stack, [`inbound`] takes
//! datagrams, [`znet`] does the same for znets, [`pump`] moves events between the layers,
//! [`punch`] offers endpoints for NAT traversal, [`timers`] runs what is due, [`ping`]
//! measures overlay round trips. None of them reads a clock or touches a socket.
//!
//! `testnet` (tests, or the `testnet` feature) runs N whole nodes on a virtual network and
//! clock; `model_test` checks them against a reference model with generated transitions.

mod direct;
mod inbound;
mod outbound;
mod ping;
mod pump;
mod punch;
mod timers;
mod znet;

#[cfg(test)]
mod direct_test;
#[cfg(test)]
mod model_test;
#[cfg(any(test, feature = "testnet"))]
pub mod testnet;
#[cfg(any(test, feature = "testnet"))]
mod testnet_packets;
#[cfg(test)]
mod znet_exit_test;

pub use ping::PingOutcome;
use ping::PingWait;

use crate::e2e::{E2e, E2eConfig};
use crate::firewall::{Firewall, PolicyCounters};
use crate::identity::{Identity, PublicKey};
use crate::link::{LinkConfig, Links, Transmit};
use crate::nat::Nat;
use crate::uri::Endpoint;
use crate::wire;
use crate::znet::Znet;
use routing::{Router, RouterConfig};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Largest UDP payload sent: fits a 1500-byte path over IPv6 (1500 - 40 - 8).
pub const MAX_DATAGRAM: usize = 1452;
/// Room for a routing message in one datagram (link header, frame kind, tag).
pub const MAX_ROUTING_MESSAGE: usize = MAX_DATAGRAM - wire::TRANSPORT_OVERHEAD - 1;
/// Packets kept per destination while its address is looked up.
const WAIT_PER_ADDRESS: usize = 32;
/// Destinations with control messages parked until their coordinates are known.
const MAX_PARKED_KEYS: usize = 1024;
/// Give up on a lookup (and its waiting packets) after this long.
const LOOKUP_PATIENCE: Duration = Duration::from_secs(5);
/// An overlay ping unanswered after this long has failed.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Configuration of a whole node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Link layer.
    pub link: LinkConfig,
    /// Routing.
    pub router: RouterConfig,
    /// End-to-end sessions.
    pub e2e: E2eConfig,
}

/// What became of a packet from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send `net_out[..len]` to `to`.
    Datagram {
        /// Where to.
        to: Endpoint,
        /// Length.
        len: usize,
    },
    /// Waiting for a lookup or a session; it will come out of `poll_transmit`.
    Waiting,
    /// Too big for the path: an ICMPv6 Packet Too Big is waiting in `poll_tun`.
    TooBig,
    /// Dropped and counted.
    Dropped,
}

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// An IPv6 packet for the TUN device is in `tun_out[..len]`.
    Tun {
        /// Length.
        len: usize,
    },
    /// An IPv6 packet for the TUN device, decrypted where it lay: `datagram[at..at + len]`
    /// ([`Node::inbound_in_place`] only).
    TunAt {
        /// Where it starts in the datagram (never before byte 10: there is room for a
        /// virtio-net header in front of it).
        at: usize,
        /// Length.
        len: usize,
    },
    /// Forward: send `net_out[..len]` to `to`.
    Forward {
        /// Where to.
        to: Endpoint,
        /// Length.
        len: usize,
    },
    /// Forward: the datagram was sealed again for the next link where it lay
    /// ([`Node::inbound_in_place`]); send its first `len` bytes to `to`.
    ForwardInPlace {
        /// Where to.
        to: Endpoint,
        /// Length (the datagram's own: the frame keeps its length).
        len: usize,
    },
    /// A packet for znet `id`'s TUN device is in `tun_out[..len]`.
    Znet {
        /// The znet.
        id: u64,
        /// Length.
        len: usize,
    },
    /// Handled, nothing to pass on (control, or dropped and counted).
    Done,
}

/// Drops at the node level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeCounters {
    /// TUN packets that are not valid IPv6.
    pub bad_local_packet: u64,
    /// Multicast from the local stack (the overlay carries unicast).
    pub multicast: u64,
    /// TUN packets for addresses outside the overlay.
    pub outside_overlay: u64,
    /// TUN packets answered with Packet Too Big.
    pub too_big: u64,
    /// Packets for which no owner was found.
    pub unreachable: u64,
    /// Packets that had no way on (path broken while sending).
    pub no_path: u64,
}

/// One node: links, router, end-to-end sessions.
pub struct Node {
    /// The link layer.
    pub links: Links,
    /// The router.
    pub router: Router,
    /// End-to-end sessions.
    pub e2e: E2e,
    /// The circle policy on the data path.
    pub firewall: Firewall,
    /// znets this node is a member of, by id.
    pub znets: std::collections::BTreeMap<u64, Znet>,
    /// Names of the znets this node's operator allows it to be the exit of (`[znet] exit` in
    /// the configuration); read when a znet is put in force.
    pub znet_exits: Vec<String>,
    /// NAT traversal: observed endpoints, rounds of punching.
    pub nat: Nat,
    e2e_cfg: E2eConfig,
    seed: u64,
    address: Ipv6Addr,
    subnet: Ipv6Addr,
    /// Packets waiting for their destination's lookup, by owner id.
    waiting: HashMap<Ipv6Addr, (Instant, VecDeque<Vec<u8>>)>,
    /// End-to-end messages waiting for their destination's coordinates.
    parked: HashMap<PublicKey, VecDeque<Vec<u8>>>,
    ebuf: Vec<u8>,
    rbuf: Vec<u8>,
    transmits: VecDeque<Transmit>,
    tun_out: VecDeque<Vec<u8>>,
    pings: Vec<PingWait>,
    ping_results: VecDeque<(u64, PingOutcome)>,
    next_ticket: u64,
    counters: NodeCounters,
    links_events: VecDeque<crate::uri::PeerUri>,
    peer_events: VecDeque<PeerEvent>,
    name_events: VecDeque<NameEvent>,
}

/// What the router said about names (for the daemon: claims, the DNS responder, meshctl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameEvent {
    /// Where one of our claims stands changed.
    Claimed {
        /// The name.
        name: String,
        /// Where it stands.
        state: routing::names::ClaimState,
    },
    /// A resolution finished: the owner, or `None` (no such name).
    Resolved {
        /// The name.
        name: String,
        /// The owner and why.
        result: Option<Box<routing::names::Resolution>>,
    },
}

/// Most name events kept for a reader that does not read them: the oldest go first.
const MAX_NAME_EVENTS: usize = 1024;

/// A link to a peer came up or went down (for whoever embeds the node: logs, apps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEvent {
    /// The peer's key.
    pub key: PublicKey,
    /// Up (`true`) or down.
    pub up: bool,
}

/// Most peer events kept for a reader that does not read them: the oldest go first.
const MAX_PEER_EVENTS: usize = 256;

impl Node {
    /// A node for `identity`. `seq` must exceed any routing sequence number this identity used
    /// before (the daemon passes wall-clock milliseconds); `seed` drives indexes and nonces.
    pub fn new(
        identity: &Identity,
        cfg: NodeConfig,
        secret: &[u8; 32],
        seq: u64,
        seed: u64,
        now: Instant,
    ) -> Self {
        let public = identity.public_key();
        Node {
            links: Links::new(identity, cfg.link, seed, now),
            router: Router::new(secret, cfg.router, seq, seed.rotate_left(17), now),
            e2e: E2e::new(identity, cfg.e2e.clone(), seed.rotate_left(33), now),
            firewall: Firewall::default(),
            znets: Default::default(),
            znet_exits: Vec::new(),
            nat: Nat::default(),
            e2e_cfg: cfg.e2e,
            seed,
            address: public.address(),
            subnet: public.subnet(),
            waiting: HashMap::new(),
            parked: HashMap::new(),
            ebuf: Vec::with_capacity(2048),
            rbuf: Vec::with_capacity(2048),
            transmits: VecDeque::new(),
            tun_out: VecDeque::new(),
            pings: Vec::new(),
            ping_results: VecDeque::new(),
            next_ticket: 1,
            counters: NodeCounters::default(),
            links_events: VecDeque::new(),
            peer_events: VecDeque::new(),
            name_events: VecDeque::new(),
        }
    }

    /// Node-level counters.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// What the circle policy did (links refused come from the link layer).
    pub fn policy_counters(&self) -> PolicyCounters {
        PolicyCounters {
            links_refused: self.links.counters().policy_refused,
            ..self.firewall.counters()
        }
    }

    /// Puts a circle policy in force, live: new links, sessions and packets are judged by it at
    /// once; links and sessions it no longer allows are closed now; the tree drops a root it
    /// no longer allows. Allowed traffic is not disturbed.
    pub fn set_policy(&mut self, now: Instant, policy: std::sync::Arc<acl::Policy>) {
        let open = policy.is_open();
        self.firewall.set_policy(policy.clone());
        let closed = self.links.set_policy(Some(policy.clone()), now);
        let mut sessions = 0;
        let remotes: Vec<PublicKey> = self.e2e.remotes().copied().collect();
        for k in remotes {
            if !self.firewall.session_allowed(&k) && self.e2e.close(&k) {
                tracing::info!(peer = %k, "end-to-end session closed: the circle policy no longer allows it");
                sessions += 1;
            }
        }
        // Packets queued for a session were judged by the previous policy.
        let fw = &mut self.firewall;
        self.e2e.filter_queued(|k, p| fw.check_out(now, k, p));
        let c = self.firewall.counters_mut();
        c.links_closed += closed;
        c.sessions_closed += sessions;
        let root_rules = !open
            && (policy.has_rules(acl::Action::Root)
                || !policy.model().defaults[acl::Action::Root.index()].allows());
        let filter: Option<routing::RootFilter> = root_rules.then(|| {
            let p = policy.clone();
            std::sync::Arc::new(move |k: &[u8; 32]| p.classify(k).root().allows())
                as routing::RootFilter
        });
        self.router.set_root_filter(now, filter);
        let odd = policy.name_authority_addresses();
        if !odd.is_empty() {
            tracing::warn!(
                addresses = ?odd,
                "[names] authorities: members written as addresses cannot sign delegations and \
                 are not authorities; name their keys"
            );
        }
        self.router
            .set_name_policy(policy.name_pins(), policy.name_authorities());
        self.pump(now);
    }

    /// The next control datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.pump(now);
        self.transmits.pop_front()
    }

    /// The next packet for the local stack (ICMPv6 errors).
    pub fn poll_tun(&mut self) -> Option<Vec<u8>> {
        self.tun_out.pop_front()
    }

    /// Host names the link layer needs resolved.
    pub fn poll_resolve(&mut self) -> Option<crate::uri::PeerUri> {
        self.links_events.pop_front()
    }

    pub(super) fn peer_event(&mut self, key: PublicKey, up: bool) {
        if self.peer_events.len() == MAX_PEER_EVENTS {
            self.peer_events.pop_front();
        }
        self.peer_events.push_back(PeerEvent { key, up });
    }

    pub(super) fn name_event(&mut self, e: NameEvent) {
        if self.name_events.len() == MAX_NAME_EVENTS {
            self.name_events.pop_front();
        }
        self.name_events.push_back(e);
    }

    /// The next name event (at most the last 1,024 are kept).
    pub fn poll_name_event(&mut self) -> Option<NameEvent> {
        self.name_events.pop_front()
    }

    /// The next link that came up or went down (at most the last 256 are kept).
    pub fn poll_peer_event(&mut self) -> Option<PeerEvent> {
        self.peer_events.pop_front()
    }
}
