//! The control protocol between `meshd` and its clients (`meshctl`, `meshd-cni`, an app
//! through `mobile-ffi`): one JSON object per line over a Unix socket, a [`Request`] in and a
//! [`Reply`] out.
//!
//! ```text
//! → {"cmd":"peers"}
//! ← {"ok":true,"data":[{"public_key":"…","address":"…","state":"up",…}]}
//! → {"cmd":"peer_add","uri":"udp://10.0.0.2:7820"}
//! ← {"ok":false,"error":{"kind":"bad_request","message":"invalid port in …","hint":null}}
//! ```
//!
//! The types are the `api` crate's, re-exported here: that crate is the contract
//! `meshctl --json` prints, and fields are only ever added. This module owns the socket
//! ([`Server`]) and the copies of meshd's own counters into the `api` structs (`convert`).
//!
//! The socket file is mode 0660, owned by root and the configured `admin_group`, so only those
//! may connect.

mod convert;
mod server;

pub use api::{
    Attachment, CircleEdited, CircleInfo, DiscoveryInfo, Error, ErrorKind, ExplainRow, NatInfo,
    PeerAdded, PeerInfo, PeerRemoved, PolicyInfo, Reply, Request, RouteInfo, RoutingInfo, SelfInfo,
    Status, TreeInfo, TreePeer, ZnetCreated, ZnetInfo, ZnetLeft, ZnetMemberInfo,
};
pub use convert::{
    connection_counters, discovery_info, e2e_counters, link_counters, nat_counters, node_counters,
    ping_outcome, policy_counters, session_info, znet_counters,
};
pub use server::{AdminRequest, Server};
