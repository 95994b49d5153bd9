//! What `status` answers: the node, its uptime and links, and the counters of every layer
//! (link, routing, end-to-end, node, policy, discovery, NAT traversal, TCP and QUIC
//! connections).
//!
//! meshd keeps its own counter structs next to the code that counts; `meshd::admin` copies
//! them into these with exhaustive destructuring, so a counter added or renamed there does not
//! compile until it is added here.

use crate::info::SelfInfo;
use crate::policy::PolicyInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    #[serde(rename = "self")]
    pub node: SelfInfo,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Links up.
    pub peers_up: usize,
    /// Peers configured.
    pub peers_configured: usize,
    /// Total datagrams dropped that came from the network (sum of `dropped` but local ones).
    pub dropped_from_network: u64,
    /// The link layer's counters.
    pub counters: LinkCounters,
    /// Routing: state held (entries, bytes) and counters.
    pub routing: RoutingInfo,
    /// End-to-end session counters.
    pub e2e: E2eCounters,
    /// Node-level drops.
    pub local: NodeCounters,
    /// The circle policy: file, counters.
    pub policy: PolicyInfo,
    /// LAN discovery: interfaces in use and counters (`None`, JSON null: off).
    pub discovery: Option<DiscoveryInfo>,
    /// NAT traversal: this node's endpoints as its peers see them, and counters.
    pub nat: NatInfo,
    /// TCP and QUIC connections (links over `tcp://` and `quic://`): what was dialed, and
    /// what happened to inbound connections when slots ran short. Absent from older daemons.
    #[serde(default)]
    pub connections: ConnectionCounters,
    /// Names: records stored for others, records dropped by reason. Absent from older daemons.
    #[serde(default)]
    pub names: crate::NameCounters,
}

/// What the connection manager (links over TCP and QUIC) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounters {
    /// Dials started.
    pub dials: u64,
    /// Dials that failed (timeouts included).
    pub dial_failures: u64,
    /// Connections closed for carrying nothing.
    pub idle_closed: u64,
    /// Connections closed by the tie-break between two crossing dials.
    pub crossing_closed: u64,
    /// Connections replaced by a newer one to the same endpoint.
    pub replaced: u64,
    /// Inbound connections refused: their address held its most, all authenticated.
    pub refused_per_address: u64,
    /// Inbound connections refused: their network (/24, /64) held its most, all
    /// authenticated.
    pub refused_per_prefix: u64,
    /// Inbound connections refused: the node held its most, all authenticated.
    pub refused_total: u64,
    /// Inbound connections not yet authenticated closed to make room for a new one.
    pub evicted: u64,
    /// Inbound connections closed for not carrying an authenticated link in time.
    pub unauthenticated_closed: u64,
    /// QUIC connection attempts asked to prove their address first (a Retry).
    pub validations_asked: u64,
    /// Frames received on a connection no longer carried (closed meanwhile).
    pub stale_frames: u64,
}

/// The link layer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    /// Datagrams received on the UDP sockets.
    pub rx_datagrams: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Handshakes completed (as initiator or responder).
    pub handshakes_completed: u64,
    /// Handshakes refused because the circle policy denies the peer (`peer` rules).
    pub policy_refused: u64,
    /// Drops by reason.
    pub dropped: DropCounters,
}

/// The link layer's drops, one counter per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    /// Not a valid link message (bad type, length, suite).
    pub malformed: u64,
    /// A transport message for a session index we do not have.
    pub unknown_session: u64,
    /// A transport message whose counter was seen before or is too old.
    pub replay: u64,
    /// A transport message whose tag did not verify.
    pub decrypt_failed: u64,
    /// A handshake message that failed (bad Noise message, unknown index, bad payload).
    pub handshake_failed: u64,
    /// A handshake refused on purpose (pinned key mismatch, our own key).
    pub refused: u64,
    /// Too many handshakes at once; the newest was not answered.
    pub rate_limited: u64,
    /// A decrypted frame of an unknown kind.
    pub bad_frame: u64,
    /// A frame for a link that is not up (any more).
    pub no_link: u64,
}

impl DropCounters {
    /// Every counter with its JSON key, in key order.
    pub fn entries(&self) -> [(&'static str, u64); 9] {
        [
            ("bad_frame", self.bad_frame),
            ("decrypt_failed", self.decrypt_failed),
            ("handshake_failed", self.handshake_failed),
            ("malformed", self.malformed),
            ("no_link", self.no_link),
            ("rate_limited", self.rate_limited),
            ("refused", self.refused),
            ("replay", self.replay),
            ("unknown_session", self.unknown_session),
        ]
    }
}

/// The routing core: its place in the tree, the state it holds and what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingInfo {
    /// Entries of routing state held (peers, tree, lookups, caches).
    pub state_entries: usize,
    /// Their approximate size in bytes.
    pub state_bytes: usize,
    /// The root's key.
    pub root: String,
    /// This node's depth in the tree.
    pub depth: usize,
    /// Routed messages forwarded for others.
    pub forwarded: u64,
    /// Routed messages delivered to this node.
    pub delivered: u64,
    /// Lookups started.
    pub lookups: u64,
    /// Lookup requests sent.
    pub lookup_requests: u64,
    /// Control messages sent (all kinds).
    pub control_messages_sent: u64,
    /// Control bytes sent.
    pub control_bytes_sent: u64,
    /// Drops by reason (the routing core's reason names).
    pub dropped: BTreeMap<String, u64>,
}

/// Drops and sessions at the end-to-end layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eCounters {
    /// Messages that could not be parsed.
    pub malformed: u64,
    /// Data for a session index we do not have.
    pub unknown_session: u64,
    /// Data replayed or too old.
    pub replay: u64,
    /// Data whose tag did not verify.
    pub decrypt_failed: u64,
    /// Handshakes that failed or named another key than their routing header.
    pub handshake_failed: u64,
    /// Handshake inits beyond the rate limit.
    pub rate_limited: u64,
    /// A packet whose source address does not belong to the session's key.
    pub spoofed_source: u64,
    /// A packet for an address that is not ours.
    pub not_for_us: u64,
    /// Packets dropped from a full queue or when a handshake gave up.
    pub queue_dropped: u64,
    /// Sessions established.
    pub sessions_established: u64,
}

/// Drops at the node level (packets from this host's stack).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// LAN discovery, when it is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryInfo {
    /// Interfaces announced on and listened to.
    pub interfaces: Vec<String>,
    /// Counters.
    pub counters: LanCounters,
}

/// What LAN discovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// NAT traversal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatInfo {
    /// This node's endpoints as its peers see them, the most reported first.
    pub endpoints: Vec<String>,
    /// Counters.
    pub counters: NatCounters,
    /// Frames dropped because a TCP/QUIC connection's queue was full or it could not be set up.
    pub stream_dropped: u64,
}

/// What NAT traversal did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatCounters {
    /// ENDPOINTS messages sent.
    pub endpoints_sent: u64,
    /// ENDPOINTS messages received.
    pub endpoints_received: u64,
    /// Punch rounds started (one per remote per round).
    pub punches: u64,
}
