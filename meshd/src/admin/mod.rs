//! The control protocol between `meshd` and `meshctl`: one JSON object per line over a Unix
//! socket, a [`Request`] in and a [`Reply`] out.
//!
//! ```text
//! → {"cmd":"peers"}
//! ← {"ok":true,"data":[{"public_key":"…","address":"…","state":"up",…}]}
//! → {"cmd":"peer_add","uri":"udp://10.0.0.2:7820"}
//! ← {"ok":false,"error":"invalid port in …"}
//! ```
//!
//! The socket file is mode 0660, owned by root and the configured `admin_group`, so only those
//! may connect. These types are the contract `meshctl --json` prints; fields are only ever
//! added.

mod server;

pub use server::{AdminRequest, Server};

use serde::{Deserialize, Serialize};

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// This node: key, address, listeners.
    #[serde(rename = "self")]
    SelfInfo,
    /// Every configured or linked peer.
    Peers,
    /// Node, counters, uptime.
    Status,
    /// Add a peer URI (kept across restarts unless `persist` is false).
    PeerAdd {
        /// `udp://HOST:PORT[?key=PUBKEY]`.
        uri: String,
        /// Keep it across restarts.
        #[serde(default = "yes")]
        persist: bool,
    },
    /// Remove a peer URI (and close its link).
    PeerRemove {
        /// `udp://HOST:PORT` (a `?key=` is ignored).
        uri: String,
    },
    /// Our place in the routing tree.
    Tree,
    /// Cached lookup results.
    Routes,
    /// End-to-end sessions.
    Sessions,
    /// An overlay ping: answered with hops and round trip (see [`crate::node::PingOutcome`]).
    Ping {
        /// The overlay address.
        address: String,
    },
    /// The circle policy in force: file, sizes, defaults, counters, last reload error.
    PolicyShow,
    /// Read the policy file again now.
    PolicyReload,
    /// Which rule decides each action for a key or address, and why.
    PolicyExplain {
        /// A public key or an overlay address.
        who: String,
        /// A packet to judge `traffic` and `outbound` for: `tcp/22`, `udp/53`, `icmp`.
        #[serde(default)]
        packet: Option<String>,
    },
    /// The circles of the policy.
    CircleList,
    /// One circle: its members as written and resolved.
    CircleShow {
        /// The circle's name.
        name: String,
    },
    /// Add a member to a circle (creating the circle), editing the policy file.
    CircleAdd {
        /// The circle's name.
        name: String,
        /// A key, an overlay address or `circle:NAME`.
        member: String,
    },
    /// Remove a member from a circle, editing the policy file.
    CircleRemove {
        /// The circle's name.
        name: String,
        /// A key, an overlay address or `circle:NAME`.
        member: String,
    },
    /// Create a znet with this node as its first member: a fresh id and secret. Answers the
    /// manifest (to add members to and hand to them).
    ZnetCreate {
        /// Its name.
        name: String,
        /// Its IPv4 /16, e.g. `10.50.0.0/16`.
        ipv4: String,
        /// Its IPv6 /64, if any.
        #[serde(default)]
        ipv6: Option<String>,
    },
    /// Put a znet manifest in force on this node (join, or update after an edit).
    ZnetJoin {
        /// The manifest's text (TOML).
        manifest: String,
    },
    /// Leave a znet: detach its containers, remove its namespace and state.
    ZnetLeave {
        /// The znet's name.
        name: String,
    },
    /// The znets of this node.
    ZnetList,
    /// One znet: members, attachments, counters.
    ZnetShow {
        /// The znet's name.
        name: String,
    },
    /// Attach a container (a network namespace) to a znet.
    ZnetAttach {
        /// The znet's name.
        name: String,
        /// A namespace name (as `ip netns` names it) or path (`/proc/PID/ns/net`,
        /// `/var/run/netns/NAME`).
        netns: String,
        /// The IPv4 address to give it (in this node's subnet); default: the first free one.
        #[serde(default)]
        ip: Option<String>,
        /// The interface name inside the container (default `zn0`).
        #[serde(default)]
        ifname: Option<String>,
        /// The container runtime's id (CNI), to detach by.
        #[serde(default)]
        container_id: Option<String>,
    },
    /// Detach a container from a znet.
    ZnetDetach {
        /// The znet's name.
        name: String,
        /// The namespace, as given to attach ...
        #[serde(default)]
        netns: Option<String>,
        /// ... or the container id given to attach.
        #[serde(default)]
        container_id: Option<String>,
    },
}

