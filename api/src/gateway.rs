//! Publishing services through gateways: the request, and what `meshctl services` and
//! `meshctl gateway status` print.

use serde::{Deserialize, Serialize};

/// `meshctl publish ZNET NETNS:PORT --name NAME --gateway KEY …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The znet the container is attached to on this node.
    pub znet: String,
    /// The container's namespace, as given to attach (or as the CNI plugin gave it).
    pub netns: String,
    /// The service's TCP port in the container.
    pub port: u16,
    /// The public name (a DNS name: `shop.example.com`).
    pub name: String,
    /// `tls` (routed by SNI, passed through), `http` (routed by `Host`) or `tcp` (a port of the
    /// gateway's `[[gateway.tcp]]` names it).
    #[serde(default = "tls")]
    pub kind: String,
    /// The gateways' public keys (at least one).
    pub gateways: Vec<String>,
    /// Most connections at once to the service (default 1,000).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Seconds a connection may sit idle before it is closed (default 300).
    #[serde(default)]
    pub idle_timeout: Option<u64>,
}

fn tls() -> String {
    "tls".into()
}

/// A service this node publishes (`meshctl services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The public name.
    pub name: String,
    /// `tls`, `http` or `tcp`.
    pub kind: String,
    /// The znet and the container's namespace.
    pub znet: String,
    /// The container's namespace.
    pub netns: String,
    /// The port in the container.
    pub port: u16,
    /// The container's address on the znet now (none: it is not attached).
    pub target: Option<String>,
    /// Where mesh users reach the service: an address of this node's /64, same port.
    pub service_address: String,
    /// Most connections at once.
    pub max_connections: u32,
    /// Idle seconds before a connection is closed.
    pub idle_timeout: u64,
    /// One row per gateway.
    pub gateways: Vec<ServiceGateway>,
    /// Connections open now (through gateways and from mesh users).
    pub open: u64,
    /// Connections carried since start.
    pub total: u64,
    /// Connections refused: the service's limit, or the container not answering.
    pub failed: u64,
    /// Bytes from clients to the service.
    pub bytes_in: u64,
    /// Bytes from the service to clients.
    pub bytes_out: u64,
}

/// One gateway of a published service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceGateway {
    /// The gateway's public key.
    pub key: String,
    /// `connected`, `connecting`, `refused` (the gateway said no: see `error`) or `waiting`
    /// (re-dialing after a failure).
    pub state: String,
    /// Why it is not connected.
    pub error: Option<String>,
    /// Seconds in this state.
    pub since: u64,
}

/// `meshctl gateway status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Whether this node has a `[gateway]` section.
    pub enabled: bool,
    /// Public listeners: `ADDRESS:PORT` (TLS or HTTP, told apart by the first bytes) and
    /// `ADDRESS:PORT=NAME` (a raw TCP port).
    pub listen: Vec<String>,
    /// The TCP port publishers dial on this node's overlay address.
    pub mesh_port: u16,
    /// Public connections open now.
    pub open: u64,
    /// The names published here.
    pub services: Vec<GatewayService>,
    /// Counters.
    pub counters: GatewayCounters,
}

/// A name published on this gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayService {
    /// The public name.
    pub name: String,
    /// `tls`, `http` or `tcp`.
    pub kind: String,
    /// The key that holds the name.
    pub publisher: String,
    /// Whether the publisher is connected now.
    pub connected: bool,
    /// Connections open now.
    pub open: u64,
    /// Connections carried since start.
    pub total: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
}

/// What a gateway refused or closed, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCounters {
    /// Public connections accepted.
    pub accepted: u64,
    /// Refused: `max_connections` reached.
    pub over_limit: u64,
    /// Refused: one client address had `max_per_client` open.
    pub over_client_limit: u64,
    /// Refused: a service had `max_per_service` open.
    pub over_service_limit: u64,
    /// Closed: the first bytes were neither TLS nor HTTP, or the name in them was invalid.
    pub garbage: u64,
    /// Closed: a TLS ClientHello without a server name, or HTTP without `Host`.
    pub no_name: u64,
    /// Closed: no service of that name here.
    pub unknown_name: u64,
    /// Closed: the name did not come within `peek_timeout`.
    pub peek_timeout: u64,
    /// Closed: the name's publisher is not connected.
    pub publisher_down: u64,
    /// Closed: idle longer than `idle_timeout`.
    pub idle_closed: u64,
    /// Publisher connections accepted.
    pub publishers: u64,
    /// Publishers refused (by the `publish` rule, a name another key holds, a bad hello).
    pub publish_refused: u64,
}

/// `meshctl unpublish`: what each gateway said to the release of the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpublished {
    /// The name.
    pub name: String,
    /// One row per gateway (none while another kind of the name stays published).
    pub gateways: Vec<Released>,
}

/// One gateway's answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The gateway's key.
    pub gateway: String,
    /// Whether it released the name (a gateway that is down keeps it until its operator
    /// runs `meshctl gateway release`).
    pub released: bool,
    /// Why not.
    pub error: Option<String>,
}

/// `meshctl gateway release NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameReleased {
    /// The name.
    pub name: String,
    /// The key that held it.
    pub was_held_by: String,
}
