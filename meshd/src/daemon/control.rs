//! Answers control requests from the daemon's state (peers added at runtime are kept across
//! restarts by [`super::peer_store`]).

use super::Sockets;
use super::lan::Lan;
use super::peer_store::PeerStore;
use super::policy::PolicyFile;
use crate::admin::{
    self, Error, NatInfo, PeerAdded, PeerInfo, PeerRemoved, Reply, Request, RouteInfo, RoutingInfo,
    SelfInfo, Status, TreeInfo, TreePeer,
};
use crate::config::Config;
use crate::identity::Identity;
use crate::identity::PublicKey;
use crate::link::Links;
use crate::node::Node;
use crate::uri::PeerUri;
use std::time::Instant;

/// What the control handler needs besides the link core.
pub struct Control<'a> {
    pub(super) cfg: &'a Config,
    pub(super) identity: &'a Identity,
    pub(super) started: Instant,
    pub(super) config_peers: Vec<PeerUri>,
}

/// What `status` reports that the daemon loop, not the node, holds.
pub(super) struct StatusSources<'a> {
    /// The policy file (its name, reloads, last error).
    pub policy_file: &'a PolicyFile,
    /// LAN discovery, if on.
    pub lan: Option<&'a Lan>,
    /// Names: the claims and their saved details.
    pub names: &'a super::names::Names,
}

impl Control<'_> {
    pub(super) fn handle(
        &self,
        req: Request,
        node: &mut Node,
        store: &mut PeerStore,
        socks: &Sockets,
        sources: &StatusSources<'_>,
    ) -> Reply {
        let now = Instant::now();
        match req {
            Request::Tree => Reply::ok(tree_info(node)),
            Request::Routes => Reply::ok(route_rows(node, now)),
            Request::Sessions => Reply::ok(
                node.e2e
                    .sessions(now)
                    .into_iter()
                    .map(admin::session_info)
                    .collect::<Vec<_>>(),
            ),
            Request::SelfInfo => Reply::ok(self.self_info(node, socks, sources)),
            Request::Peers => Reply::ok(peer_rows(&node.links, now)),
            Request::Status => Reply::ok(self.status(node, socks, sources, now)),
            Request::PeerAdd { uri, persist } => {
                Reply::from(self.peer_add(&uri, persist, node, store, socks))
            }
            Request::PeerRemove { uri } => Reply::from(self.peer_remove(&uri, node, store)),
            _ => Reply::error(Error::internal(
                "internal error: request routed to the wrong handler",
            )),
        }
    }

    fn status(
        &self,
        node: &Node,
        socks: &Sockets,
        sources: &StatusSources<'_>,
        now: Instant,
    ) -> Status {
        let links = &node.links;
        let c = links.counters();
        Status {
            node: self.self_info(node, socks, sources),
            uptime_secs: self.started.elapsed().as_secs(),
            peers_up: links.peers().count(),
            peers_configured: links.dialers().len(),
            dropped_from_network: c.dropped.from_network() + node.e2e.counters().from_network(),
            counters: admin::link_counters(c),
            routing: routing_info(node),
            e2e: admin::e2e_counters(node.e2e.counters()),
            local: admin::node_counters(node.counters()),
            policy: sources
                .policy_file
                .info(node.firewall.policy(), node.policy_counters()),
            discovery: sources.lan.map(|l| admin::discovery_info(&l.info())),
            nat: NatInfo {
                endpoints: node
                    .nat
                    .endpoints(now)
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                counters: admin::nat_counters(&node.nat.counters),
                stream_dropped: socks.streams.dropped(),
            },
            connections: admin::connection_counters(&socks.streams.counters()),
            names: super::names::counters(node),
        }
    }

    fn peer_add(
        &self,
        uri: &str,
        persist: bool,
        node: &mut Node,
        store: &mut PeerStore,
        socks: &Sockets,
    ) -> Result<PeerAdded, Error> {
        let uri: PeerUri = uri.parse().map_err(|e| {
            Error::bad_request(format!("{e}")).with_hint(
                "a peer is udp://HOST:PORT (or tcp://, quic://), with ?key=PUBKEY to pin its key",
            )
        })?;
        if let Some(why) = socks.unreachable(&uri) {
            return Err(Error::bad_request(why));
        }
        if !node.links.add_peer(uri.clone(), Instant::now()) {
            return Err(
                Error::conflict(format!("{} is already a peer", uri.endpoint()))
                    .with_hint("meshctl peer remove it first to change its URI"),
            );
        }
        if persist && let Err(e) = store.add(uri.clone()) {
            return Err(Error::internal(format!(
                "peer added, but not saved for restarts: {e:#}"
            )));
        }
        tracing::info!(peer = %uri, persist, "peer added");
        Ok(PeerAdded {
            added: uri.to_string(),
            persistent: persist,
        })
    }

    fn peer_remove(
        &self,
        uri: &str,
        node: &mut Node,
        store: &mut PeerStore,
    ) -> Result<PeerRemoved, Error> {
        let uri: PeerUri = uri
            .parse()
            .map_err(|e| Error::bad_request(format!("{e}")))?;
        if !node.links.remove_peer(&uri) {
            return Err(
                Error::not_found(format!("{} is not a configured peer", uri.endpoint()))
                    .with_hint("meshctl peers lists the configured peers with their URIs"),
            );
        }
        if let Err(e) = store.remove(&uri) {
            return Err(Error::internal(format!(
                "peer removed, but the change was not saved: {e:#}"
            )));
        }
        tracing::info!(peer = %uri.endpoint(), "peer removed");
        let in_config = self
            .config_peers
            .iter()
            .any(|p| p.endpoint() == uri.endpoint());
        let note = in_config.then(|| {
            "this peer is in the config file and comes back when meshd restarts; \
             remove it there to make this permanent"
                .to_string()
        });
        Ok(PeerRemoved {
            removed: uri.endpoint(),
            note,
        })
    }

    fn self_info(&self, node: &Node, socks: &Sockets, sources: &StatusSources<'_>) -> SelfInfo {
        let key = self.identity.public_key();
        SelfInfo {
            public_key: key.to_string(),
            address: key.address().to_string(),
            subnet: format!("{}/64", key.subnet()),
            listen: socks
                .udp
                .iter()
                .map(|s| format!("udp://{}", s.local_addr()))
                .chain(socks.streams.listening.iter().map(|e| e.to_string()))
                .collect(),
            tun: self.cfg.tun.name.clone(),
            mtu: self.cfg.tun.mtu,
            version: env!("CARGO_PKG_VERSION").to_string(),
            key_name: Some(format!(
                "{}.{}",
                crate::dns::keyname::encode(&key.0),
                self.cfg.dns.suffix
            )),
            names: sources.names.list(node),
        }
    }
}

