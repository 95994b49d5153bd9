//! What `self`, `peers`, `tree`, `routes`, `sessions`, `ping`, `peer add|remove` and
//! `meshctl verify` answer.

use serde::{Deserialize, Serialize};

/// Answer to `self`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfInfo {
    /// ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// The node's overlay address.
    pub address: String,
    /// The /64 the node owns.
    pub subnet: String,
    /// Listening sockets.
    pub listen: Vec<String>,
    /// TUN interface name.
    pub tun: String,
    /// TUN MTU.
    pub mtu: u16,
    /// Daemon version.
    pub version: String,
    /// The node's key name: `<key in base32>.<suffix>`, which always resolves to it.
    #[serde(default)]
    pub key_name: Option<String>,
    /// The names this node claims, and their state. Absent from older daemons.
    #[serde(default)]
    pub names: Vec<crate::NameInfo>,
}

/// One row of `peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's key (the pinned key, or null, while not linked).
    pub public_key: Option<String>,
    /// The peer's overlay address (null while the key is unknown).
    pub address: Option<String>,
    /// `up`, `connecting` (dialing, no answer yet) or `down` (waiting to redial).
    pub state: String,
    /// The configured URI, if this peer is configured (null for inbound-only peers).
    pub uri: Option<String>,
    /// Where the peer's datagrams come from.
    pub endpoint: Option<String>,
    /// Bytes received on the wire.
    pub rx_bytes: u64,
    /// Bytes sent on the wire.
    pub tx_bytes: u64,
    /// IPv6 packets received.
    pub rx_packets: u64,
    /// IPv6 packets sent.
    pub tx_packets: u64,
    /// Seconds since the link came up.
    pub up_secs: Option<u64>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs: Option<u64>,
    /// The AEAD of the current session.
    pub cipher: Option<String>,
    /// Why the last dial failed.
    pub last_error: Option<String>,
    /// Why this node links with it: `configured`, `discovered` (LAN), or `inbound` (it
    /// dialed us).
    #[serde(default)]
    pub origin: Option<String>,
    /// The link's transport: `udp`, `tcp` or `quic`.
    #[serde(default)]
    pub transport: Option<String>,
    /// Every path the peer was heard on lately, the one in use first, with its measured
    /// round trip and probe loss when it has several (`udp://198.51.100.7:7820 rtt 1.2 ms
    /// loss 0%`).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Answer to `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeInfo {
    /// The root's key.
    pub root: String,
    /// The root's address.
    pub root_address: String,
    /// Whether this node is the root.
    pub is_root: bool,
    /// Our parent's key (our own if we are the root).
    pub parent: String,
    /// Our coordinates (ports from the root).
    pub coords: Vec<u64>,
    /// Our depth.
    pub depth: usize,
    /// Direct peers as the router sees them.
    pub peers: Vec<TreePeer>,
}

/// A peer in `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreePeer {
    /// Its key.
    pub public_key: String,
    /// Its address.
    pub address: String,
    /// Its coordinates, once announced.
    pub coords: Option<Vec<u64>>,
    /// Link RTT in microseconds (the link cost).
    pub rtt_us: u64,
    /// Whether it is our parent.
    pub parent: bool,
}

/// A row of `routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The address (or subnet prefix) looked up.
    pub address: String,
    /// The owner's key.
    pub public_key: String,
    /// Where it was.
    pub coords: Vec<u64>,
    /// Seconds since the lookup.
    pub age_secs: u64,
}

/// One row of `sessions`: an end-to-end session with another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The remote node's key.
    pub public_key: String,
    /// Its address.
    pub address: String,
    /// `up`, or `handshaking` (packets queued).
    pub state: String,
    /// Seconds since the newest session was set up.
    pub age_secs: Option<u64>,
    /// Whether we started the newest session.
    pub initiator: Option<bool>,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received (IPv6 packets).
    pub rx_bytes: u64,
    /// Bytes sent (IPv6 packets).
    pub tx_bytes: u64,
    /// Packets waiting for the session.
    pub queued: usize,
}

/// The answer to one `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PingOutcome {
    /// Answered.
    Reply {
        /// Hops one way.
        hops: u8,
        /// Round trip in microseconds.
        rtt_us: u64,
        /// The link to the destination when it is a direct peer (`udp://203.0.113.7:7820`);
        /// `None`: relayed through other nodes.
        direct: Option<String>,
    },
    /// Nobody owns the address (as far as the lookup found).
    Unreachable,
    /// No answer in time.
    Timeout,
}

/// The answer to `peer_add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAdded {
    /// The peer URI added.
    pub added: String,
    /// Whether it is kept across restarts.
    pub persistent: bool,
}

/// The answer to `peer_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRemoved {
    /// The endpoint removed (`HOST:PORT`).
    pub removed: String,
    /// Set when the peer comes back at the next start (it is in the config file).
    pub note: Option<String>,
}

/// What `meshctl verify --json` prints (computed offline, without meshd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The address checked.
    pub address: String,
    /// The key checked.
    pub public_key: String,
    /// Whether the address is the key's node address or in its /64.
    pub belongs: bool,
    /// The key's node address.
    pub node_address: String,
    /// The key's /64.
    pub subnet: String,
}

/// The answer to [`crate::Request::NetworkChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkChanged {
    /// UDP sockets bound again.
    pub sockets: usize,
    /// Peers told where this node is now.
    pub peers_told: usize,
}
