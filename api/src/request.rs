//! The requests a client sends: one JSON object per line, tagged by `cmd`.

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
    /// The host's network changed (a new Wi-Fi, cellular, an address gone): bind the link
    /// sockets again, re-learn the public endpoints, tell every peer where this node is now.
    NetworkChanged,
    /// Our place in the routing tree.
    Tree,
    /// Cached lookup results.
    Routes,
    /// End-to-end sessions.
    Sessions,
    /// An overlay ping: answered with hops and round trip (see [`crate::PingOutcome`]).
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
    /// Publish a service of a container through gateways: this node dials out to each and
    /// carries the public connections they receive for `name` to `netns`'s `port`.
    Publish(crate::Publish),
    /// Stop publishing `name` (every kind, or one): closes the connections to its gateways
    /// and releases the name there.
    Unpublish {
        /// The public name.
        name: String,
        /// `tls`, `http` or `tcp`; none: every kind published under the name.
        #[serde(default)]
        kind: Option<String>,
    },
    /// The services this node publishes, and the state of each gateway connection.
    Services,
    /// This node's gateway: listeners, the services published on it, connections, counters.
    GatewayStatus,
    /// On a gateway: forget who holds `name` (its publisher is disconnected), so that another
    /// key may publish it.
    GatewayRelease {
        /// The public name.
        name: String,
    },
    /// Claim a name for this node's key (kept across restarts, re-published until released).
    NameClaim {
        /// The name: one DNS label, 1–63 of `a-z 0-9 -`.
        name: String,
        /// A service address to answer AAAA with instead of the node's address.
        #[serde(default)]
        addr: Option<String>,
        /// A delegation token from an authority (`name delegate` on the authority's node).
        #[serde(default)]
        delegation: Option<String>,
    },
    /// Stop claiming a name: it frees at once at the storing nodes.
    NameRelease {
        /// The name.
        name: String,
    },
    /// Resolve a name as the DNS responder would (pins, delegations, claims).
    NameResolve {
        /// The name (`shop`, or `shop.<suffix>`).
        name: String,
    },
    /// The names this node claims.
    NameList,
    /// Sign, as an authority, a delegation of `name` to `key`.
    NameDelegate {
        /// The name.
        name: String,
        /// The delegate's public key.
        key: String,
        /// How many days it is valid (default 30).
        #[serde(default)]
        days: Option<u32>,
    },
    /// Send a name record signed elsewhere (hex of its bytes) to its storing nodes, as it is.
    NamePublish {
        /// The record's bytes, in hex.
        record: String,
    },
}

fn yes() -> bool {
    true
}
