//! # `api`: the admin protocol of `meshd`, as types
//!
//! This crate owns the contract between `meshd` and its clients: the [`Request`]s, the
//! [`Reply`] envelope with its typed [`Error`] (a kind, a message, a hint), and every info,
//! status and counter struct that crosses the admin socket or the mobile library's JSON calls.
//! `meshd` builds these values; `meshctl`, `meshd-cni` and `mobile-ffi` read them. Because the
//! client reads named fields, a counter renamed on one side is a compile error, never a silent 0.
//!
//! ```text
//!   meshctl / meshd-cni ── Request (one JSON line) ──► admin socket ──► meshd
//!                       ◄── Reply  (one JSON line) ───               ◄─┘ builds Status, PeerInfo, …
//!   app (mobile-ffi)    ── Request (a channel) ──────► the node's loop
//! ```
//!
//! On the wire a reply is one of
//!
//! ```text
//! {"ok":true,"data":…}
//! {"ok":false,"error":{"kind":"not_found","message":"there is no circle \"ops\"","hint":"meshctl circle list shows them"}}
//! ```
//!
//! ## What it must not do
//! It holds data only: no I/O, no clock, no dependency beyond `serde`. The JSON keys of every
//! struct are what `meshctl --json` prints and scripts read: fields are only ever added, never
//! renamed or removed (`tests/json_keys.rs` pins them).

mod error;
mod gateway;
mod info;
mod names;
mod policy;
mod reply;
mod request;
mod status;
mod znet;

pub use error::{Error, ErrorKind};
pub use gateway::{
    GatewayCounters, GatewayService, GatewayStatus, NameReleased, Publish, Released,
    ServiceGateway, ServiceInfo, Unpublished,
};
pub use info::{
    NetworkChanged, PeerAdded, PeerInfo, PeerRemoved, PingOutcome, RouteInfo, SelfInfo,
    SessionInfo, TreeInfo, TreePeer, Verification,
};
pub use names::{
    NameCounters, NameDelegation, NameInfo, NamePublished, NameReleasedInfo, NameResolution,
};
pub use policy::{CircleEdited, CircleInfo, ExplainRow, PolicyCheck, PolicyCounters, PolicyInfo};
pub use reply::Reply;
pub use request::Request;
pub use status::{
    ConnectionCounters, DiscoveryInfo, DropCounters, E2eCounters, LanCounters, LinkCounters,
    NatCounters, NatInfo, NodeCounters, RoutingInfo, Status,
};
pub use znet::{Attachment, ZnetCounters, ZnetCreated, ZnetInfo, ZnetLeft, ZnetMemberInfo};