fn yes() -> bool {
    true
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// True on success.
    pub ok: bool,
    /// On failure, one line saying what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On success, the result (see [`SelfInfo`], [`PeerInfo`], [`Status`]).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    /// A success carrying `data`.
    pub fn ok(data: impl Serialize) -> Reply {
        match serde_json::to_value(data) {
            Ok(data) => Reply {
                ok: true,
                error: None,
                data,
            },
            Err(e) => Reply::err(format!("internal error encoding the reply: {e}")),
        }
    }

    /// A failure.
    pub fn err(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            data: serde_json::Value::Null,
        }
    }
}

/// Answer to `self`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// One row of `peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Counters (see [`crate::link::Counters`]).
    pub counters: serde_json::Value,
    /// Routing: state held (entries, bytes) and counters.
    #[serde(default)]
    pub routing: serde_json::Value,
    /// End-to-end session counters.
    #[serde(default)]
    pub e2e: serde_json::Value,
    /// Node-level drops.
    #[serde(default)]
    pub local: serde_json::Value,
    /// The circle policy: file, counters (see [`PolicyInfo`]).
    #[serde(default)]
    pub policy: serde_json::Value,
    /// LAN discovery: interfaces in use and counters (null: off).
    #[serde(default)]
    pub discovery: serde_json::Value,
    /// NAT traversal: this node's endpoints as its peers see them, and counters.
    #[serde(default)]
    pub nat: serde_json::Value,
}

/// Answer to `policy_show` (and part of `status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy file (null: none configured, everything allowed).
    pub file: Option<String>,
    /// When the policy in force was loaded (Unix seconds).
    pub loaded_unix: Option<u64>,
    /// Circles defined.
    pub circles: usize,
    /// Rules.
    pub rules: usize,
    /// Tests the policy carries (all passed, or it would not be in force).
    pub tests: usize,
    /// The default verdict of each action.
    pub defaults: Vec<(String, String)>,
    /// Reloads since start.
    pub reloads: u64,
    /// Reloads refused (a bad file).
    pub reload_failures: u64,
    /// Why the last reload was refused, if it was (the policy in force is the previous one).
    pub last_error: Option<String>,
    /// What the policy did (see `meshd::firewall::PolicyCounters`).
    pub counters: serde_json::Value,
}

/// One circle, for `circle_list` and `circle_show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircleInfo {
    /// Its name.
    pub name: String,
    /// The line it is defined on.
    pub line: u32,
    /// Members as written (keys, addresses, `circle:NAME`).
    pub members: Vec<String>,
    /// Everybody in it, nesting resolved.
    pub resolved: Vec<String>,
}

/// One line of `policy_explain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainRow {
    /// `peer`, `traffic`, `root`, `outbound`.
    pub action: String,
    /// The packet judged (traffic and outbound).
    pub packet: Option<String>,
    /// `allow` or `deny`.
    pub verdict: String,
    /// The line of the deciding rule (null: the default decided).
    pub rule_line: Option<u32>,
    /// The reasoning.
    pub reason: String,
    /// The circles the identity is in.
    pub circles: Vec<String>,
}

/// A container attached to a znet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The znet's name.
    pub znet: String,
    /// The namespace, as given.
    pub netns: String,
    /// The interface inside the container.
    pub ifname: String,
    /// Its IPv4 address.
    pub ipv4: String,
    /// Its IPv6 address, if the znet has IPv6.
    pub ipv6: Option<String>,
    /// The IPv4 gateway (this node's router for the znet).
    pub gateway_v4: String,
    /// The IPv6 gateway.
    pub gateway_v6: Option<String>,
    /// The znet's IPv4 range (routed through the gateway).
    pub range_v4: String,
    /// The znet's IPv6 range.
    pub range_v6: Option<String>,
    /// The container runtime's id, if one was given.
    pub container_id: Option<String>,
    /// The namespace's inode when attached: a namespace path whose process is gone and whose
    /// PID was reused names another namespace, which is then left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_inode: Option<u64>,
}

/// A member of a znet, for `znet show`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZnetMemberInfo {
    /// Its key.
    pub public_key: String,
    /// Its IPv4 subnet.
    pub subnet_v4: String,
    /// Its IPv6 subnet.
    pub subnet_v6: Option<String>,
    /// Whether it is this node.
    pub this_node: bool,
}

/// Answer to `znet_show` (and a row of `znet_list`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZnetInfo {
    /// Name.
    pub name: String,
    /// Id (16 hex digits).
    pub id: String,
    /// IPv4 range.
    pub ipv4: String,
    /// IPv6 range.
    pub ipv6: Option<String>,
    /// The router namespace of this znet on this node.
    pub router_netns: String,
    /// Members.
    pub members: Vec<ZnetMemberInfo>,
    /// Containers attached on this node.
    pub attachments: Vec<Attachment>,
    /// Counters (see `meshd::znet::ZnetCounters`).
    pub counters: serde_json::Value,
}
