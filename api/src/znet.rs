//! What the `znet_*` requests answer.

use serde::{Deserialize, Serialize};

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
    /// The MAC address of the container's interface (`02:…`, locally administered; derived
    /// from its IPv4 address, so the same after a restart). Absent in records of older
    /// versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Whether the container has a default route through the gateway (the znet has
    /// `egress`); without it, only the znet's ranges are routed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_route: bool,
}

/// A member of a znet, for `znet show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Counters (all zero while the znet is being set up).
    pub counters: ZnetCounters,
    /// The manifest's `egress`: `"local"` or the exit member's key; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
    /// Whether this node acts as the znet's exit (`egress` names it and `[znet] exit` in its
    /// configuration allows it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exit: bool,
}

/// Drops and deliveries of one znet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Packets from a container for an address outside the znet with no exit member to send
    /// them to (dropped).
    #[serde(default)]
    pub no_egress: u64,
    /// Packets a member sent here for an address outside the znet while this node is not an
    /// exit allowed for the znet (dropped).
    #[serde(default)]
    pub not_exit: u64,
    /// As the exit: packets from members sent out to the uplink.
    #[serde(default)]
    pub exit_out: u64,
    /// As the exit: replies from outside sent back to members.
    #[serde(default)]
    pub exit_back: u64,
}

impl ZnetCounters {
    /// Every counter with its JSON key, in key order.
    pub fn entries(&self) -> [(&'static str, u64); 12] {
        [
            ("bad_source", self.bad_source),
            ("delivered", self.delivered),
            ("exit_back", self.exit_back),
            ("exit_out", self.exit_out),
            ("no_egress", self.no_egress),
            ("no_member", self.no_member),
            ("not_exit", self.not_exit),
            ("not_for_us", self.not_for_us),
            ("not_member", self.not_member),
            ("sent", self.sent),
            ("spoofed", self.spoofed),
            ("too_big", self.too_big),
        ]
    }
}

/// The answer to `znet_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZnetCreated {
    /// The manifest (TOML, with the znet's secret): hand it to the other members.
    pub manifest: String,
    /// The znet, now in force here.
    pub znet: ZnetInfo,
}

/// The answer to `znet_leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZnetLeft {
    /// The znet left.
    pub left: String,
}