/// The paths of a link, the one in use first.
fn path_lines(p: &crate::link::Peer) -> Vec<String> {
    let mut paths: Vec<&crate::link::paths::Path> = p.paths().iter().collect();
    paths.sort_by_key(|q| q.endpoint != p.endpoint());
    paths
        .iter()
        .map(|q| match q.srtt {
            Some(rtt) => format!(
                "{} rtt {:.1} ms loss {:.0}%",
                q.endpoint,
                rtt.as_secs_f64() * 1000.0,
                q.loss * 100.0
            ),
            None => q.endpoint.to_string(),
        })
        .collect()
}

/// One row per link, then one per configured peer that has no link.
pub fn peer_rows(links: &Links, now: Instant) -> Vec<PeerInfo> {
    let mut rows = Vec::new();
    for p in links.peers() {
        let dialer = links.dialers().iter().find(|d| d.linked == Some(p.key));
        let uri = dialer.map(|d| d.uri.to_string());
        let origin = dialer.map_or("inbound", |d| d.origin.name());
        rows.push(PeerInfo {
            public_key: Some(p.key.to_string()),
            address: Some(p.key.address().to_string()),
            state: "up".into(),
            uri,
            endpoint: Some(p.endpoint.to_string()),
            rx_bytes: p.counters.rx_bytes,
            tx_bytes: p.counters.tx_bytes,
            rx_packets: p.counters.rx_packets,
            tx_packets: p.counters.tx_packets,
            up_secs: Some(now.saturating_duration_since(p.up_since).as_secs()),
            last_handshake_secs: Some(now.saturating_duration_since(p.last_handshake).as_secs()),
            cipher: p.sessions.last().map(|s| s.suite.name().to_string()),
            last_error: None,
            origin: Some(origin.into()),
            transport: Some(p.endpoint.scheme.name().into()),
            paths: path_lines(p),
        });
    }
    for d in links.dialers() {
        if d.linked.is_some_and(|k| links.peers().any(|p| p.key == k)) {
            continue;
        }
        rows.push(PeerInfo {
            public_key: d.uri.key.map(|k| k.to_string()),
            address: d.uri.key.map(|k| k.address().to_string()),
            state: if d.in_flight.is_some() || d.resolving {
                "connecting"
            } else {
                "down"
            }
            .into(),
            uri: Some(d.uri.to_string()),
            endpoint: d.addr.map(|a| a.to_string()),
            rx_bytes: 0,
            tx_bytes: 0,
            rx_packets: 0,
            tx_packets: 0,
            up_secs: None,
            last_handshake_secs: None,
            cipher: None,
            last_error: d.last_error.clone(),
            origin: Some(d.origin.name().into()),
            transport: Some(d.uri.scheme.name().into()),
            paths: Vec::new(),
        });
    }
    rows
}

/// Answer to `meshctl tree`.
pub fn tree_info(node: &Node) -> TreeInfo {
    let r = &node.router;
    let root = PublicKey(r.root());
    let parent = r.parent_key();
    TreeInfo {
        root: root.to_string(),
        root_address: root.address().to_string(),
        is_root: r.root() == r.key(),
        parent: PublicKey(parent).to_string(),
        coords: r.coords().0.clone(),
        depth: r.coords().depth(),
        peers: r
            .peer_info()
            .map(|(_, k, c, rtt)| TreePeer {
                public_key: PublicKey(k).to_string(),
                address: PublicKey(k).address().to_string(),
                coords: c.map(|c| c.0.clone()),
                rtt_us: rtt.as_micros() as u64,
                parent: k == parent && k != r.key(),
            })
            .collect(),
    }
}

/// The routing core's part of `status`.
fn routing_info(node: &Node) -> RoutingInfo {
    let r = &node.router;
    let (state_entries, state_bytes) = r.state_size();
    let stats = r.stats();
    RoutingInfo {
        state_entries,
        state_bytes,
        root: PublicKey(r.root()).to_string(),
        depth: r.coords().depth(),
        forwarded: stats.forwarded,
        delivered: stats.delivered,
        lookups: stats.lookups,
        lookup_requests: stats.lookup_requests,
        control_messages_sent: stats.control_sent,
        control_bytes_sent: stats.control_bytes,
        dropped: stats
            .dropped
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    }
}

/// Answer to `meshctl routes`.
pub fn route_rows(node: &Node, now: Instant) -> Vec<RouteInfo> {
    node.router
        .routes()
        .map(|(a, r)| RouteInfo {
            address: a.to_string(),
            public_key: PublicKey(r.key).to_string(),
            coords: r.coords.0.clone(),
            age_secs: now.saturating_duration_since(r.updated).as_secs(),
        })
        .collect()
}
